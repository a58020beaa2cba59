"""Starting what the queue runs: job processes, job threads (tests), the scheduler process.

The handles of live processes and threads stay here, in the launchers; the queue file keeps
only a job's pid, so any client can tell whether its process still lives.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from engine.queue.entry import QueueEntry
from engine.queue.gpus import job_env
from engine.queue.queuefile import QueueFile
from engine.store.runs import RunStore


def pid_alive(pid) -> bool:
    """Whether process ``pid`` runs (a zombie that exited does not)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{int(pid)}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except (OSError, IndexError, ValueError):
        try:
            os.kill(int(pid), 0)
            return True
        except (OSError, ValueError):
            return False


class ProcessLauncher:
    """Starts each job as ``python -m engine.queue.jobproc`` in its own session (survives consoles and SSH)."""

    def __init__(self):
        self.children: list[subprocess.Popen] = []

    def alive(self, entry: QueueEntry) -> bool:
        self.reap()
        return pid_alive(entry.pid)

    def reap(self) -> None:
        self.children = [p for p in self.children if p.poll() is None]

    def start(self, queue_file: QueueFile, entry: QueueEntry, devices: list[int]) -> int:
        queue_file.logs.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ) | job_env(devices, entry.gpus)
        log = open(queue_file.logs / f"job-{entry.id}.log", "ab")
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "engine.queue.jobproc",
                    "--runs-dir",
                    str(queue_file.dir.parent.resolve()),
                    "--job",
                    str(entry.id),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(Path(entry.manifest or "").resolve().parent),
                start_new_session=True,
                close_fds=True,
            )
        finally:
            log.close()
        self.children.append(proc)
        return proc.pid


class ThreadLauncher:
    """Runs jobs in threads of this process with an injected runner (tests, demos)."""

    def __init__(self, runner: Callable, on_done: Callable[[], None]):
        self.runner, self.on_done = runner, on_done
        self.threads: dict[int, threading.Thread] = {}

    def alive(self, entry: QueueEntry) -> bool:
        t = self.threads.get(entry.id)
        return t is not None and t.is_alive()

    def start(self, queue_file: QueueFile, entry: QueueEntry, devices: list[int]) -> int:
        from engine.manifest import load

        kwargs = entry.runner_kwargs(RunStore(queue_file.dir.parent))

        def body() -> None:
            try:
                self.runner(load(entry.manifest or ""), entry.experiment, **kwargs)
            finally:
                self.on_done()

        t = threading.Thread(target=body, name=f"job-{entry.id}-{entry.experiment}")
        self.threads[entry.id] = t
        t.start()
        return os.getpid()

    def join(self, timeout: float | None = None) -> None:
        for t in list(self.threads.values()):
            t.join(timeout)


def scheduler_running(queue_file: QueueFile) -> bool:
    from engine.store.runs import OwnerLock

    return OwnerLock.is_held(queue_file.scheduler_lock)


def ensure_scheduler(queue_file: QueueFile, manifest_path: Path | str) -> bool:
    """Start the scheduler (detached) unless one runs; True when this call started one."""
    if scheduler_running(queue_file):
        return False
    queue_file.logs.mkdir(parents=True, exist_ok=True)
    log = open(queue_file.logs / "scheduler.log", "ab")
    try:
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine.queue.scheduler",
                "--runs-dir",
                str(queue_file.dir.parent.resolve()),
                "--manifest",
                str(Path(manifest_path).resolve()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=str(Path(manifest_path).resolve().parent),
        )
    finally:
        log.close()
    return True
