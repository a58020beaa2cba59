"""Scaling out: a job under torchrun with 2 CPU processes (gloo), from the CLI and from the queue."""

import time

from support.manifests import PRETRAIN, experiment, manifest_text, run_cli, write_manifest

from engine.events import StepLogged
from engine.manifest import load
from engine.queue.jobqueue import JobQueue
from engine.store.runs import RunStore

# bert-micro pretraining under torchrun with 2 processes
DDP = experiment(
    PRETRAIN,
    epochs=2,
    learning_rate=1e-3,
    max_train_samples=256,
    max_eval_samples=32,
    launcher="torchrun",
    nproc_per_node=2,
)


def _manifest(tmp_path):
    return write_manifest(tmp_path, manifest_text(tmp_path / "runs", DDP))


def test_torchrun_two_processes_from_cli(tmp_path):
    path = _manifest(tmp_path)
    proc = run_cli(path, "run", "pre", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "launched torchrun with 2 process(es)" in proc.stdout
    run = RunStore(tmp_path / "runs").latest("pre")
    assert run.status()["status"] == "finished"
    table = run.read_table("epochs")
    assert table.columns == ("epoch", "train_loss", "mlm_perplexity", "mlm_accuracy", "nsp_accuracy", "elapsed_s")
    assert table.column("epoch") == [0, 1, 2]
    steps = [e for e in run.events() if isinstance(e, StepLogged)]
    # 256 pairs / 16 per batch / 2 ranks = 8 optimizer steps per epoch
    assert steps[-1].step == 16 and steps[-1].total_steps == 16
    assert steps[-1].loss < steps[0].loss
    assert run.results()["world_size"] == 2


def test_torchrun_from_queue_with_cancel_and_resume(tmp_path):
    path = _manifest(tmp_path)
    m = load(path)
    q = JobQueue(m)
    (job,) = q.submit(["pre"])
    deadline = time.time() + 120
    while time.time() < deadline and not (
        q.get(job.id).run and any(isinstance(e, StepLogged) for e in job.run.events())
    ):
        time.sleep(0.1)
    assert job.run is not None, "the queue created the run before starting the job process"
    q.control(job, "cancel")
    q.wait(120)
    assert job.status == "cancelled", (job.status, job.reason)
    assert job.run.last_checkpoint() is not None
    job2 = q.resume_run(job.run)
    assert job2.id == job.id  # one row per job: the resume puts the same job back in the queue
    q.wait(300)
    assert job2.status == "finished", (job2.status, job2.reason)
    assert job.run.read_table("epochs").column("epoch") == [0, 1, 2]
