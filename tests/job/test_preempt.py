"""Preemption: stop signals save a checkpoint and end the run interrupted; save_steps/minutes; save_total_limit.

Every resume here must give the very numbers of an uninterrupted run with the
same seed: each logged step (loss, parts, learning rate, grad norm) and every
evaluation, exactly.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.manifests import start_cli, write_manifest
from support.micro import micro_text_pipeline

from engine.job.preempt import StopSignals
from engine.job.runner import run_experiment
from engine.manifest import parse_text
from engine.store.runs import RunStore, read_events
from engine.train.loop import SavePolicy

REPO = Path(__file__).resolve().parents[2]

# The micro pretraining of test_reliability, with logging_steps = 3: most checkpoints then fall between
# two StepLogged events, so the logging window must resume too. 8 optimizer steps per epoch.
PRE = "epochs = 2\nlogging_steps = 3\nseed = 5"


def _manifest(tmp_path, runs="runs", extra=""):
    """The manifest with ``extra`` lines (``key = value``) replacing or adding keys of "pre"."""
    return write_manifest(tmp_path, micro_text_pipeline(tmp_path / runs, PRE + "\n" + extra))


def _rows(run, kind):
    rows, _ = read_events(run.events_path)
    return [r for r in rows if r.get("event") == kind]


def _numbers(run):
    """What must equal an uninterrupted run: the training curve and every evaluation."""
    steps = [
        (r["step"], r["epoch"], r["loss"], r["learning_rate"], r["grad_norm"], r["parts"])
        for r in _rows(run, "StepLogged")
    ]
    evals = [(r["epoch"], r["step"], r["metrics"]) for r in _rows(run, "EvalFinished")]
    return steps, evals


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run both kill tests compare with (run once)."""
    tmp = tmp_path_factory.mktemp("ref")
    path = _manifest(tmp)
    run = run_experiment(parse_text(path.read_text(), path), "pre")
    assert run.status()["status"] == "finished"
    return run


def _wait(pred, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.02)
    raise AssertionError("timed out")


def _resume_and_compare(path, run, reference):
    proc = start_cli(path, "run", "pre", "--resume")
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
    assert len(RunStore(run.path.parent.parent).runs("pre")) == 1, "resumed the same run"
    assert run.status()["status"] == "finished"
    got, want = _numbers(run), _numbers(reference)
    assert [s[0] for s in got[0]] == [s[0] for s in want[0]], "no duplicated or missing steps"
    assert got == want
    assert run.results()["final"] == reference.results()["final"]
    assert run.results()["global_step"] == reference.results()["global_step"]
    # system samples: one per attempt at least (both before the checkpoint or after the resume), all in the table
    samples = _rows(run, "SystemSampled")
    assert len(samples) >= 2 and len(run.read_table("system").rows) == len(samples)


def test_sigterm_saves_checkpoint_then_resume_equals_uninterrupted(tmp_path, reference):
    signame = "SIGTERM"  # SIGINT and SIGUSR1 take the same path: test_each_stop_signal_sets_the_flag
    path = _manifest(tmp_path)
    store = RunStore(tmp_path / "runs")
    proc = start_cli(path, "run", "pre")
    _wait(lambda: store.latest("pre") is not None, proc)
    run = store.latest("pre")
    _wait(lambda: len(_rows(run, "StepLogged")) >= 2, proc)  # step 6: mid-epoch, and so far no checkpoint
    t0 = time.time()
    proc.send_signal(getattr(signal, signame))
    rc = proc.wait(timeout=60)
    stderr = proc.stderr.read().decode()
    assert time.time() - t0 < 30
    assert rc == 130, stderr
    assert f"stopped by {signame}" in stderr and "lmconsole run pre --resume" in stderr
    st = run.status()
    assert st["status"] == "interrupted" and signame in st["reason"], st
    ckpt = run.last_checkpoint()
    assert ckpt is not None
    saved = _rows(run, "CheckpointSaved")[-1]
    assert saved["step"] >= 6 and saved["path"].endswith(ckpt.name)
    _resume_and_compare(path, run, reference)


def test_save_steps_mid_epoch_then_sigkill_then_resume_equals_uninterrupted(tmp_path, reference):
    path = _manifest(tmp_path, extra="save_steps = 4\nsave_total_limit = 0")
    store = RunStore(tmp_path / "runs")
    proc = start_cli(path, "run", "pre")
    _wait(lambda: store.latest("pre") is not None, proc)
    run = store.latest("pre")
    _wait(lambda: any(r["step"] == 4 for r in _rows(run, "CheckpointSaved")), proc)
    _wait(lambda: any(r["step"] >= 6 for r in _rows(run, "StepLogged")), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run.status()["status"] == "interrupted"
    assert run.last_checkpoint().name == "step-00000004", "the mid-epoch checkpoint (epoch 1 has more steps)"
    _resume_and_compare(path, run, reference)
    steps = sorted(int(p.name[5:]) for p in run.checkpoints.iterdir() if p.name.startswith("step-"))
    assert steps == sorted({r["step"] for r in _rows(run, "CheckpointSaved")}), "save_total_limit = 0 keeps all"
    assert 4 in steps and 8 in steps


def test_save_total_limit_keeps_the_newest(tmp_path):
    path = _manifest(tmp_path, extra="epochs = 1\nmax_train_samples = 64\nsave_steps = 1\nsave_total_limit = 3")
    run = run_experiment(parse_text(path.read_text(), path), "pre")
    assert run.status()["status"] == "finished"
    saved = [r["step"] for r in _rows(run, "CheckpointSaved")]
    assert saved == list(range(1, saved[-1] + 1)) and len(saved) > 3, "one checkpoint per step, none twice"
    kept = sorted(p.name for p in run.checkpoints.iterdir())
    assert kept == [f"step-{s:08d}" for s in saved[-3:]]
    # the job also sampled the system (at its first step boundary) and wrote the table exports read
    assert _rows(run, "SystemSampled") and "system" in run.table_names()


def test_save_policy_steps_and_minutes(monkeypatch):
    clock = {"t": 1000.0}
    monkeypatch.setattr(time, "monotonic", lambda: clock["t"])
    p = SavePolicy(save_steps=5, save_minutes=0)
    assert [s for s in range(0, 16) if p.due(s)] == [5, 10, 15]
    p = SavePolicy(save_steps=0, save_minutes=30)
    assert not p.due(3)
    clock["t"] += 30 * 60
    assert p.due(4)
    p.saved(4)
    assert not p.due(4) and not p.due(5)
    clock["t"] += 30 * 60 - 1
    assert not p.due(6)
    clock["t"] += 1
    assert p.due(7)
    assert not SavePolicy(0, 0).due(100), "both off: only epoch ends and signals save"


def test_default_is_at_most_30_minutes_between_checkpoints():
    from engine.manifest import EXPERIMENT_KEYS

    assert EXPERIMENT_KEYS["save_minutes"].default == 30.0
    assert EXPERIMENT_KEYS["save_total_limit"].default == 2


STOP_SCRIPT = """
import os, signal, sys, time
from engine.job.preempt import StopSignals
with StopSignals() as stop:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    print("first:", stop.name, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    print("still alive", flush=True)
"""


def test_first_signal_sets_a_flag_second_ends_the_process():
    proc = subprocess.run([sys.executable, "-c", STOP_SCRIPT], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.stdout.strip() == "first: SIGTERM"
    assert proc.returncode == -signal.SIGTERM


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT", "SIGUSR1"])
def test_each_stop_signal_sets_the_flag(signame):
    with StopSignals() as stop:
        os.kill(os.getpid(), getattr(signal, signame))
        for _ in range(100):
            if stop.requested:
                break
            time.sleep(0.01)
        assert stop.name == signame


def test_not_installed_outside_the_main_thread():
    import threading

    out = {}
    t = threading.Thread(target=lambda: out.setdefault("ok", StopSignals().install()))
    t.start()
    t.join()
    assert out["ok"] is False
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        with StopSignals():
            assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR1, previous)
