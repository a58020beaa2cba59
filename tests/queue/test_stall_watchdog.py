"""The stall watchdog end to end: a real job process stopped with SIGSTOP reads `stalled` in the queue,
`lmconsole queue` and `lmconsole runs`; the scheduler tells settings.notify once; cancel wakes it and it
ends cancelled. A short threshold (settings.stall_minutes, a fraction of a minute) keeps it quick."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from engine.manifest import load
from engine.queue.jobqueue import JobQueue
from engine.queue.launch import pid_alive
from support import PYTHONPATH
from support.fakes import MANIFEST, write_manifest, write_run
from support.webhook import webhook

pytest.importorskip("apprise")


def _wait(cond, timeout=30.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def _state(pid: int) -> str:
    """The process's state letter (T: stopped); "" once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _cli_json(folder, *args) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "tui.entry", "--manifest", str(folder / "experiments.toml"), *args, "--json"],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_stopped_job_reads_stalled_is_told_once_and_cancels(tmp_path, monkeypatch):
    monkeypatch.setenv("LMCONSOLE_JOB_RUNNER", "support.fakes:process_runner")
    monkeypatch.setenv("PYTHONPATH", PYTHONPATH + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("LMCONSOLE_VISIBLE_GPUS", "")
    monkeypatch.setenv("LMCONSOLE_FAKE", json.dumps({"default": {"steps": 4, "block": True}}))  # polls until cancelled
    with webhook() as (url, received):
        # 0.02 minutes: stalled after 1.2 s without a sign of life (the job beats every 0.3 s while it runs)
        settings = f'[settings]\nstall_minutes = 0.02\nnotify = ["{url}"]'
        path = write_manifest(tmp_path, MANIFEST.replace("[settings]", settings))
        queue = JobQueue(load(path))
        (job,) = queue.submit(["params"])
        assert _wait(lambda: queue.get(job.id).status == "running" and (job.run.path / "heartbeat.json").exists())
        time.sleep(1.5)  # longer than the threshold: a job that beats is not stalled
        assert queue.get(job.id).status == "running"

        pid = queue.file.read().get(job.id).pid
        try:
            os.kill(pid, signal.SIGSTOP)
            try:
                assert _wait(lambda: queue.get(job.id).status == "stalled", timeout=10)
                assert "no step, evaluation or heartbeat" in queue.get(job.id).reason
                (row,) = _cli_json(tmp_path, "queue")
                assert row["status"] == "stalled"
                (run_row,) = _cli_json(tmp_path, "runs")
                assert run_row["status"] == "stalled"
                assert job.run.raw_status()["status"] == "running"  # never written

                assert _wait(lambda: any("stalled" in r["json"]["title"] for r in received), timeout=10)
                time.sleep(1.0)  # two more scheduler passes: still told once
                told = [r["json"] for r in received if "stalled" in r["json"]["title"]]
                assert len(told) == 1 and told[0]["type"] == "warning"
                assert "params" in told[0]["title"] and "no step, evaluation or heartbeat" in told[0]["message"]
                logs = (tmp_path / "runs" / ".queue" / "logs").glob("scheduler*")
                assert any("stalled" in p.read_text() for p in logs)

                said = queue.control(queue.get(job.id), "cancel")
                assert said.startswith(f"cancel requested: #{job.id} params is stalled; it was woken (SIGCONT)")
                assert _wait(lambda: _state(pid) != "T", timeout=5)  # the cancel woke it, not the line below
            finally:
                os.kill(pid, signal.SIGCONT)  # never leave a stopped process behind
            assert _wait(lambda: queue.get(job.id).status == "cancelled", timeout=20)
            assert queue.wait_idle(20)
        finally:  # a failed assertion must not leave the blocked fake job polling for ever
            if _state(pid) not in ("", "Z"):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)


STUDY = """
[[experiment]]
name = "both"
task = "study"
steps = ["params", "baseline"]
"""


def test_the_job_that_ends_a_queued_study_tells_it_once(tmp_path, monkeypatch):
    monkeypatch.setenv("LMCONSOLE_JOB_RUNNER", "support.fakes:process_runner")
    monkeypatch.setenv("PYTHONPATH", PYTHONPATH + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("LMCONSOLE_VISIBLE_GPUS", "")
    monkeypatch.setenv("LMCONSOLE_FAKE", json.dumps({"default": {"steps": 2}}))
    with webhook() as (url, received):
        path = write_manifest(tmp_path, MANIFEST.replace("[settings]", f'[settings]\nnotify = ["{url}"]') + STUDY)
        for name in ("params", "baseline"):  # the study was done once before: every step has a finished run
            write_run(tmp_path / "runs", name, "20200101-000000-000000-abcd", task="inspect")
        queue = JobQueue(load(path))
        assert [j.experiment for j in queue.submit(["params", "baseline"])] == ["params", "baseline"]
        assert queue.wait_idle(60)
        # every job process has exited: what they were to send has gone out (or failed)
        assert _wait(lambda: not any(pid_alive(e.pid, e.started) for e in queue.file.read().jobs), timeout=30)
        (msg,) = [r["json"] for r in received]  # not when params ended: baseline was still to come
        assert msg["title"] == "lmconsole: both study done"
        assert "params: " in msg["message"] and "baseline: " in msg["message"]
