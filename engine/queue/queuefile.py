"""The queue file of a runs directory and its lock: read freely, changed only under ``flock``.

Layout (beside the runs)::

    runs/.queue/queue.json        the jobs, their order, dependencies, GPUs (atomic rewrite)
    runs/.queue/queue.lock        flock held while anyone changes queue.json
    runs/.queue/scheduler.lock    flock held by the one scheduler process
    runs/.queue/quarantine.json   entries set apart (never run), each with its one-line reason
    runs/.queue/logs/             stdout/stderr of the scheduler and of each job process

Readers never lock: every write replaces the file atomically, so a read sees the whole of
one version. Writers take the lock, read, change, and write back only when something changed.

The folder is shared (every user of the runs directory can write it), so nothing in it is
trusted: files are read without following symlinks and with a bounded size; an entry that is
malformed, escapes the runs directory, repeats an id or waits on itself is moved to
``quarantine.json`` at the next change; a ``queue.json`` that is not a queue at all is renamed
``queue.json.damaged-<time>`` and a new queue starts, the move recorded in ``quarantine.json``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.files import SAFE_NAME, atomic_write_json, read_plain
from engine.queue.entry import Quarantined, QueueState

QUEUE_DIR = ".queue"


class QueueDirError(UserError):
    """A file or folder of ``runs/.queue`` is not what it must be (a link, a folder for a file...)."""

    def __init__(self, path: Path, what: str):
        super().__init__(
            f"{path} is not {what}", "if no lmconsole uses this runs directory now, remove it and try again", code=1
        )


def check_plain(path: Path, is_dir: bool) -> None:
    """:class:`QueueDirError` when ``path`` exists as something else than a plain file (or folder)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:  # e.g. a file where a parent folder should be
        raise QueueDirError(path, "reachable: " + (exc.strerror or str(exc))) from None
    if is_dir and not stat.S_ISDIR(mode):
        raise QueueDirError(path, "a folder (a symbolic link or a file stands in its place)")
    if not is_dir and not stat.S_ISREG(mode):
        raise QueueDirError(path, "a plain file (a folder, link or special file stands in its place)")


def flock(path: Path, blocking: bool = True) -> int | None:
    """An exclusive ``flock`` on ``path`` (created if missing): its fd, or None when another
    process holds it and ``blocking`` is False. The lock dies with its process (SIGKILL too).

    :class:`QueueDirError` when ``path`` is not a plain file (a link is never followed: the pid a
    scheduler writes into its lock must not land in someone's file)."""
    check_plain(path.parent, is_dir=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError:
        raise QueueDirError(path, "a plain file that can be opened for writing") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise QueueDirError(path, "a plain file")
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


def _load(path: Path) -> tuple[Any, str, bytes]:
    """``(data, problem, raw)`` of a JSON file: ``(None, "", b"")`` when it is missing; ``problem``
    says why it cannot be read as JSON (then ``data`` is None)."""
    try:
        raw = read_plain(path)
    except FileNotFoundError:
        return None, "", b""
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})", b""
    try:
        data = json.loads(raw.decode("utf-8"))
        return data, "" if data is not None else "not a queue: it holds null", raw
    except RecursionError:
        return None, "not a queue: nested too deeply", raw
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"not JSON ({str(exc)[:80]})", raw


def _names_in(raw: bytes) -> list[str]:
    """Experiment names that a damaged queue file still shows, in order, each once (what it held)."""
    found = re.findall(rb'"experiment"\s*:\s*"([^"\\]{1,64})"', raw[: 1 << 22])
    names = [n.decode("ascii", "replace") for n in found]
    return list(dict.fromkeys(n for n in names if SAFE_NAME.match(n)))


class QueueFile:
    """``runs/.queue/queue.json``: read freely (atomic rewrites), changed only in :meth:`change`."""

    def __init__(self, runs_dir: Path | str):
        self.dir = Path(runs_dir) / QUEUE_DIR
        self.path = self.dir / "queue.json"
        self.lock_path = self.dir / "queue.lock"
        self.scheduler_lock = self.dir / "scheduler.lock"
        self.quarantine_path = self.dir / "quarantine.json"
        self.logs = self.dir / "logs"
        self._local = threading.RLock()  # threads of one process: flock is per open file, not per thread

    def _run_inside(self, ref: str) -> bool:
        """Whether run ``ref`` (already two safe names) stays in the runs directory once symlinks resolve."""
        root = self.dir.parent.resolve()
        try:
            return (self.dir.parent / ref).resolve().is_relative_to(root)
        except (OSError, RuntimeError):  # a symlink loop
            return False

    def read(self) -> QueueState:
        """The queue as it is on disk (an empty queue when there is no file yet); never raises."""
        try:
            check_plain(self.dir, is_dir=True)
        except QueueDirError as exc:
            return QueueState(damaged=str(exc))
        data, problem, _ = _load(self.path)
        state = QueueState.from_json(data, self._run_inside) if not problem else QueueState(damaged=problem)
        if state.damaged:
            state.damaged = f"{self.path.name} {state.damaged}; it is moved aside at the next change"
        return state

    def quarantined(self, state: QueueState | None = None) -> list[Quarantined]:
        """Every entry set apart, oldest first: those moved to ``quarantine.json`` and those still in
        ``queue.json`` (``state``, read now when not given) until its next change (and a damaged
        ``queue.json`` not moved aside yet)."""
        state = self.read() if state is None else state
        out = self._kept()
        if state.damaged:
            out.append(Quarantined(None, state.damaged))
        return out + [q for q in state.quarantined if q.data not in [k.data for k in out]]

    def _kept(self) -> list[Quarantined]:
        data, _, _ = _load(self.quarantine_path)
        items = data.get("entries") if isinstance(data, dict) else None
        return [Quarantined.from_json(i) for i in items] if isinstance(items, list) else []

    def _set_apart(self, new: list[Quarantined]) -> None:
        """Add records to ``quarantine.json`` (under the lock, before queue.json drops them: a kill
        between the two writes repeats a record, never loses one)."""
        data, problem, _ = _load(self.quarantine_path)
        if problem or (data is not None and not isinstance(data, dict)):
            self._move_aside(self.quarantine_path)  # never overwrite records we cannot read
            data = None
        kept = self._kept() if data is not None else []
        now = time.time()
        for q in new:
            if not any(k.data == q.data and k.reason == q.reason for k in kept):
                kept.append(Quarantined(q.data, q.reason, q.time or now))
        atomic_write_json(self.quarantine_path, {"entries": [k.to_json() for k in kept]})

    def _move_aside(self, path: Path) -> Path:
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        os.rename(path, aside)  # renames a link itself, never its target
        return aside

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the queue lock: no other client or scheduler changes the queue meanwhile."""
        check_plain(self.dir, is_dir=True)  # the runs directory itself may be a link (to a scratch disk)
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
        or reordering ``jobs``), write it back atomically when it differs from the file.

        Entries set apart go to ``quarantine.json`` first; a damaged file is moved aside first."""
        with self.locked():
            data, problem, raw = _load(self.path)
            state = QueueState.from_json(data, self._run_inside) if not problem else QueueState(damaged=problem)
            if state.damaged:
                aside = self._move_aside(self.path)
                names = _names_in(raw)
                held = f"; it named {', '.join(names[:10])}" + (" ..." if len(names) > 10 else "") if names else ""
                self._set_apart([Quarantined(None, f"{self.path.name} {state.damaged}: moved to {aside.name}{held}")])
                data, state = None, QueueState()
            if state.quarantined:
                self._set_apart(state.quarantined)
            if not (isinstance(data, dict) and isinstance(data.get("jobs"), list)):
                data = state.to_json()  # no file yet: written only once something is in it
            before = json.dumps(data, sort_keys=True)
            yield state
            after = state.to_json()
            if json.dumps(after, sort_keys=True) != before:
                atomic_write_json(self.path, after)
