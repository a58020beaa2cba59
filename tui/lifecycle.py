"""Running the console process: the UI, SIGHUP, and jobs that outlive the UI.

* Quit with "keep": the UI exits (terminal restored), one line says so, and the
  process stays until its jobs finish (job threads are non-daemon).
* Quit with "cancel": every job is asked to cancel (each saves a checkpoint), then we wait.
* SIGHUP (the SSH connection dropped): Textual installs no handler and the
  default kills the process with its training thread. We stop the UI cleanly
  from the event loop, point stdout/stderr at /dev/null (the terminal is gone:
  writes would fail), and let running jobs finish headless in this process; the
  next console finds their runs on disk.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time


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
        self._previous = None

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
    return [j for j in queue.jobs if not j.done] if queue is not None else []


def wait_for_jobs(queue, cancel: bool = False, poll_s: float = 0.2) -> None:
    """Wait until every job of ``queue`` is done; with ``cancel``, ask each one to cancel first.

    Queued jobs still start when their turn comes (unless cancelled). ctrl+c while
    waiting turns into "cancel all" (checkpoints are saved), a second one is left to Python.
    """
    if queue is None:
        return
    if cancel:
        queue.shutdown(cancel_running=False, timeout=0)  # queued jobs never start
    asked: set[int] = set()
    while True:
        jobs = pending_jobs(queue)
        if not jobs:
            break
        try:
            if cancel:
                for job in jobs:
                    if job.id not in asked and job.run is not None and job.active:
                        job.run.request("cancel")
                        asked.add(job.id)
            running = [j for j in jobs if j.thread is not None and j.thread.is_alive()]
            if running:
                running[0].thread.join(poll_s)
            else:
                time.sleep(poll_s)
        except KeyboardInterrupt:
            if cancel:
                raise
            cancel = True
            _say("lmconsole: cancelling the jobs (saving checkpoints); ctrl+c again to abandon them")
            queue.shutdown(cancel_running=False, timeout=0)


def _say(text: str) -> None:
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def run(app, headless: bool = False) -> int:
    """Run the app in this (main) thread, then see its jobs through. Returns an exit code."""
    hangup = Hangup(app)
    hangup.install()
    try:
        app.run(mouse=False, headless=headless)
    finally:
        queue = app.queue
        jobs = pending_jobs(queue)
        if hangup.fired:
            wait_for_jobs(queue)  # nobody is watching: finish what runs, headless
        elif jobs and app.quit_choice == "cancel":
            _say(f"lmconsole: cancelling {len(jobs)} job(s); each saves a checkpoint (resume with R or `lmconsole run NAME --resume`)")
            wait_for_jobs(queue, cancel=True)
            _say("lmconsole: jobs stopped")
        elif jobs:
            why = "console closed" if app.quit_choice == "keep" else "the console stopped unexpectedly"
            _say(f"lmconsole: {why}; {len(jobs)} job(s) keep running in this process (pid {os.getpid()}).")
            _say("  Follow them with `lmconsole runs` or a new console; ctrl+c here cancels them (checkpoint).")
            wait_for_jobs(queue)
            _say("lmconsole: all jobs done")
        hangup.restore()
    if hangup.fired:
        return 0
    return app.return_code or 0
