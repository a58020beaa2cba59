"""Quitting with jobs (they go on: jobs are processes), SIGHUP, the first frame, and a real tiny job."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from tui.lifecycle import Hangup
from tui.screens.main import MainScreen
from tui.screens.run import RunScreen
from support.console import make_app, screen_text, wait_for
from support.fakes import FakeRunner
from support import PYTHONPATH

REPO = Path(__file__).resolve().parents[2]
SIZE = (80, 24)


def drive(coro):
    return asyncio.run(coro)


def test_quit_without_jobs_exits_at_once(tmp_path):
    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("q")
            assert await wait_for(pilot, lambda: not app.is_running, timeout=3)

    drive(go())


def test_quit_while_running_asks_nothing_and_the_job_goes_on(tmp_path):
    """Jobs are not the console's: q exits at once; the job is still there and cancellable after."""
    runner = FakeRunner(params={"block": True})

    async def go():
        app = make_app(tmp_path, runner)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("r")
            job = app.queue.jobs[0]
            assert await wait_for(pilot, lambda: job.run is not None and job.status == "running")
            await pilot.press("q")
            assert await wait_for(pilot, lambda: not app.is_running, timeout=3)
        return app

    app = drive(go())
    job = app.queue.jobs[0]
    assert job.status == "running" and job.run.status()["status"] == "running"
    assert "cancel requested" in app.queue.control(job, "cancel")  # the confirmation lives in the console
    app.queue.wait(10)
    assert job.status == "cancelled" and job.run.status()["status"] == "cancelled"


def test_quit_with_running_and_queued_jobs_they_all_finish(tmp_path):
    gate = threading.Event()
    runner = FakeRunner(params={"gate": gate})

    async def go():
        app = make_app(tmp_path, runner)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            app.screen.run_experiments(["params", "baseline"])
            assert await wait_for(pilot, lambda: runner.started.is_set())
            await pilot.press("q")
            assert await wait_for(pilot, lambda: not app.is_running, timeout=3)
        return app

    app = drive(go())
    assert [j.status for j in app.queue.jobs] == ["running", "queued"]
    gate.set()
    app.queue.wait(20)
    assert [j.status for j in app.queue.jobs] == ["finished", "finished"]


def test_hangup_handler_stops_ui_and_job_finishes(tmp_path):
    gate = threading.Event()
    runner = FakeRunner(params={"gate": gate})

    async def go():
        app = make_app(tmp_path, runner)
        hangup = Hangup(app, redirect=False)  # the real one also points fds 1/2 at /dev/null
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("r")
            assert await wait_for(pilot, lambda: runner.started.is_set())
            hangup.handle(signal.SIGHUP, None)
            assert await wait_for(pilot, lambda: not app.is_running, timeout=3)
        assert hangup.fired and app.hangup
        return app

    app = drive(go())
    job = app.queue.jobs[0]
    assert job.status == "running"
    gate.set()
    app.queue.wait(20)
    assert job.run.status()["status"] == "finished"


SIGHUP_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from engine.queue.jobqueue import JobQueue
    from tui.app import build_app
    from tui.lifecycle import run
    from support.fakes import write_manifest

    folder = Path(sys.argv[1])

    def factory(manifest):
        queue = JobQueue(manifest)  # the real client: the job runs in its own process
        queue.submit(["params"])
        return queue

    app = build_app(write_manifest(folder), factory)
    code = run(app, headless=True)
    (folder / "ui-exited").write_text(repr(time.time()))
    sys.exit(code)
""")


def test_sighup_real_signal_in_a_subprocess(tmp_path):
    """SIGHUP (the SSH connection dropped): the console exits at once; its job, a process of its own
    session, goes on and finishes after the console is gone."""
    script = tmp_path / "console.py"
    script.write_text(SIGHUP_SCRIPT)
    gate = tmp_path / "release"
    env = {
        **os.environ,
        "PYTHONPATH": PYTHONPATH,
        "LMCONSOLE_JOB_RUNNER": "support.fakes:process_runner",
        "LMCONSOLE_FAKE": json.dumps({"params": {"gate_file": str(gate)}}),
    }
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        status = lambda: [json.loads(p.read_text())["status"] for p in (tmp_path / "runs").glob("params/*/status.json")]
        while status() != ["running"]:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGHUP)
        rc = proc.wait(10)  # no waiting for the job
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0
    assert status() == ["running"]
    gate.write_text("go")
    deadline = time.monotonic() + 30
    while status() != ["finished"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status() == ["finished"]
    ui_exit = float((tmp_path / "ui-exited").read_text())
    [run_dir] = (tmp_path / "runs" / "params").iterdir()
    finished_at = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()][-1]["time"]
    assert finished_at > ui_exit  # the job outlived the console process


FIRST_FRAME_SCRIPT = textwrap.dedent("""
    import sys, time
    t0 = time.perf_counter()
    from tui.app import build_app
    from tui.screens.main import MainScreen
    from support.fakes import write_manifest, write_history
    from pathlib import Path

    folder = Path(sys.argv[1])
    write_history(folder / "runs")
    app = build_app(write_manifest(folder))

    async def auto_pilot(pilot):
        while not isinstance(app.screen, MainScreen):
            await pilot.pause(0.01)
        await pilot.pause()
        print("FIRST_FRAME", time.perf_counter() - t0)
        print("HEAVY", ",".join(m for m in ("torch", "transformers", "datasets") if m in sys.modules) or "-")
        app.exit()

    app.run(headless=True, auto_pilot=auto_pilot, size=(80, 24))
""")


def test_first_frame_is_fast_and_light(tmp_path):
    script = tmp_path / "first.py"
    script.write_text(FIRST_FRAME_SCRIPT)
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        timeout=60,
    )
    total = time.perf_counter() - t0
    assert "HEAVY -" in out.stdout, out.stdout + out.stderr
    first = float(out.stdout.split("FIRST_FRAME")[1].split()[0])
    # Target < 2 s (measured ~0.5 s from interpreter start); generous here for loaded CI machines.
    assert first < 4.0 and total < 8.0, (first, total)


REAL_MANIFEST = """\
[settings]
runs_dir = "{runs}"

[[experiment]]
name = "tiny-pretrain"
task = "pretrain"
model = "bert-micro"
tokenizer = "train"
vocab_size = 1000
dataset = "embedded:wikitext"
dataset_config = "wikitext-2-raw-v1"
eval_split = "test"
epochs = 1
max_steps = 6
batch_size = 8
max_train_samples = 64
max_eval_samples = 16
logging_steps = 2
"""


def test_real_tiny_job_from_the_console(tmp_path):
    """A real (tiny) pretraining job, started with `r`: curves and the epochs table arrive."""
    from tui.app import build_app

    path = tmp_path / "experiments.toml"
    path.write_text(REAL_MANIFEST.format(runs=tmp_path / "runs"))

    async def go():
        app = build_app(path)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("r", "2", "enter")
            assert await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            screen = app.screen
            done = await wait_for(
                pilot,
                lambda: screen.state is not None and screen.state.status in ("finished", "failed"),
                timeout=150,
                step=0.2,
            )
            job = app.queue.jobs[0]
            assert done and job.status == "finished", (job.status, job.reason)
            await pilot.pause(0.3)
            assert [s.step for s in screen.state.steps] == [2, 4, 6]
            assert len(screen.state.evals) == 2  # before training and after the epoch
            assert "epochs" in screen.state.tables
            text = screen_text(app)
            assert "step 6/6" in text and "no data yet" not in text
            await pilot.press("3")
            assert await wait_for(pilot, lambda: screen.query_one("#table-view").table is not None)
            assert screen.query_one("#table-view").table.name == "epochs"
            assert len(screen.query_one("#table-view").table.rows) == 2

    drive(go())
