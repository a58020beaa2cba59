"""The console on a queue that refuses (a damaged ``runs/.queue``, a full disk): one line on screen
naming the problem, and the console stays up."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

from support.console import make_app, screen_text, wait_for
from support.fakes import FakeRunner

from engine.errors import UserError
from engine.queue.queuefile import QueueDirError
from tui.screens.main import MainScreen

SIZE = (100, 30)


def test_queue_errors_are_said_and_the_console_stays_up(tmp_path):
    async def go():
        app = make_app(tmp_path, FakeRunner(pretrain={"block": True, "steps": 4}), history=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            queue, submit, control = app.queue, app.queue.submit, app.queue.control

            def refuse(*a, **k):
                raise QueueDirError(Path("queue.lock"), "a regular file")

            queue.submit = refuse
            await pilot.press("r")  # params
            assert await wait_for(pilot, lambda: "queue.lock is not a regular file" in screen_text(app))
            queue.submit = submit
            await pilot.press("down", "r", "2")  # pretrain, blocking: a job to control
            job = queue.jobs[0]
            assert await wait_for(pilot, lambda: job.run is not None and job.metrics.last_step is not None)

            def full(*a, **k):
                raise OSError(errno.ENOSPC, "No space left on device", "q.json")

            queue.control = lambda *a, **k: (_ for _ in ()).throw(UserError("the queue file is damaged", "fix it"))
            await pilot.press("p")
            assert await wait_for(pilot, lambda: "the queue file is damaged; fix it" in screen_text(app))
            queue.control = full
            await pilot.press("p")
            assert await wait_for(pilot, lambda: "disk full while writing" in screen_text(app))
            queue.control = control
            await pilot.press("c", "y")
            assert await wait_for(pilot, lambda: job.status == "cancelled")
            assert app.is_running

    asyncio.run(go())


def test_a_quarantined_entry_shows_no_negative_id_and_is_not_controlled(tmp_path):
    import json

    from engine.queue.queuefile import QueueFile
    from tui.widgets.jobs import JobsPane

    qf = QueueFile(tmp_path / "runs")
    qf.dir.mkdir(parents=True)
    qf.path.write_text(json.dumps({"jobs": [{"id": 1, "experiment": "params", "run": "/etc", "state": "queued"}]}))

    async def go():
        app = make_app(tmp_path, history=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("2")
            pane = app.screen.query_one(JobsPane)
            assert await wait_for(pilot, lambda: pane.table.row_count == 1)
            assert "quarantined" in screen_text(app)
            assert [str(c) for c in pane.table.get_row_at(0)][0] == "--"
            assert "-1" not in screen_text(app)
            await pilot.press("c")  # nothing to confirm: the entry is never run
            assert isinstance(app.screen, MainScreen) and app.is_running

    asyncio.run(go())
