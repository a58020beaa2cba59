"""Untrusted input: names, files and values that come from outside the program.

- paths: an export writes only under ``--out``, a push stages only the run's regular files,
  a run reference never leaves the runs directory;
- closed output: a job piped into ``head`` (stdout closed) still finishes;
- readers: status.json, config.json and results.json of any JSON shape show as unreadable,
  and the other runs still list, in the CLI and the console;
- values: NaN, infinities and out-of-range numbers are refused with the key named (edge values
  still pass), any nesting depth is a message, and a bad dataset folder or tokenizer is named
  for what it is;
- one-line messages instead of tracebacks (a run owned by another process, an unusable runs
  directory, Ctrl-C); ``control EXP`` picks the live run; a long events.jsonl opens in
  bounded memory.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.cli.output import ProgressPrinter
from engine.events import LogEmitted, StepLogged
from engine.hub.publish import PushError, push
from engine.store.runs import RunStore
from support.fakes import write_manifest, write_run
from support import PYTHONPATH

REPO = Path(__file__).resolve().parent.parent
RID = "20260101-100000-000000-bbbb"


def _cli(args, cwd, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "tui.entry", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=PYTHONPATH),
        timeout=120,
    )


def _fake_model(run):
    model = run.path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    (model / "model.safetensors").write_bytes(b"weights")
    return model


# -- export writes only under --out ----------------------------------------------------------------


@pytest.mark.parametrize("evil", ["/tmp/lmc-evil-{pid}/owned", "../../../lmc-evil-{pid}", "..", "a/../../b"])
def test_export_table_name_inside_file_never_leaves_out(tmp_path, monkeypatch, evil):
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path)
    run = write_run(tmp_path / "runs", "pretrain", RID)
    evil = evil.format(pid=os.getpid())
    t = json.loads((run.tables_dir / "epochs.json").read_text())
    t["name"] = evil
    (run.tables_dir / "epochs.json").write_text(json.dumps(t))
    (run.tables_dir / "..x.json").write_text(json.dumps(t))  # a file name that is not a safe table name
    before = set(tmp_path.parent.rglob("*"))
    assert main(["export", "--all", "--out", str(tmp_path / "out" / "x")]) == 0
    written = {p for p in tmp_path.rglob("*") if p.is_file()} - {p for p in before if p.is_file()}
    assert written and all(str(p).startswith(str(tmp_path / "out" / "x")) for p in written), written
    assert not Path(f"/tmp/lmc-evil-{os.getpid()}").exists()
    assert len(list((tmp_path / "out" / "x").glob(f"*/pretrain/{RID}/epochs.csv"))) == 1  # in this export's own folder


def test_export_unreadable_table_is_reported_and_others_exported(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path)
    run = write_run(tmp_path / "runs", "pretrain", RID, params=True)
    (run.tables_dir / "epochs.json").write_text('["not", "a table"]')
    assert main(["export", "--all", "--out", "out"]) == 0
    err = capsys.readouterr().err
    assert "unreadable: tables/epochs.json" in err
    assert list((tmp_path / "out").glob(f"*/pretrain/{RID}/params_*.csv"))


def test_export_out_dev_null_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path)
    write_run(tmp_path / "runs", "pretrain", RID)
    assert main(["export", "--all", "--out", "/dev/null"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmconsole: cannot write to --out /dev/null") and "\n" not in err


# -- push staging copies only regular files of the run ---------------------------------------------


def test_push_staging_skips_symlinked_files(tmp_path):
    run = write_run(tmp_path / "runs", "pretrain", RID)
    model = _fake_model(run)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:SECRET-HASH")
    (model / "notes.txt").symlink_to(secret)
    res = push(run, "alice/x", dry_run=True, out=tmp_path / "stage")
    assert "notes.txt" not in res["files"] and "model.safetensors" in res["files"]
    for f in (tmp_path / "stage").rglob("*"):
        assert b"SECRET-HASH" not in f.read_bytes()


def test_push_refuses_symlinked_model_folder_and_run_dirs(tmp_path):
    outside = tmp_path / "outside"
    other = write_run(outside, "pretrain", RID)
    _fake_model(other)
    run = write_run(tmp_path / "runs", "pretrain", "20260101-110000-000000-cccc")
    (run.path / "model").symlink_to(other.path / "model")
    with pytest.raises(PushError, match="model is a symlink"):
        push(run, "alice/x", dry_run=True, out=tmp_path / "s1")
    # a run directory that is itself a symlink out of runs/ is never "the latest run"
    (tmp_path / "runs" / "pretrain" / "20990101-000000-000000-ffff").symlink_to(other.path)
    store = RunStore(tmp_path / "runs")
    assert store.latest("pretrain").run_id == "20260101-110000-000000-cccc"
    with pytest.raises(ValueError, match="symlink"):
        store.get("pretrain/20990101-000000-000000-ffff")
    # an experiment folder symlinked into runs/ holds no runs
    (tmp_path / "runs" / "linked").symlink_to(outside / "pretrain")
    assert store.runs("linked") == [] and all(r.experiment != "linked" for r in store.runs())
    from engine.store.runs import Run

    with pytest.raises(PushError, match="symlink"):
        push(Run(tmp_path / "runs" / "linked" / RID), "alice/x", dry_run=True, out=tmp_path / "s2")


def test_push_dry_run_needs_a_fresh_folder(tmp_path):
    run = write_run(tmp_path / "runs", "pretrain", RID)
    _fake_model(run)
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "unrelated.bin").write_text("x")
    with pytest.raises(PushError, match="not empty"):
        push(run, "alice/x", dry_run=True, out=stage)


@pytest.mark.parametrize(
    "repo", ["a/..", "./b", "a/.", "a/b/c", "-a/b", "a/b-", "a/b.git", "a/b--c", "a/", "/b", "a b/c"]
)
def test_push_repo_id_validated(tmp_path, repo):
    run = write_run(tmp_path / "runs", "pretrain", RID)
    _fake_model(run)
    with pytest.raises(PushError, match="not a Hub repo id"):
        push(run, repo, dry_run=True, out=tmp_path / "stage")
    assert not (tmp_path / "stage").exists()


def test_push_repo_id_accepts_hub_names(tmp_path):
    run = write_run(tmp_path / "runs", "pretrain", RID)
    _fake_model(run)
    assert push(run, "alice-b/bert_tiny.v2", dry_run=True, out=tmp_path / "stage")["files"]


# -- run references stay inside the runs directory -------------------------------------------------


@pytest.mark.parametrize("ref", ["..", "../..", "pretrain/..", "pretrain/../pretrain", ".", "/etc"])
def test_run_refs_never_leave_runs_dir(tmp_path, ref):
    write_run(tmp_path / "runs", "pretrain", RID)
    store = RunStore(tmp_path / "runs")
    with pytest.raises((KeyError, ValueError)):
        store.get(ref)
    with pytest.raises(ValueError):
        store.runs("..")


def test_params_run_dotdot_is_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path)
    (tmp_path / "runs").mkdir()
    write_run(tmp_path, "runs", RID)  # runs/.. would find this "run" if refs could leave runs/
    assert main(["params", "run:.."]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmconsole:") and "not a safe directory name" in err and "\n" not in err


def test_params_of_a_run_that_saves_no_model_says_which_runs_do(tmp_path, monkeypatch, capsys):
    """`params run:<inspect run>`: no "run it again" (that would save no model either)."""
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path)
    write_run(tmp_path / "runs", "params", RID, task="inspect")
    assert main(["params", "run:params"]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no final model" in err and "inspect runs save no model" in err and "run it again" not in err


# -- a closed stdout never kills a job -------------------------------------------------------------


class _Broken(io.StringIO):
    def write(self, s):
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self):
        raise io.UnsupportedOperation("no fd")


def test_progress_printer_survives_broken_pipe():
    p = ProgressPrinter("x", stream=_Broken())
    p.emit(LogEmitted(level="info", message="hello"))
    p.emit(StepLogged(step=1, total_steps=2, epoch=0.5, loss=1.0, learning_rate=1e-3))
    p = ProgressPrinter("x", as_json=True, stream=_Broken())
    p.emit(LogEmitted(level="info", message="hello"))


def test_run_piped_into_head_finishes(tmp_path):
    """`lmconsole run X | head -1`: the job still finishes and the status says so."""
    (tmp_path / "experiments.toml").write_text(
        '[settings]\nruns_dir = "runs"\n\n[[experiment]]\nname = "p"\n'
        'task = "inspect"\nmodel = "bert-micro"\nheads = ["base"]\n'
    )
    proc = subprocess.Popen(
        f"{sys.executable} -m tui.entry run p --json | head -c 1 >/dev/null",
        shell=True,
        cwd=tmp_path,
        env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=PYTHONPATH),
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = proc.communicate(timeout=120)
    run = RunStore(tmp_path / "runs").latest("p")
    assert run.status()["status"] == "finished", (run.status(), err)
    assert "Traceback" not in err


def test_runs_json_into_head_is_quiet(tmp_path):
    write_manifest(tmp_path)
    for i in range(30):
        write_run(tmp_path / "runs", "pretrain", f"20260101-1000{i:02d}-000000-bbbb", tables=False)
    out = subprocess.run(
        f"{sys.executable} -m tui.entry runs --json | head -1",
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=PYTHONPATH),
        timeout=60,
    )
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr


# -- readers tolerate any JSON shape ---------------------------------------------------------------

BAD = [
    "[]",
    '"x"',
    "5",
    "null",
    '{"status": [1]}',
    '{"status": "finished", "reason": {"a": 1}}',
    "{",
    "\x00\xff",
    "[" * 5000 + "]" * 5000,
]


@pytest.mark.parametrize("fname", ["status.json", "config.json", "results.json"])
@pytest.mark.parametrize("bad", BAD, ids=[f"shape{i}" for i in range(len(BAD))])
def test_bad_json_shapes_show_as_unreadable_and_other_runs_still_show(tmp_path, monkeypatch, capsys, fname, bad):
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path)
    good = write_run(tmp_path / "runs", "pretrain", RID)
    bad_run = write_run(tmp_path / "runs", "pretrain", "20260102-100000-000000-cccc")
    (bad_run.path / fname).write_bytes(bad.encode("utf-8", "surrogateescape") if isinstance(bad, str) else bad)
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert RID in out and bad_run.run_id in out
    assert main(["runs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2
    row = next(r for r in rows if r["run"] == bad_run.run_id)
    try:
        usable = isinstance(json.loads(bad), dict) and (
            fname != "status.json" or bad.startswith('{"status": "finished"')
        )
    except (ValueError, RecursionError):
        usable = False
    if not usable:
        assert row["reason"].startswith(f"unreadable: {fname}") or "unreadable" in row["status"], row
    assert main(["export", "--all", "--out", "out"]) == 0
    from engine.store.listing import RowCache

    summaries = RowCache().load(RunStore(tmp_path / "runs").runs())
    assert {s.run.run_id for s in summaries} == {RID, bad_run.run_id}
    assert next(s for s in summaries if s.run.run_id == RID).status == "finished"
    # push reads the same files: a message, never a traceback
    _fake_model(bad_run)
    try:
        push(bad_run, "alice/x", dry_run=True, out=tmp_path / f"stage-{fname}")
    except PushError:
        pass


def test_console_lists_runs_next_to_an_unreadable_one(tmp_path):
    import asyncio

    from support.console import make_app, screen_text, wait_for

    async def go():
        app = make_app(tmp_path)
        (tmp_path / "runs" / "pretrain" / RID / "status.json").write_text("[1, 2]")
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.press("3")  # the runs tab
            assert await wait_for(pilot, lambda: "unreadable" in screen_text(app))
            text = screen_text(app)
            assert "no runs on disk yet" not in text
            assert "finetune" in text and "unreadable: status.json" in text

    asyncio.run(go())


def test_non_integer_control_seq_is_ignored(tmp_path):
    run = write_run(tmp_path / "runs", "pretrain", RID, "running")
    (run.path / "control.json").write_text('{"action": "pause", "seq": "abc"}')
    run.request("cancel")
    assert json.loads((run.path / "control.json").read_text()) == {"action": "cancel", "seq": 1}
    from engine.job.runner import JobContext

    (run.path / "control.json").write_text('{"action": "cancel", "seq": [1]}')
    ctx = JobContext(manifest=None, exp=None, run=run, writer=None, sink=None, store=None)
    ctx.poll()  # no traceback, no cancel


# -- values refused with the key named, edge values kept, causes named -----------------------------

BASE = """[[experiment]]
name = "p"
task = "pretrain"
model = "bert-micro"
dataset = "embedded:wikitext"
"""


@pytest.mark.parametrize(
    "line,key",
    [
        ("learning_rate = nan", "learning_rate"),
        ("warmup = nan", "warmup"),
        ("warmup = inf", "warmup"),
        ("weight_decay = inf", "weight_decay"),
        ("max_grad_norm = nan", "max_grad_norm"),
        ("mlm_probability = 5.0", "mlm_probability"),
        ("short_seq_prob = 7", "short_seq_prob"),
        ("mlm_probability = inf", "mlm_probability"),
        ("seed = 1180591620717411303424", "seed"),
        ("seed = -1", "seed"),
        ("seed = 4294967296", "seed"),
        ("epochs = 99999999999999999999", "epochs"),
    ],
)
def test_non_finite_and_out_of_range_values_name_the_key(line, key):
    from engine.manifest import ManifestError, parse_text

    with pytest.raises(ManifestError) as err:
        parse_text(BASE + line + "\n")
    assert any(f".{key}:" in p for p in err.value.problems), err.value.problems


def test_qa_threshold_nan_rejected():
    from engine.manifest import ManifestError, parse_text

    text = BASE.replace('"pretrain"', '"qa"').replace("wikitext", "squad_v2") + "null_score_diff_threshold = nan\n"
    with pytest.raises(ManifestError, match="null_score_diff_threshold: expected a finite number"):
        parse_text(text)


def test_valid_edge_values_still_accepted():
    from engine.manifest import parse_text

    m = parse_text(BASE + "mlm_probability = 0.99\nshort_seq_prob = 0\nseed = 4294967295\nwarmup = 0\n")
    assert m.experiments[0].seed == 2**32 - 1


def test_manifest_nested_5000_deep_is_a_message():
    from engine.manifest import ManifestError, parse_text

    for text in (
        "x = " + "[" * 5000 + "]" * 5000 + "\n",
        "a" + ".a" * 5000 + " = 1\n",
        BASE + "heads = " + "[" * 5000 + "]" * 5000 + "\n",
    ):
        with pytest.raises(ManifestError) as err:
            parse_text(text)
        assert err.value.problems and all(p.strip() and "\n" not in p for p in err.value.problems)


def test_missing_local_dataset_folder_is_not_called_an_unreachable_hub(tmp_path, monkeypatch):
    from engine.hub.resolve import ResolveError, resolve_dataset, resolve_model_path

    # relative and ~ paths resolve inside this test's own folder: a /tmp/x on the machine must not count
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    for spec in ("./data/sst2", str(tmp_path / "nope"), "../x", "~/nope-lmc"):
        with pytest.raises(ResolveError, match="no such local folder") as err:
            resolve_dataset(spec)
        assert "unreachable" not in str(err.value)
    with pytest.raises(ResolveError, match="^tokenizer './tok': no such local folder"):
        resolve_model_path("./tok", what="tokenizer")


def test_ctrl_c_reads_as_a_message():
    from engine.job.runner import _hint_for

    reason, hint = _hint_for(KeyboardInterrupt())
    assert "KeyboardInterrupt" not in reason and "ctrl+c" in reason and "resume" in hint


def test_bad_tokenizer_is_named_tokenizer(tmp_path):
    from engine.job.runner import run_experiment
    from engine.manifest import parse_text

    bad = tmp_path / "tok"
    bad.mkdir()
    (bad / "tokenizer_config.json").write_text("{not json")
    text = (
        f'[settings]\nruns_dir = "{tmp_path / "runs"}"\n'
        + BASE.replace('"bert-micro"', '"bert-micro"\ninit = "scratch"')
        + f'tokenizer = "{bad}"\nmax_train_samples = 16\nmax_eval_samples = 8\nmax_seq_length = 32\nepochs = 1\n'
    )
    run = run_experiment(parse_text(text, tmp_path / "m.toml"), "p")
    st = run.status()
    assert st["status"] == "failed" and st["reason"].startswith("tokenizer "), st


# -- one-line messages instead of tracebacks -------------------------------------------------------


def test_resume_of_a_run_owned_elsewhere_is_a_message(tmp_path, monkeypatch, capsys):
    from engine.store.runs import OwnerLock

    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path)
    for status in ("paused", "failed"):
        run = write_run(tmp_path / "runs", "pretrain", f"2026010{'12'[status == 'failed']}-100000-000000-bbbb", status)
        lock = OwnerLock(run.path / "owner.lock")
        assert lock.acquire()  # a live owner (this process, another open file)
        try:
            # failed but owned: a second `--resume` while the first one runs (past the changed-manifest check)
            code = main(
                ["run", "pretrain", "--resume", "--no-deps"] + (["--accept-changes"] if status == "failed" else [])
            )
        finally:
            lock.release()
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and err.strip().count("\n") == 0, err
        assert "another" in err and "lmconsole control" in err, err


def test_owner_lock_directory_is_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path)
    run = write_run(tmp_path / "runs", "pretrain", RID, "failed")
    (run.path / "owner.lock").mkdir()
    assert main(["run", "pretrain", "--resume", "--no-deps", "--accept-changes"]) == 2
    err = capsys.readouterr().err.strip()
    assert "owner.lock cannot be opened as a lock file" in err and "remove it" in err and "\n" not in err


@pytest.mark.parametrize("runs_dir", ["afile", "bad\\u0000name"])
def test_unusable_runs_dir_is_a_message(tmp_path, monkeypatch, capsys, runs_dir):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    (tmp_path / "experiments.toml").write_text(
        f'[settings]\nruns_dir = "{runs_dir}"\n\n'
        + BASE.replace('"pretrain"', '"inspect"').replace('dataset = "embedded:wikitext"\n', "")
    )
    if "\\u0000" in runs_dir:  # the manifest refuses it before any run is tried
        assert main(["run", "p"]) == 2
        assert "settings.runs_dir: contains control characters" in capsys.readouterr().err
        return
    assert main(["run", "p"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmconsole: p: cannot create a run under") and "runs_dir" in err and "\n" not in err


# -- control EXP picks the live run ----------------------------------------------------------------


def test_control_experiment_picks_the_live_run_not_a_dead_newer_one(tmp_path, monkeypatch, capsys):
    from engine.store.runs import OwnerLock

    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path)
    paused = write_run(tmp_path / "runs", "pretrain", "20260101-100000-000000-aaaa", "paused")
    write_run(tmp_path / "runs", "pretrain", "20260102-100000-000000-bbbb", "running")  # dead: no owner
    lock = OwnerLock(paused.path / "owner.lock")
    assert lock.acquire()
    try:
        assert main(["control", "pretrain", "resume"]) == 0
    finally:
        lock.release()
    assert "20260101-100000-000000-aaaa" in capsys.readouterr().out
    assert json.loads((paused.path / "control.json").read_text())["action"] == "resume"


# -- a long run's events.jsonl opens in bounded memory ---------------------------------------------


def test_big_events_file_opens_in_bounded_memory(tmp_path):
    import tracemalloc

    from engine.events import EvalFinished, to_json
    from engine.store.follow import RunFeed

    run = write_run(tmp_path / "runs", "pretrain", RID, tables=False)
    step = to_json(
        StepLogged(
            step=0,
            total_steps=10**7,
            epoch=0.5,
            loss=1.0,
            learning_rate=1e-3,
            parts={"mlm_loss": 1.0, "nsp_loss": 0.5},
            tokens_per_s=5000.0,
            eta_s=3.0,
            memory_mb=512.0,
        )
    )
    head, rest = step.split('"step":0,', 1)
    n = 0
    with open(run.events_path, "a") as fh:
        while fh.tell() < 40 * 2**20:  # 40 MB (the threshold is 16 MB; the attack used 300 MB)
            lines = []
            for _ in range(2000):
                n += 1
                lines.append(f'{head}"step":{n},{rest}')
            lines.append(to_json(EvalFinished(epoch=n // 2000, step=n, split="test", metrics={"mlm_perplexity": 3.0})))
            fh.write("\n".join(lines) + "\n")
    feed = RunFeed(run)
    tracemalloc.start()
    try:
        state = feed.poll()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MiB"  # reading it all: several hundred MiB
    assert state.last_step.step == n  # the tail is complete
    assert len(state.evals) >= n // 2000  # every evaluation, from the whole file
    assert 100 < len(state.steps) <= 4000  # a downsampled curve over the whole run
    assert state.steps[0].step < n // 10
    with open(run.events_path, "a") as fh:  # following continues from where the sampled read stopped
        fh.write(f'{head}"step":{n + 1},{rest}\n')
    assert feed.poll().last_step.step == n + 1
