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

from engine.files import open_append
from engine.queue.entry import QueueEntry
from engine.queue.gpus import job_env
from engine.queue.queuefile import QueueDirError, QueueFile, check_plain
from engine.store.runs import RunStore

# ``-P``: the working directory (the manifest's folder) never goes on sys.path, so a user's own
# ``datasets.py``, ``torch.py`` or ``engine/`` beside experiments.toml is never imported by a job or
# the scheduler. Not ``-I``: that drops PYTHONPATH too, which fake runners in tests (and some
# setups) rely on.
PYTHON = (sys.executable, "-P")


def _log(queue_file: QueueFile, name: str) -> int:
    """An fd appending to ``logs/<name>`` (never through a link: a shared folder may hold one)."""
    check_plain(queue_file.logs, is_dir=True)
    queue_file.logs.mkdir(parents=True, exist_ok=True)
    try:
        return open_append(queue_file.logs / name)
    except OSError:
        raise QueueDirError(queue_file.logs / name, "a plain file that can be appended to") from None


def _started_at(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch, to about a second), from /proc; None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])  # field 22: start time, clock ticks after boot
        with open("/proc/stat") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def pid_alive(pid, not_before: float | None = None) -> bool:
    """Whether process ``pid`` runs (a zombie that exited does not).

    ``not_before``: when the job was started; a process with that pid that is older (a reused
    pid, or a hand-edited entry naming someone else's process, pid 1) is not the job's.
    """
    if not pid or isinstance(pid, bool) or not isinstance(pid, int) or pid < 1:
        return False
    if pid == os.getpid():
        return True  # a job thread of this process (tests, demos)
    try:
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":  # a zombie has exited
                return False
    except (OSError, IndexError, ValueError):
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    born = _started_at(pid) if not_before is not None else None
    return born is None or not_before is None or born >= not_before - 2  # btime counts whole seconds


class ProcessLauncher:
    """Starts each job as ``python -m engine.queue.jobproc`` in its own session (survives consoles and SSH)."""

    def __init__(self):
        self.children: list[subprocess.Popen] = []

    def alive(self, entry: QueueEntry) -> bool:
        self.reap()
        return pid_alive(entry.pid, entry.started)

    def reap(self) -> None:
        self.children = [p for p in self.children if p.poll() is None]

    def start(self, queue_file: QueueFile, entry: QueueEntry, devices: list[int]) -> int:
        env = dict(os.environ) | job_env(devices, entry.gpus)
        log = _log(queue_file, f"job-{entry.id}.log")
        try:
            proc = subprocess.Popen(
                [
                    *PYTHON,
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
            os.close(log)
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
    check_plain(queue_file.scheduler_lock, is_dir=False)  # a scheduler that cannot lock would die at once, unseen
    log = _log(queue_file, "scheduler.log")
    try:
        subprocess.Popen(
            [
                *PYTHON,
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
        os.close(log)
    return True
