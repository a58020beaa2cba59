"""A process killed while creating a run (``config.json`` written, ``status.json`` still a
temporary) leaves a run that reads as interrupted once the creation is clearly over: listed so,
picked by ``run --resume``, exported. Within the grace period it is still queued."""

from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

from support.fakes import write_manifest

from engine.cli.main import main
from engine.cli.run import _resume_target
from engine.files import atomic_write_json
from engine.manifest import load
from engine.store.runs import CREATION_GRACE_S, RunStore

RID = "20260101-100000-000000-aaaa"


def _half_created(workdir, age: float):
    manifest = load(write_manifest(workdir))
    path = workdir / "runs" / "pretrain" / RID
    path.mkdir(parents=True)
    atomic_write_json(path / "config.json", manifest.get("pretrain").to_dict())
    (path / ".status.json.k1ll3d.tmp").write_text('{"status": "que')  # killed mid-write
    then = time.time() - age
    for name in os.listdir(path):
        os.utime(path / name, (then, then))
    return manifest, RunStore(manifest.runs_dir)


def test_a_run_killed_before_its_first_status_reads_interrupted(workdir, capsys):
    manifest, store = _half_created(workdir, age=CREATION_GRACE_S + 5)
    run = store.latest("pretrain")
    assert run.status()["status"] == "interrupted" and "before writing its status" in run.status()["reason"]
    assert main(["runs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in rows] == ["interrupted"]
    args = SimpleNamespace(accept_changes=False)
    assert _resume_target(manifest, store, "pretrain", args).path == run.path  # --resume continues it
    assert main(["export", "--all", "--out", "exports"]) == 0
    assert "for 1 run(s)" in capsys.readouterr().out


def test_a_run_being_created_is_still_queued(workdir):
    _manifest, store = _half_created(workdir, age=1)
    assert store.latest("pretrain").status()["status"] == "queued"
