"""Scaling out: a job under torchrun with 2 CPU processes (gloo), from the CLI and from the queue."""

import time

import pytest
from support.manifests import PRETRAIN, experiment, manifest_text, run_cli, write_manifest

from engine.events import StepLogged
from engine.manifest import load
from engine.queue.jobqueue import JobQueue
from engine.store.runs import RunStore

# bert-micro pretraining under torchrun with 2 processes
DDP_KEYS = dict(
    epochs=2,
    learning_rate=1e-3,
    max_train_samples=256,
    max_eval_samples=32,
    launcher="torchrun",
    nproc_per_node=2,
)
DDP = experiment(PRETRAIN, **DDP_KEYS)


def _manifest(tmp_path):
    return write_manifest(tmp_path, manifest_text(tmp_path / "runs", DDP))


def _no_dropout_micro(folder):
    """bert-micro's config without dropout, as a model folder (``init = "scratch"``): two processes and
    one then draw no different dropout masks, so their numbers can be compared closely."""
    from transformers import BertConfig

    from engine.manifest import PRESETS

    no_dropout = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertConfig(**PRESETS["bert-micro"], vocab_size=PRETRAIN["vocab_size"], **no_dropout).save_pretrained(folder)
    return str(folder)


def test_torchrun_two_processes_from_cli_equal_one_process_with_the_same_global_batch(tmp_path, monkeypatch):
    """``lmconsole run`` launches torchrun with 2 ranks x 16 sequences per step; one process then runs
    2 micro-batches of 16 per step (gradient accumulation) on the same batches in the same order: every
    logged loss and every evaluation agree to 1e-4 (relative), the difference of summing gradients in
    another order. Ranks that trained apart (no gradient all-reduce) or split the data wrongly differ
    by far more."""
    from engine.events import EvalFinished
    from engine.job.runner import run_experiment
    from engine.tasks import pretrain as pretrain_task
    from engine.tasks.common import EpochBatches

    model = _no_dropout_micro(tmp_path / "micro")
    keys = dict(model=model, init="scratch")
    ddp_path = write_manifest(tmp_path, manifest_text(tmp_path / "runs", experiment(PRETRAIN, **DDP_KEYS, **keys)))
    proc = run_cli(ddp_path, "run", "pre", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "launched torchrun with 2 process(es)" in proc.stdout
    ddp = RunStore(tmp_path / "runs").latest("pre")
    assert ddp.status()["status"] == "finished" and ddp.results()["world_size"] == 2
    table = ddp.read_table("epochs")
    assert table.columns == ("epoch", "train_loss", "mlm_perplexity", "mlm_accuracy", "nsp_accuracy", "elapsed_s")
    steps = [e for e in ddp.events() if isinstance(e, StepLogged)]
    # 256 pairs / 16 per batch / 2 ranks = 8 optimizer steps per epoch
    assert steps[-1].step == 16 and steps[-1].total_steps == 16

    one = experiment(
        PRETRAIN, **(DDP_KEYS | keys | dict(launcher=None, nproc_per_node=None, gradient_accumulation_steps=2))
    )
    (tmp_path / "one").mkdir()
    one_path = write_manifest(tmp_path / "one", manifest_text(tmp_path / "one" / "runs", one))
    # the 2-rank job orders its batches in pairs of similar length (one pair per step): the same order here
    monkeypatch.setattr(pretrain_task, "EpochBatches", lambda *a, **k: EpochBatches(*a, **k, ranks=2))
    single = run_experiment(load(one_path), "pre")
    assert single.results()["world_size"] == 1

    def numbers(run):
        steps = [(e.step, e.loss, e.parts["mlm_loss"]) for e in run.events() if isinstance(e, StepLogged)]
        evals = [(e.epoch, e.metrics) for e in run.events() if isinstance(e, EvalFinished)]
        return steps, evals

    (ddp_steps, ddp_evals), (one_steps, one_evals) = numbers(ddp), numbers(single)
    assert [s[0] for s in ddp_steps] == [s[0] for s in one_steps] == list(range(2, 17, 2))
    for a, b in zip(ddp_steps, one_steps):
        assert a[1:] == pytest.approx(b[1:], rel=1e-4), (a, b)
    assert [e[0] for e in ddp_evals] == [e[0] for e in one_evals] == [0, 1, 2]
    for (_, a), (_, b) in zip(ddp_evals, one_evals):
        for key in ("mlm_perplexity", "mlm_accuracy", "nsp_accuracy", "masked_tokens"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), (key, a[key], b[key])
    assert ddp_evals[-1][1]["mlm_perplexity"] < 0.9 * ddp_evals[0][1]["mlm_perplexity"]  # it learned


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


def test_sigterm_during_a_slow_evaluation_still_checkpoints_and_resumes(tmp_path):
    """SIGTERM reaches torchrun while rank 0 evaluates for longer than torchrun's shutdown timeout
    (here 2 s through TORCH_ELASTIC_SHUTDOWN_TIMEOUT, standing for its default 30 s): the ranks must
    not be SIGKILLed. Rank 0 finishes the evaluation, checkpoints, and the run ends interrupted; the
    resume then gives the very numbers of an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from engine.events import EvalFinished

    path = _manifest(tmp_path)
    mark = tmp_path / "evaluating"
    support = Path(__file__).resolve().parents[1] / "support"
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(support / "slow_eval"), os.environ.get("PYTHONPATH", "")]),
        LMC_SLOW_EVAL_EPOCH="1",
        LMC_SLOW_EVAL_S="8",
        LMC_SLOW_EVAL_MARK=str(mark),
        TORCH_ELASTIC_SHUTDOWN_TIMEOUT="2",
    )
    with open(tmp_path / "cli.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui.entry", "--manifest", str(path), "run", "pre"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=Path(__file__).resolve().parents[2],
        )
        deadline = time.time() + 240
        while not mark.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert mark.exists(), (tmp_path / "cli.log").read_text()[-2000:]
        proc.send_signal(signal.SIGTERM)
        proc.wait(240)
    run = RunStore(tmp_path / "runs").latest("pre")
    st = run.status()
    assert st["status"] == "interrupted", (st, (run.path / "launcher.log").read_text()[-3000:])
    assert run.last_checkpoint() is not None and run.last_checkpoint().name == "step-00000008"

    proc = run_cli(path, "run", "pre", "--resume", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert run.status()["status"] == "finished"
    (tmp_path / "ref").mkdir()
    ref = tmp_path / "ref" / "runs"
    ref_path = write_manifest(tmp_path / "ref", manifest_text(ref, DDP))
    assert run_cli(ref_path, "run", "pre", timeout=300).returncode == 0
    ref_run = RunStore(ref).latest("pre")  # the uninterrupted run

    def numbers(r):
        steps = [(e.step, e.loss, e.learning_rate) for e in r.events() if isinstance(e, StepLogged)]
        return steps, [(e.epoch, e.metrics) for e in r.events() if isinstance(e, EvalFinished)]

    assert numbers(run) == numbers(ref_run)


def test_a_launcher_resume_from_the_queue_checks_the_manifest_first(tmp_path, monkeypatch):
    """The queue resumes with options.resuming (the ranks skip the check): the parent refuses a changed
    manifest before anything is launched, as a foreground resume does."""
    import dataclasses

    from engine.job import runner
    from engine.job.runner import JobOptions, run_experiment
    from engine.files import atomic_write_json

    m = load(_manifest(tmp_path))
    store = RunStore(m.runs_dir)
    run = store.create("pre", m.get("pre").to_dict())
    atomic_write_json(run.path / "status.json", {"status": "interrupted", "reason": ""})
    changed = dataclasses.replace(m, experiments=(dataclasses.replace(m.get("pre"), learning_rate=5e-4),))

    def no_launch(*a, **k):
        raise AssertionError("launched despite the changed manifest")

    monkeypatch.setattr(runner.subprocess, "Popen", no_launch)
    run_experiment(changed, "pre", store=store, options=JobOptions(run=run, resuming=True))
    st = run.status()
    assert st["status"] == "failed"
    assert "the manifest changed since this run started: learning_rate 0.001 -> 0.0005" in st["reason"]


def test_a_failed_rank_names_its_own_reason_and_hint(tmp_path, monkeypatch):
    """Rank 1 ran out of memory: the run's reason and hint are its, not "exited with code 1, see launcher.log"."""
    import sys

    from engine.job import runner
    from engine.job.runner import JobOptions, run_experiment

    m = load(_manifest(tmp_path))
    run = RunStore(m.runs_dir).create("pre", m.get("pre").to_dict())
    (run.path / "rank-3.failure.json").write_text('{"reason": "rank 3: from an earlier attempt", "hint": ""}')
    # the launcher stands in for torchrun: rank 1 records its failure, then the job exits with code 1
    code = (
        "import sys; from pathlib import Path; from engine.store.runs import Run; "
        "from engine.job.runner import record_rank_failure; "
        f"record_rank_failure(Run(Path({str(run.path)!r})), 1, RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB')); "
        "sys.exit(1)"
    )
    monkeypatch.setattr(runner, "launcher_command", lambda *a: [sys.executable, "-c", code])
    run_experiment(m, "pre", options=JobOptions(run=run))
    st = run.status()
    assert st["status"] == "failed"
    assert st["reason"].startswith("rank 1: out of memory: CUDA out of memory"), st
    assert "lower batch_size" in st["reason"]
