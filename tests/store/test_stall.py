"""The stall watchdog's facts: the threshold rule, the job's heartbeat, and `stalled` derived when a
running run is read (never written), back to `running` once the job moves; cancelling a stalled job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

import engine.store.stall as stall
from engine.queue.jobqueue import cancel_stalled
from engine.store.runs import RunStore, RunWriter
from engine.store.stall import DEFAULT_STALL_S, HEARTBEAT, Heartbeat, stall_after, stall_reason


def test_threshold_is_the_setting_or_the_larger_of_15_minutes_and_20_median_steps():
    assert stall_after(0, None) == DEFAULT_STALL_S == 900
    assert stall_after(0, 10.0) == 900  # 20 x 10 s is less than 15 minutes
    assert stall_after(0, 60.0) == 1200  # slow steps: 20 of them
    assert stall_after(0.5, 1000.0) == 30  # the setting wins, in minutes, fractions allowed


def _age(run_path, seconds: float) -> None:
    """Make every sign of life of the run ``seconds`` old."""
    then = time.time() - seconds
    for name in (HEARTBEAT, "events.jsonl", "status.json"):
        if (run_path / name).exists():
            os.utime(run_path / name, (then, then))


@pytest.fixture
def live_run(tmp_path):
    """A run whose owner lock this process holds (a live job), status running."""
    run = RunStore(tmp_path / "runs").create("exp", {"name": "exp"})
    writer = RunWriter(run).open()
    writer.set_status("running")
    yield run
    writer.close()


def test_a_quiet_running_run_reads_stalled_and_is_never_written_so(live_run):
    hb = Heartbeat(live_run.path, stall_minutes=0.5)
    hb.start()
    assert json.loads((live_run.path / HEARTBEAT).read_text())["stall_after_s"] == 30
    assert live_run.status()["status"] == "running"

    _age(live_run.path, 31)
    st = live_run.status()
    assert st["status"] == "stalled"
    assert "no step, evaluation or heartbeat for 31s (stalled after 30s)" in st["reason"]
    assert live_run.raw_status()["status"] == "running"  # derived when read, not persisted

    stall.BEAT_EVERY_S, saved = 0.0, stall.BEAT_EVERY_S  # touch at once
    try:
        hb.beat()
    finally:
        stall.BEAT_EVERY_S = saved
    assert live_run.status()["status"] == "running"  # it moved: running again


def test_without_a_heartbeat_the_default_threshold_applies_to_the_events(live_run):
    _age(live_run.path, DEFAULT_STALL_S - 60)
    assert live_run.status()["status"] == "running"
    _age(live_run.path, DEFAULT_STALL_S + 60)
    assert live_run.status()["status"] == "stalled"
    assert stall_reason(live_run.path, now=time.time() - 120) == ""  # two minutes earlier it was not


def test_paused_and_dead_runs_are_not_stalled(live_run, tmp_path):
    RunWriter.set_status(RunWriter(live_run), "paused")
    _age(live_run.path, DEFAULT_STALL_S * 2)
    assert live_run.status()["status"] == "paused"
    dead = RunStore(tmp_path / "runs").create("exp", {"name": "exp"})
    (dead.path / "status.json").write_text('{"status": "running", "reason": ""}')
    _age(dead.path, DEFAULT_STALL_S * 2)
    assert dead.status()["status"] == "interrupted"  # no owner: dead, not stalled


def test_the_heartbeat_measures_steps_and_raises_its_default_threshold_for_slow_ones(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(stall.time, "monotonic", lambda: clock[0])
    hb = Heartbeat(tmp_path)
    hb.start()
    assert json.loads((tmp_path / HEARTBEAT).read_text()) == {"median_step_s": None, "stall_after_s": 900.0}
    for _ in range(5):  # 60-second steps
        hb.beat()
        clock[0] += 60.0
    assert hb.median_step_s() == 60.0
    assert json.loads((tmp_path / HEARTBEAT).read_text())["stall_after_s"] == 1200.0
    hb.pause_gap()  # a pause between two beats is no step
    clock[0] += 5000.0
    hb.beat()
    assert hb.median_step_s() == 60.0


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


def test_cancel_wakes_a_stopped_job_then_kills_one_that_does_not_answer(live_run):
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        os.kill(proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while _state(proc.pid) != "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        _age(live_run.path, 100)
        said = cancel_stalled(live_run, "#1 exp", proc.pid, "R on #1")
        assert said.startswith("cancel requested: #1 exp is stalled; it was woken (SIGCONT)")
        assert live_run.pending_request()["action"] == "cancel"
        deadline = time.monotonic() + 5
        while _state(proc.pid) == "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _state(proc.pid) != "T"  # woken
        # still quiet, the cancel unanswered: a second cancel kills it
        said = cancel_stalled(live_run, "#1 exp", proc.pid, "R on #1")
        assert said.startswith("killed #1 exp: it stalled and did not answer the cancel; R on #1 continues")
        assert proc.wait(5) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_run_outside_the_queue_is_signalled_only_through_its_owners_pid(live_run):
    from engine.queue.jobqueue import _owner_pid

    assert _owner_pid(live_run) == os.getpid()  # owner.lock and status.json agree: this process owns it
    status = json.loads((live_run.path / "status.json").read_text())
    (live_run.path / "status.json").write_text(json.dumps({**status, "pid": 1}))  # a pid someone else wrote
    assert _owner_pid(live_run) is None
