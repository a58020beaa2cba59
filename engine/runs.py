"""Run store: ``runs/<experiment>/<run-id>/`` is the source of truth for every job.

Layout of a run directory::

    config.json     resolved experiment settings (written once, atomically)
    events.jsonl    one JSON event per line, appended and flushed before anyone sees it
    status.json     {"status", "reason", "pid", ...} written atomically (tmp + rename)
    results.json    final metrics, written atomically
    tables/         exported tables (JSON, one per table)
    checkpoints/    model checkpoints (safetensors)
    control.json    pause/resume/cancel requests from any process
    owner.lock      held (flock) by the process that runs the job

A run whose status says ``running``/``paused`` but whose owner lock is free was
killed: it reads as ``interrupted`` (resumable), never as running forever.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import re
import secrets
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .events import Event, EventSink, StatusChanged, from_dict, to_json
from .status import ACTIVE, STATUSES  # noqa: F401 - STATUSES re-exported for older imports
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder, fsync, then rename over ``path``.

    A reader sees the old file or the new one, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_json(path: Path, data) -> None:
    from .events import _clean  # NaN/inf become "nan"/"inf" strings: strict JSON for every reader

    atomic_write_text(path, json.dumps(_clean(data), indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def new_run_id() -> str:
    """Time-sortable and unique: ``20261129-151306-123456-a1b2``."""
    now = _dt.datetime.now()
    return now.strftime("%Y%m%d-%H%M%S-%f") + "-" + secrets.token_hex(2)


def check_name(name: str) -> str:
    if not SAFE_NAME.match(name or "") or name in (".", ".."):
        raise ValueError(
            f"{name!r} is not a safe directory name: use letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return name


def read_events(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    """Complete event lines from byte ``offset``; returns (events, new offset).

    A torn last line (no newline yet, or a crash mid-write) is not returned and
    the offset stops before it, so a follower picks it up once it is complete.
    Lines that are complete but not JSON are skipped.
    """
    out: list[dict] = []
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return out, offset
    end = data.rfind(b"\n")
    if end < 0:
        return out, offset
    for raw in data[: end + 1].splitlines():
        if not raw.strip():
            continue
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out, offset + end + 1


def repair_events(path: Path) -> int:
    """Cut a torn last line off ``events.jsonl`` (owner only, before appending). Returns bytes cut."""
    try:
        with open(path, "rb+") as fh:
            data = fh.read()
            end = data.rfind(b"\n") + 1
            if end == len(data):
                return 0
            fh.truncate(end)
            return len(data) - end
    except FileNotFoundError:
        return 0


class OwnerLock:
    """An exclusive ``flock`` on ``owner.lock``: the kernel frees it when the owner dies.

    That makes dead owners detectable without trusting pids (which get reused);
    the pid and host are written inside for humans and for the status line.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    @staticmethod
    def is_held(path: Path) -> bool:
        """True when some live process (this one included) holds the lock."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # closing drops our probe lock, if we got it
        return False


@dataclass
class Run:
    """Handle on one run directory. Readers use it freely; only the owner writes."""

    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def experiment(self) -> str:
        return self.path.parent.name

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def tables_dir(self) -> Path:
        return self.path / "tables"

    # -- reading -----------------------------------------------------------
    def config(self) -> dict:
        return read_json(self.path / "config.json", {}) or {}

    def results(self) -> dict:
        return read_json(self.path / "results.json", {}) or {}

    def raw_status(self) -> dict:
        return read_json(self.path / "status.json", {}) or {"status": "queued"}

    def owner_alive(self) -> bool:
        return OwnerLock.is_held(self.path / "owner.lock")

    def status(self) -> dict:
        """Status with liveness applied: a dead owner turns running/paused into interrupted."""
        st = dict(self.raw_status())
        if st.get("status") in ACTIVE and not self.owner_alive():
            st["status"] = "interrupted"
            st["reason"] = "the process running this job stopped (killed or crashed); resume it to continue"
        return st

    def events(self) -> list[Event]:
        rows, _ = read_events(self.events_path)
        out = []
        for row in rows:
            try:
                out.append(from_dict(row))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue  # valid JSON but not an event (hand-edited or foreign line): skip it
        return out

    def follow(self, offset: int = 0) -> tuple[list[Event], int]:
        """New complete events since ``offset`` (poll this from any process)."""
        rows, offset = read_events(self.events_path, offset)
        events = []
        for row in rows:
            try:
                events.append(from_dict(row))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
        return events, offset

    def table_names(self) -> list[str]:
        if not self.tables_dir.is_dir():
            return []
        return sorted(p.stem for p in self.tables_dir.glob("*.json"))

    def read_table(self, name: str):
        from .tables import Table

        return Table.from_json(Path(self.tables_dir / f"{name}.json").read_text(encoding="utf-8"))

    def last_checkpoint(self) -> Path | None:
        if not self.checkpoints.is_dir():
            return None
        done = [p for p in self.checkpoints.iterdir() if p.is_dir() and (p / "state.json").exists()]
        if not done:
            return None
        return max(done, key=lambda p: read_json(p / "state.json", {}).get("global_step", -1))

    def final_model(self) -> Path | None:
        path = self.path / "model"
        return path if (path / "config.json").exists() else None

    # -- control (any process) ----------------------------------------------
    def request(self, action: str) -> None:
        """Ask the owner to ``pause``, ``resume`` or ``cancel`` (polled between steps)."""
        if action not in ("pause", "resume", "cancel"):
            raise ValueError(f"unknown control action {action!r}")
        prev = read_json(self.path / "control.json", {}) or {}
        atomic_write_json(self.path / "control.json", {"action": action, "seq": int(prev.get("seq", 0)) + 1})

    def pending_request(self) -> dict:
        return read_json(self.path / "control.json", {}) or {}


class RunWriter(EventSink):
    """The owner's side of a run: appends events, writes status/results/tables atomically."""

    def __init__(self, run: Run):
        self.run = run
        self.lock = OwnerLock(run.path / "owner.lock")
        self._fh = None

    def open(self) -> "RunWriter":
        if not self.lock.acquire():
            raise RuntimeError(
                f"run {self.run.experiment}/{self.run.run_id} is owned by another live process; "
                "follow it or send it pause/resume/cancel requests instead"
            )
        repair_events(self.run.events_path)
        self._fh = open(self.run.events_path, "a", encoding="utf-8")
        self.opened_at = self._fh.tell()  # where this attempt's events begin
        return self

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self.lock.release()

    def emit(self, event: Event) -> None:
        # One write per line, flushed before returning, so a reader never sees a
        # complete-looking line that is not on disk.
        self._fh.write(to_json(event) + "\n")
        self._fh.flush()
        if isinstance(event, StatusChanged):
            self.set_status(event.status, event.reason)

    def discard_before(self, offset: int) -> None:
        """Move events before byte ``offset`` to ``events.discarded.jsonl`` (a restart from scratch)."""
        self._fh.flush()
        data = self.run.events_path.read_bytes()
        with open(self.run.path / "events.discarded.jsonl", "ab") as fh:
            fh.write(data[:offset])
        atomic_write_text(self.run.events_path, data[offset:].decode("utf-8"))
        self._fh.close()
        self._fh = open(self.run.events_path, "a", encoding="utf-8")

    def set_status(self, status: str, reason: str = "", **extra) -> None:
        data = {"status": status, "reason": reason, "pid": os.getpid(), "host": socket.gethostname()}
        data.update(extra)
        atomic_write_json(self.run.path / "status.json", data)

    def write_results(self, results: dict) -> None:
        atomic_write_json(self.run.path / "results.json", results)

    def write_table(self, table) -> Path:
        path = self.run.tables_dir / f"{table.name}.json"
        atomic_write_text(path, table.to_json())
        return path

    def clear_request(self) -> None:
        try:
            os.unlink(self.run.path / "control.json")
        except FileNotFoundError:
            pass


class RunStore:
    """All runs under one root directory."""

    def __init__(self, root: Path | str = "runs"):
        self.root = Path(root)

    def create(self, experiment: str, config: dict) -> Run:
        check_name(experiment)
        exp_dir = self.root / experiment
        exp_dir.mkdir(parents=True, exist_ok=True)
        while True:
            path = exp_dir / new_run_id()
            try:
                path.mkdir()  # exclusive: two creators never share an id
                break
            except FileExistsError:
                continue
        run = Run(path)
        atomic_write_json(path / "config.json", config)
        atomic_write_json(path / "status.json", {"status": "queued", "reason": ""})
        return run

    def _resolve_inside(self, path: Path) -> Path:
        root = self.root.resolve()
        resolved = path.resolve()
        if root != resolved and root not in resolved.parents:
            raise ValueError(f"{path} is outside the runs directory {self.root}")
        return resolved

    def runs(self, experiment: str | None = None) -> list[Run]:
        if not self.root.is_dir():
            return []
        exps = [self.root / experiment] if experiment else sorted(p for p in self.root.iterdir() if p.is_dir())
        out = []
        for exp in exps:
            if not exp.is_dir():
                continue
            out.extend(Run(p) for p in sorted(exp.iterdir()) if p.is_dir() and (p / "config.json").exists())
        return sorted(out, key=lambda r: (r.run_id, r.experiment))

    def latest(self, experiment: str, status: str | None = None) -> Run | None:
        runs = self.runs(experiment)
        if status:
            runs = [r for r in runs if r.status().get("status") == status]
        return runs[-1] if runs else None

    def get(self, ref: str) -> Run:
        """``experiment/run-id``, ``experiment`` (latest run), or a run-id prefix."""
        ref = ref.strip().rstrip("/")
        if "/" in ref:
            exp, rid = ref.split("/", 1)
            check_name(exp)
            path = self._resolve_inside(self.root / exp / rid)
            if (path / "config.json").exists():
                return Run(self.root / exp / rid)
        else:
            check_name(ref)
            latest = self.latest(ref)
            if latest:
                return latest
            matches = [r for r in self.runs() if r.run_id.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
        raise KeyError(f"no run matches {ref!r} under {self.root} (see `lmconsole runs`)")

    def iter_follow(self, run: Run, offset: int = 0) -> Iterator[Event]:
        events, _ = run.follow(offset)
        yield from events
