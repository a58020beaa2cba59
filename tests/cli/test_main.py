"""The command table and the one place a command's user-facing error is printed."""

from __future__ import annotations

import pytest

from engine.cli import main as cli
from engine.errors import NotFound, UserError
from engine.store.runs import RunStore
from support.fakes import write_manifest, write_run

RID = "20260101-100000-000000-aaaa"
MANIFEST = '[[experiment]]\nname = "pre"\ntask = "pretrain"\nmodel = "bert-micro"\ndataset = "embedded:wikitext"\n'


def test_user_error_is_one_line_with_its_hint_and_code():
    assert str(UserError("no such thing")) == "no such thing"
    err = UserError("cannot resume", "pass --accept-changes", code=1)
    assert str(err) == "cannot resume; pass --accept-changes" and err.code == 1
    assert UserError("x").code == 2 and isinstance(NotFound("x"), UserError)


def test_every_command_is_in_the_table_the_help_and_the_docstring(capsys):
    names = [c.name for c in cli.COMMANDS]
    assert len(names) == len(set(names)) == 23
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    listed = capsys.readouterr().out
    for name in names:
        assert f"``{name}``" in (cli.__doc__ or ""), name
        assert f"    {name} " in listed, name


def test_a_run_that_matches_nothing_is_not_found(tmp_path):
    write_run(tmp_path / "runs", "pre", RID)
    with pytest.raises(NotFound, match="no run matches 'nosuch'"):
        RunStore(tmp_path / "runs").get("nosuch")


def test_a_user_error_is_printed_once_with_its_exit_code(workdir, capsys):
    write_manifest(workdir, MANIFEST)
    write_run(workdir / "runs", "pre", RID)
    assert cli.main(["note", "nosuch"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err == "lmconsole: no run matches 'nosuch' under runs (see `lmconsole runs`)\n"
    assert cli.main(["delete", f"pre/{RID}"]) == 2  # no terminal to confirm on
    assert capsys.readouterr().err.startswith(f"lmconsole: delete pre/{RID}: pass --yes")
    assert cli.main(["export", "pre", "--out", "/proc/lmconsole-not-writable"]) == 1  # tried and failed: 1
    assert capsys.readouterr().err.startswith("lmconsole: cannot write to --out /proc/lmconsole-not-writable")


def test_a_manifest_problem_is_printed_whole_for_every_command_that_reads_it(workdir, capsys):
    (workdir / "experiments.toml").write_text('[[experiment]]\nname = "x"\ntask = "nope"\n')
    for argv in (["runs"], ["check"], ["tag", "x", "+a"], ["params", "run:x"], ["queue"]):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("experiments.toml: 2 problems\n  - "), (argv, err)
    assert cli.main(["check", "--schema"]) == 0  # needs no manifest


def test_global_options_after_the_rest_of_the_line_are_taken_out(workdir, capsys):
    (workdir / "elsewhere").mkdir()
    write_manifest(workdir / "elsewhere", MANIFEST)
    write_run(workdir / "elsewhere" / "runs", "pre", RID)
    assert cli.main(["tag", "pre", "+a", "--manifest", "elsewhere/experiments.toml", "-b"]) == 0
    assert capsys.readouterr().out == f"pre/{RID}: tags a\n"


def test_an_unsafe_run_name_is_quoted_in_its_message(workdir, capsys):
    write_manifest(workdir, MANIFEST)
    write_run(workdir / "runs", "pre", RID)
    for argv in (["tag", "..", "+a"], ["compare", ".."], ["verify", "a/.."], ["control", "..", "pause"]):
        assert cli.main(argv) == 2, argv
        assert capsys.readouterr().err.startswith("lmconsole: '..' is not a safe directory name"), argv


@pytest.mark.parametrize("target, words", [("/tmp", "/tmp is not a run under the runs directory"), ("", "an empty name")])
def test_verify_names_a_bad_target(workdir, capsys, target, words):
    write_manifest(workdir)
    (workdir / "runs").mkdir()
    assert cli.main(["verify", target]) == 2
    err = capsys.readouterr().err
    assert words in err and "'' is not" not in err, err
