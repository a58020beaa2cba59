"""Readers of a run take its files as found: wrong-typed values in results.json or config.json (a
hand-edited or damaged file) and an unloadable saved model give output or one clear line, never a
traceback (cases found by a damaged-run sweep over runs, report, push --dry-run and verify)."""

from __future__ import annotations

import json

import pytest
from support.fakes import write_manifest, write_run

from engine.cli.main import main

RID = "20260101-100000-000000-aaaa"


@pytest.mark.parametrize(
    "file, key, value, argv",
    [
        ("results", "history", [1], ["runs"]),
        ("results", "history", [1], ["push", RID, "--repo", "a/b", "--dry-run", "--out", "dry"]),
        ("results", "history", "<b>", ["report", "--out", "rep", "--format", "md"]),
        ("results", "final", None, ["report", "--out", "rep", "--format", "md"]),
        ("config", "task", [1], ["report", "--out", "rep", "--format", "md"]),
        ("config", "task", [1], ["verify", RID]),
    ],
)
def test_wrong_typed_run_files_never_give_a_traceback(workdir, capsys, file, key, value, argv):
    write_manifest(workdir)
    run = write_run(workdir / "runs", "pretrain", RID)
    (run.path / "model").mkdir()
    (run.path / "model" / "config.json").write_text("{}")  # no weights, no tokenizer
    data = json.loads((run.path / f"{file}.json").read_text())
    (run.path / f"{file}.json").write_text(json.dumps({**data, key: value}))
    code = main(argv)  # an exception here is the traceback a user would see
    err = capsys.readouterr().err
    assert code in (0, 1, 2) and "Traceback" not in err, err
