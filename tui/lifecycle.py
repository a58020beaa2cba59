"""Running the console process: the UI, SIGHUP, and what it says about jobs on the way out.

Jobs never live in the console process (``engine.queue.jobqueue``: one detached process per
job, a scheduler started on demand), so quitting needs no choice and never holds
the shell: the console exits and one line says how many jobs go on.

* SIGHUP (the SSH connection dropped): Textual installs no handler and the default
  would kill the process mid-frame. We stop the UI cleanly from the event loop and
  point stdout/stderr at /dev/null (the terminal is gone: writes would fail).
* Tests inject a runner, and then jobs run in threads of this process: those are
  waited for before the process exits (they are not daemons), headless.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any


def redirect_to_devnull() -> None:
    """Point fds 1 and 2 at /dev/null: later writes (Textual's restore codes, prints) cannot fail."""
    try:
        fd = os.open(os.devnull, os.O_RDWR)
        for target in (1, 2):
            os.dup2(fd, target)
        os.close(fd)
    except OSError:
        pass


class Hangup:
    """SIGHUP handler: stop the UI via its event loop; jobs keep running."""

    def __init__(self, app, redirect: bool = True):
        self.app = app
        self.redirect = redirect
        self.fired = False
        self._previous: Callable[[int, FrameType | None], Any] | int | None = None  # the handler before ours

    def install(self) -> bool:
        if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
            return False
        self._previous = signal.signal(signal.SIGHUP, self.handle)
        return True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None

    def handle(self, signum=None, frame=None) -> None:
        first = not self.fired
        self.fired = True
        self.app.hangup = True
        if self.redirect:
            redirect_to_devnull()
        loop = self.app.loop
        if first and loop is not None and not loop.is_closed():
            # Signal handlers run between bytecodes of the main thread, maybe inside the
            # loop itself: schedule the exit thread-safely instead of calling into Textual.
            try:
                loop.call_soon_threadsafe(self.app.exit, "hangup")
            except RuntimeError:
                pass


def pending_jobs(queue) -> list:
    """Jobs of the queue that wait or run (in any process)."""
    return [j for j in queue.jobs if not j.done] if queue is not None else []


def _say(text: str) -> None:
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def run(app, headless: bool = False) -> int:
    """Run the app in this (main) thread; returns an exit code. Never waits for process jobs."""
    hangup = Hangup(app)
    hangup.install()
    try:
        app.run(mouse=False, headless=headless)
    finally:
        queue = app.queue
        if queue is not None and getattr(queue, "launcher", None) is not None:
            queue.wait()  # injected runner (tests): its jobs are threads of this process
        elif not hangup.fired:
            jobs = pending_jobs(queue)
            if jobs:
                running = sum(1 for j in jobs if j.active)
                _say(
                    f"lmconsole: {running} job(s) running, {len(jobs) - running} waiting, each in its own process; "
                    "`lmconsole queue` lists them, `lmconsole` reopens the console"
                )
        hangup.restore()
    if hangup.fired:
        return 0
    return app.return_code or 0
