"""executor = "slurm" against a real single-node Slurm (slurmctld + slurmd + munged, started here
by scripts/slurm_local.sh in a temporary folder): submit with the manifest's resources, follow the
run directory from the queue, preempt (scontrol requeue = SIGTERM, then requeue) and resume."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from support.manifests import PRETRAIN, experiment, manifest_text, write_manifest

from engine.events import CheckpointSaved, RunStarted, StatusChanged, StepLogged
from engine.job.runner import run_experiment
from engine.manifest import load
from engine.queue.jobqueue import JobQueue
from engine.store.runs import RunStore

REPO = Path(__file__).resolve().parents[2]
DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "scontrol", "scancel")


def _manifest(tmp_path, extra=""):
    pre = experiment(
        PRETRAIN,
        extra,
        epochs=2,
        learning_rate=1e-3,
        max_train_samples=256,
        max_eval_samples=32,
        slurm_partition="debug",
        slurm_time="00:20:00",
        slurm_cpus_per_task=1,
    )
    return load(write_manifest(tmp_path, manifest_text(tmp_path / "runs", pre, executor="slurm")))


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = [d for d in DAEMONS if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()]
    if missing:
        pytest.skip(
            f"Slurm is not installed here ({', '.join(missing)} missing; Debian: apt-get install slurm-wlm munge)"
        )
    if os.geteuid() != 0:
        pytest.skip("starting a private Slurm cluster needs root (slurmd runs jobs as their user)")
    folder = tmp_path_factory.mktemp("slurm")
    start = subprocess.run(
        ["bash", str(REPO / "scripts/slurm_local.sh"), "start", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert start.returncode == 0, start.stdout + start.stderr
    mp = pytest.MonkeyPatch()
    mp.setenv("SLURM_CONF", str(folder / "slurm.conf"))
    try:
        yield folder
    finally:
        mp.undo()
        subprocess.run(["bash", str(REPO / "scripts/slurm_local.sh"), "stop", str(folder)], timeout=60)


def _scontrol(job_id: str) -> dict:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    return dict(f.split("=", 1) for f in out.split() if "=" in f)


def _hold_at_a_step(run) -> None:
    """Pause the job (it holds at a step boundary), so the signal lands mid-epoch however fast the box."""
    run.request("pause")
    deadline = time.time() + 120
    while time.time() < deadline and run.raw_status().get("status") != "paused":
        time.sleep(0.1)
    assert run.raw_status().get("status") == "paused"


def _slurm_job(run) -> str:
    import json

    return json.loads((run.path / "slurm.json").read_text())["job_id"]


@pytest.mark.slow  # two real Slurm round trips and a resumed training (about 20-30 s on an idle box)
def test_preempted_job_requeues_and_resumes_by_itself(slurm, tmp_path):
    """The queue (what the console uses) follows the Slurm job; a preemption mid-training
    checkpoints on SIGTERM, Slurm requeues the job, and the requeued job resumes."""
    m = _manifest(tmp_path)
    q = JobQueue(m)
    (job,) = q.submit(["pre"])
    deadline = time.time() + 240
    while time.time() < deadline and not job.metrics.snapshot()["steps"]:
        time.sleep(0.2)
        q.refresh()  # a client of the queue on disk: it reads the job's run directory when it refreshes
    assert job.metrics.snapshot()["steps"], "training steps reached the queue through the followed run directory"
    run = job.run
    job_id = _slurm_job(run)
    info = _scontrol(job_id)
    assert (info["Partition"], info["TimeLimit"], info["NumCPUs"]) == ("debug", "00:20:00", "1")
    assert info["Requeue"] == "1"
    _hold_at_a_step(run)
    assert subprocess.run(["scontrol", "requeue", job_id]).returncode == 0  # what a preemption does
    # Slurm holds a requeued batch job back for about two minutes; let it start now.
    for _ in range(240):
        if _scontrol(job_id).get("Reason") == "BeginTime":
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"])
            break
        time.sleep(0.25)
    # "interrupted" is final for the queue; the requeued Slurm job then resumes the run to the end
    deadline = time.time() + 300
    while time.time() < deadline and job.status != "finished":
        time.sleep(0.5)
        q.refresh()
    assert job.status == "finished", (job.status, job.reason)
    deadline = time.time() + 60  # the run is finished; its batch script exits a moment later
    while time.time() < deadline and _scontrol(job_id).get("JobState") != "COMPLETED":
        time.sleep(0.25)
    info = _scontrol(job_id)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1"
    events = run.events()
    # The resume cut events.jsonl back to the checkpoint; what came after it is kept aside.
    from engine.events import from_json

    discarded = [from_json(line) for line in (run.path / "events.discarded.jsonl").read_text().splitlines()]
    interrupted = [e for e in discarded if isinstance(e, StatusChanged) and e.status == "interrupted"]
    assert interrupted and "SIGTERM" in interrupted[-1].reason and "requeued job resumes" in interrupted[-1].reason
    assert any(isinstance(e, RunStarted) and e.resumed for e in events)
    steps = [e.step for e in events if isinstance(e, StepLogged)]
    assert steps == list(range(2, 33, 2))  # resumed from the SIGTERM checkpoint: no step twice, none missing
    assert any(isinstance(e, CheckpointSaved) and e.step % 16 for e in events)  # the mid-epoch one
    assert run.status()["status"] == "finished"
    assert (run.path / f"slurm-{job_id}.log").exists()


@pytest.mark.slow
def test_time_limit_warning_checkpoints_and_requeues_itself(slurm, tmp_path):
    """SIGUSR1 (what --signal=B:USR1@120 sends before the time limit): the job checkpoints and
    requeues itself with scontrol requeue; the requeued job resumes."""
    m = _manifest(tmp_path)
    steps_seen = threading.Event()

    class Watch:
        def emit(self, ev):
            if isinstance(ev, StepLogged):
                steps_seen.set()

    result = {}
    t = threading.Thread(target=lambda: result.setdefault("run", run_experiment(m, "pre", sinks=[Watch()])))
    t.start()
    assert steps_seen.wait(240)
    run = RunStore(tmp_path / "runs").latest("pre")
    job_id = _slurm_job(run)
    _hold_at_a_step(run)
    assert subprocess.run(["scancel", "--signal=USR1", "--batch", job_id]).returncode == 0
    for _ in range(480):
        if _scontrol(job_id).get("Reason") == "BeginTime":
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"])
            break
        time.sleep(0.25)
    t.join(300)
    assert not t.is_alive()
    assert run.status()["status"] == "finished", run.status()
    assert _scontrol(job_id)["Restarts"] == "1"
    from engine.events import from_json

    discarded = [from_json(line) for line in (run.path / "events.discarded.jsonl").read_text().splitlines()]
    assert any(isinstance(e, StatusChanged) and e.status == "interrupted" and "SIGUSR1" in e.reason for e in discarded)
    assert [e.step for e in run.events() if isinstance(e, StepLogged)] == list(range(2, 33, 2))


def test_cancel_while_pending_is_an_scancel(slurm, tmp_path):
    m = _manifest(tmp_path, extra='slurm_args = ["--hold"]')  # stays PENDING until released
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("run", run_experiment(m, "pre")))
    t.start()
    store = RunStore(tmp_path / "runs")
    deadline = time.time() + 60
    while time.time() < deadline and not (store.latest("pre") and (store.latest("pre").path / "slurm.json").exists()):
        time.sleep(0.1)
    run = store.latest("pre")
    job_id = _slurm_job(run)
    assert _scontrol(job_id)["JobState"] == "PENDING"
    time.sleep(0.05)
    run.request("cancel")
    t.join(60)
    assert not t.is_alive()
    assert run.status()["status"] == "cancelled"
    assert "Slurm queue" in run.status()["reason"]
    assert _scontrol(job_id)["JobState"] == "CANCELLED"


def test_sbatch_refusal_is_one_line(slurm, tmp_path):
    m = _manifest(tmp_path, extra='slurm_args = ["--partition=nosuchpartition"]')
    run = run_experiment(m, "pre")
    st = run.status()
    assert st["status"] == "failed"
    assert st["reason"].startswith("sbatch refused the job: ") and "\n" not in st["reason"]
    assert "partition" in st["reason"].lower()
