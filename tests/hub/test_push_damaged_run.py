"""``push --dry-run`` reads a run as found on disk: wrong-typed fields in its events or config (a
hand-edited or damaged file) still give a model card, never a traceback."""

from __future__ import annotations

import json

import pytest
from support.fakes import write_manifest, write_run

from engine.cli.main import main
from engine.files import atomic_write_json

RID = "20260101-100000-000000-aaaa"


def _damage_steps(run, **fields) -> None:
    """Give the third StepLogged line of the run's events ``fields``."""
    lines, seen = [], 0
    for line in (run.path / "events.jsonl").read_text().splitlines():
        data = json.loads(line)
        if data.get("event") == "StepLogged":
            seen += 1
            if seen == 3:
                data.update(fields)
        lines.append(json.dumps(data))
    (run.path / "events.jsonl").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "steps, config",
    [
        ({"step": "abc"}, {}),
        ({"tokens_per_s": "fast"}, {}),  # beside numbers: a median of mixed types
        ({"step": None, "tokens_per_s": [1]}, {}),
        ({}, {"dataset": 5, "model": ["x"], "task": None}),
    ],
)
def test_dry_run_on_wrong_typed_fields_writes_a_card(workdir, capsys, steps, config):
    write_manifest(workdir)
    run = write_run(workdir / "runs", "pretrain", RID)
    (run.path / "model").mkdir()
    (run.path / "model" / "config.json").write_text("{}")
    _damage_steps(run, **steps)
    if config:
        atomic_write_json(run.path / "config.json", {**run.config(), **config})
    code = main(["push", RID, "--repo", "alice/demo", "--dry-run", "--out", "dry"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "README.md" in captured.out and (workdir / "dry" / "README.md").read_text().startswith("---")


@pytest.mark.parametrize("full_at", [1, 2, 3])  # a model file, the next one, the model card
def test_dry_run_on_a_full_disk_leaves_no_half_staged_folder(workdir, capsys, full_at):
    """A staged folder looks ready to upload: on a full disk none is left (one line, no traceback)."""
    from support.write_hooks import WriteHooks

    write_manifest(workdir)
    run = write_run(workdir / "runs", "pretrain", RID)
    (run.path / "model").mkdir()
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        (run.path / "model" / name).write_text("{}" if name.endswith(".json") else "x" * 4096)
    hooks = WriteHooks(workdir / "dry", full_at=full_at).install()
    try:
        code = main(["push", RID, "--repo", "alice/demo", "--dry-run", "--out", "dry"])
    finally:
        hooks.remove()
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (workdir / "dry").exists()
