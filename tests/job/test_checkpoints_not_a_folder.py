"""A run whose ``checkpoints`` is a file (or a link) fails in preflight with one line naming it,
instead of training from scratch and failing at its first checkpoint with NotADirectoryError."""

from __future__ import annotations

import pytest
from support.fakes import write_manifest

from engine.cli.main import main
from engine.manifest import load
from engine.store.runs import RunStore


@pytest.mark.parametrize("kind", ["file", "link"])
def test_checkpoints_that_is_not_a_folder_fails_in_preflight(workdir, capsys, kind):
    manifest = load(write_manifest(workdir))
    run = RunStore(manifest.runs_dir).create("pretrain", manifest.get("pretrain").to_dict())
    (run.path / "status.json").write_text('{"status": "failed", "reason": "boom"}')
    if kind == "file":
        run.checkpoints.write_text("not a checkpoint")
    else:
        (workdir / "elsewhere").mkdir()
        run.checkpoints.symlink_to(workdir / "elsewhere")
    assert main(["run", "pretrain", "--resume", "-q"]) == 1
    err = capsys.readouterr().err
    assert f"{run.run_id}/checkpoints is a" in err and "neither saved nor resumed" in err, err
    assert "NotADirectoryError" not in err and "Traceback" not in err
    assert not list((workdir / "elsewhere").iterdir()) if kind == "link" else True
