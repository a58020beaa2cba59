"""A queue written by the previous version still runs: its queue file as that version wrote it, and
the command lines it spelled (``python -m engine.jobproc``, ``engine.scheduler``, ``engine.slurm``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from support import PYTHONPATH, REPO
from support.fakes import write_manifest

from engine.store.runs import Run, RunStore

MANIFEST = """\
[settings]
runs_dir = "runs"

[[experiment]]
name = "params"
task = "inspect"
model = "bert-micro"
"""


def _old_queue(tmp_path):
    """A job the previous version's scheduler had just started: its run created, the entry 'started'
    (the entry's keys and values as that version wrote them, copied from a real queue file)."""
    manifest = write_manifest(tmp_path, MANIFEST)
    store = RunStore(tmp_path / "runs")
    run = store.create("params", {"name": "params", "task": "inspect", "model": "bert-micro"})
    now = time.time()
    entry = {
        "depends_on": [],
        "devices": [],
        "experiment": "params",
        "gpus": 0,
        "id": 1,
        "manifest": str(manifest.resolve()),
        "pid": 0,
        "reason": "",
        "resume": False,
        "run": f"params/{run.run_id}",
        "seen_seq": 0,
        "started": now,
        "state": "started",
        "submitted": now,
    }
    queue = tmp_path / "runs" / ".queue"
    queue.mkdir(parents=True, exist_ok=True)
    (queue / "queue.json").write_text(json.dumps({"format": 1, "jobs": [entry], "next_id": 2}, indent=2))
    return manifest, run


def _env(**extra):
    import os

    return dict(os.environ, PYTHONPATH=PYTHONPATH, HF_HUB_OFFLINE="1", **extra)


def _old_jobproc(tmp_path, timeout: int, **env) -> subprocess.CompletedProcess:
    """Job #1 started as the previous version's scheduler started it: ``python -m engine.jobproc``."""
    return subprocess.run(
        [sys.executable, "-m", "engine.jobproc", "--runs-dir", str(tmp_path / "runs"), "--job", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(**env),
        timeout=timeout,
    )


def test_a_job_started_by_the_old_command_line_runs_to_the_end(tmp_path):
    manifest, run = _old_queue(tmp_path)
    out = _old_jobproc(tmp_path, 120, LMCONSOLE_JOB_RUNNER="support.fakes:process_runner")
    assert out.returncode == 0, out.stderr
    assert Run(run.path).raw_status()["status"] == "finished"
    assert (run.path / "results.json").exists()


def test_the_real_job_runs_from_an_old_queue_file(tmp_path):
    """No fake: the engine itself runs the inspect job an old queue file names."""
    manifest, run = _old_queue(tmp_path)
    out = _old_jobproc(tmp_path, 300)
    assert out.returncode == 0, out.stderr
    assert Run(run.path).raw_status()["status"] == "finished"
    assert any(p.name.startswith("params_") for p in (run.path / "tables").iterdir())


def test_old_scheduler_and_slurm_entry_points_still_answer():
    for module, expect in (("engine.scheduler", "--runs-dir"), ("engine.jobproc", "--job"), ("engine.slurm", "--lmc-manifest")):
        out = subprocess.run(
            [sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=REPO, env=_env(), timeout=60
        )
        assert out.returncode == 0 and expect in out.stdout, (module, out.stderr)
