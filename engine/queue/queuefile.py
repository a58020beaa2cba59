"""The queue file of a runs directory and its lock: read freely, changed only under ``flock``.

Layout (beside the runs)::

    runs/.queue/queue.json      the jobs, their order, dependencies, GPUs (atomic rewrite)
    runs/.queue/queue.lock      flock held while anyone changes queue.json
    runs/.queue/scheduler.lock  flock held by the one scheduler process
    runs/.queue/logs/           stdout/stderr of the scheduler and of each job process

Readers never lock: every write replaces the file atomically, so a read sees the whole of
one version. Writers take the lock, read, change, and write back only when something changed.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.files import atomic_write_json, read_json
from engine.queue.entry import QueueFormatError, QueueState

QUEUE_DIR = ".queue"


def flock(path: Path, blocking: bool = True) -> int | None:
    """An exclusive ``flock`` on ``path`` (created if missing): its fd, or None when another
    process holds it and ``blocking`` is False. The lock dies with its process (SIGKILL too)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def unlock(fd: int) -> None:
    """Release a lock taken by :func:`flock`."""
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


class QueueFile:
    """``runs/.queue/queue.json``: read freely (atomic rewrites), changed only in :meth:`change`."""

    def __init__(self, runs_dir: Path | str):
        self.dir = Path(runs_dir) / QUEUE_DIR
        self.path = self.dir / "queue.json"
        self.lock_path = self.dir / "queue.lock"
        self.scheduler_lock = self.dir / "scheduler.lock"
        self.logs = self.dir / "logs"
        self._local = threading.RLock()  # threads of one process: flock is per open file, not per thread

    def read(self) -> QueueState:
        """The queue as it is on disk (an empty queue when there is no file yet)."""
        return self._parse(read_json(self.path, None))

    def _parse(self, data) -> QueueState:
        try:
            return QueueState.from_json(data)
        except QueueFormatError as exc:
            raise QueueFormatError(f"{self.path}: {exc}") from None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the queue lock: no other client or scheduler changes the queue meanwhile."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._local:
            fd = flock(self.lock_path)
            assert fd is not None  # a blocking flock waits for the lock: it never comes back without it
            try:
                yield
            finally:
                unlock(fd)

    @contextmanager
    def change(self) -> Iterator[QueueState]:
        """Hold the lock, yield the state to change (entries by :meth:`QueueState.change`, ``add``,
        or reordering ``jobs``), write it back atomically when it differs from the file."""
        with self.locked():
            data = read_json(self.path, None)
            state = self._parse(data)
            if not (isinstance(data, dict) and isinstance(data.get("jobs"), list)):
                data = state.to_json()  # no file yet: written only once something is in it
            before = json.dumps(data, sort_keys=True)
            yield state
            after = state.to_json()
            if json.dumps(after, sort_keys=True) != before:
                atomic_write_json(self.path, after)
