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
    heartbeat.json  the job's stall threshold; its mtime is the job's last sign of life

A run whose status says ``running``/``paused`` but whose owner lock is free was
killed: it reads as ``interrupted`` (resumable), never as running forever.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from engine.errors import NotFound
from engine.events import Event, EventSink, StatusChanged, from_dict, to_json
from engine.files import (
    SAFE_NAME,
    atomic_write_json,
    atomic_write_text,
    is_disk_full,
    open_plain,
    read_json,
    read_json_object,
    read_regular_file,
)
from engine.secrets import redact_values
from engine.status import ACTIVE, STATUSES
from engine.store.stall import stall_reason
from engine.tables import TABLE_NAME, Table

UNREADABLE = "unreadable"  # a run whose status.json is not a status: shown, never resumed or controlled


def request_seq(req) -> int:
    """The sequence number of a control request; 0 for a hand-edited or foreign value (never raises)."""
    seq = req.get("seq", 0) if isinstance(req, dict) else 0
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < 2**62 else 0


def new_run_id() -> str:
    """Time-sortable and unique: ``20261129-151306-123456-a1b2``."""
    now = _dt.datetime.now()
    return now.strftime("%Y%m%d-%H%M%S-%f") + "-" + secrets.token_hex(2)


def check_name(name: str) -> str:
    if not SAFE_NAME.match(name or "") or name in (".", ".."):
        raise ValueError(
            f"{repr(name) if name else 'an empty name'} is not a safe directory name: "
            "use letters, digits, '.', '_' or '-' "
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
        with open_plain(path) as fh:  # never a FIFO (a hang) or a link to /dev/zero (no end)
            fh.seek(offset)
            data = fh.read()
    except OSError:
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


BIG_EVENTS = 16 * 2**20  # events.jsonl larger than this is opened sampled (see read_events_sampled)
_BULK = (b'{"event":"StepLogged"', b'{"event":"ProgressUpdated"')
_SPARSE = tuple(
    b'\n{"event":"' + n.encode() + b'"'
    for n in (
        "EvalFinished",
        "TrainingStopped",
        "BatchReduced",
        "LogEmitted",
        "StatusChanged",
        "RunStarted",
        "PhaseStarted",
        "TableWritten",
        "CheckpointSaved",
        "JobFailed",
        "RunFinished",
    )
)


def read_events_sampled(
    path: Path, step_samples: int = 2000, tail_bytes: int = 2**20, chunk: int = 8 * 2**20
) -> tuple[list[dict], int]:
    """What a view of a long run needs, in bounded memory: like :func:`read_events` from 0.

    Every event except the bulk (``StepLogged``/``ProgressUpdated``) from a chunked byte
    search (C speed, one chunk in memory); ``step_samples`` evenly spaced step lines (by
    seeking); and everything in the last ``tail_bytes``. Returns (rows in file order,
    offset after the last complete line), so following continues from there.
    """
    try:
        fh = open_plain(path)
    except OSError:
        return [], 0
    found: list[tuple[int, bytes]] = []
    with fh:
        size = os.fstat(fh.fileno()).st_size
        fh.seek(max(0, size - tail_bytes))
        tail = fh.read()
        end = size - len(tail) + tail.rfind(b"\n") + 1
        if end <= 0:
            return [], 0
        cut = tail.find(b"\n") + 1 if size > tail_bytes else 0  # the tail starts at a line start
        tail_start = size - len(tail) + cut
        tail = tail[cut : end - (size - len(tail))]
        # sparse events before the tail, one chunk at a time ("\n" + chunk: a match is always a line start)
        pos, carry = 0, b"\n"
        fh.seek(0)
        while pos < tail_start:
            data = carry + fh.read(min(chunk, tail_start - pos))
            pos = fh.tell()
            last = data.rfind(b"\n")
            for pat in _SPARSE:
                i = data.find(pat)
                while 0 <= i < last:
                    j = data.find(b"\n", i + 1)
                    found.append((pos - len(data) + i + 1, data[i + 1 : j + 1]))
                    i = data.find(pat, j)
            carry = data[last:]
        # evenly spaced step lines
        seen = set()
        for k in range(step_samples if tail_start else 0):
            fh.seek(tail_start * k // step_samples)
            if k:
                fh.readline()  # to the next line start
            start = fh.tell()
            if start >= tail_start or start in seen:
                continue
            seen.add(start)
            line = fh.readline()
            if line.startswith(_BULK) and line.endswith(b"\n"):
                found.append((start, line))
    found.sort(key=lambda t: t[0])
    out: list[dict] = []
    for raw in [line for _, line in found] + tail.splitlines():
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if isinstance(row, dict):
            out.append(row)
    return out, end


def repair_events(path: Path) -> int:
    """Cut a torn last line off ``events.jsonl`` (owner only, before appending). Returns bytes cut.

    Reads backwards from the end until the last newline: a writer opening (or a resume rewinding)
    a run of a million events reads a few bytes, not the whole file.
    """
    try:
        with open(path, "rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            end = pos = size
            while pos > 0:
                step = min(pos, 1 << 16)
                pos -= step
                fh.seek(pos)
                nl = fh.read(step).rfind(b"\n")
                if nl >= 0:
                    end = pos + nl + 1
                    break
            else:
                end = 0  # no newline at all: the whole file is one torn line
            if end == size:
                return 0
            fh.truncate(end)
            return size - end
    except FileNotFoundError:
        return 0


class RunUnavailable(RuntimeError):
    """This process cannot own the run (another live process does, or its lock file is unusable); one line."""


class OwnerLock:
    """An exclusive ``flock`` on ``owner.lock``: the kernel frees it when the owner dies.

    That makes dead owners detectable without trusting pids (which get reused);
    the pid and host are written inside for humans and for the status line.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunUnavailable(
                f"{self.path} cannot be opened as a lock file ({exc.strerror or exc}); "
                "if no job runs there, remove it and try again"
            ) from None
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


CREATION_GRACE_S = 30.0  # seconds a run may show no status.json while its creator writes it


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

    # -- reading (any JSON shape: a bad file reads as {} and shows in problems()) ---
    def config(self) -> dict:
        return read_json_object(self.path / "config.json")[0]

    def results(self) -> dict:
        return read_json_object(self.path / "results.json")[0]

    def problems(self) -> list[str]:
        """``"unreadable: <file>: <reason>"`` for each of this run's JSON files that cannot be used."""
        out = [read_json_object(self.path / f)[1] for f in ("status.json", "config.json", "results.json")]
        return [p for p in out if p]

    def raw_status(self, read: tuple[dict, str] | None = None) -> dict:
        """``status.json`` as a status; ``read``: its ``read_json_object`` result when the caller has it already."""
        data, problem = read if read is not None else read_json_object(self.path / "status.json")
        if problem:
            return {"status": "unreadable", "reason": problem}
        if not data:
            return {"status": "queued"}
        if data.get("status") not in STATUSES:
            return {
                "status": "unreadable",
                "reason": f"unreadable: status.json: unknown status {str(data.get('status'))[:40]!r}",
            }
        if not isinstance(data.get("reason", ""), str):
            data["reason"] = str(data["reason"])
        return data

    def owner_alive(self) -> bool:
        return OwnerLock.is_held(self.path / "owner.lock")

    def status(self, read: tuple[dict, str] | None = None) -> dict:
        """Status with liveness applied: a dead owner turns running/paused into interrupted, and so does a
        creation that died before its first ``status.json`` (see :meth:`creation_abandoned`); a running
        job quiet for longer than its stall threshold reads as stalled (:mod:`engine.store.stall`)."""
        st = dict(self.raw_status(read))
        if st.get("status") in ACTIVE and not self.owner_alive():
            st["status"] = "interrupted"
            st["reason"] = "the process running this job stopped (killed or crashed); resume it to continue"
        elif st.get("status") == "running":
            why = stall_reason(self.path)
            if why:
                st["status"], st["reason"] = "stalled", why
        elif st.get("status") == "queued" and self.creation_abandoned():
            st["status"] = "interrupted"
            st["reason"] = (
                "the process creating this run stopped before writing its status (killed or crashed); "
                "resume it to continue"
            )
        return st

    def creation_abandoned(self, now: float | None = None) -> bool:
        """True when this run has no ``status.json`` long after its last file was written and no process
        owns it: ``RunStore.create`` writes ``config.json`` then ``status.json`` at once, so only a
        process killed in between (often mid-write, leaving a ``.status.json.*.tmp``) leaves it so."""
        import time

        try:
            names = os.listdir(self.path)
        except OSError:
            return False
        if "status.json" in names:
            return False
        newest = 0.0
        for name in names:
            if name == "config.json" or name.startswith(".status.json."):
                try:
                    newest = max(newest, os.lstat(self.path / name).st_mtime)
                except OSError:
                    continue
        if not newest or (time.time() if now is None else now) - newest < CREATION_GRACE_S:
            return False
        return not self.owner_alive()

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
        """Tables on disk whose file name is a safe name (anything else is never read or exported)."""
        if not self.tables_dir.is_dir() or self.tables_dir.is_symlink():
            return []
        return sorted(p.stem for p in self.tables_dir.glob("*.json") if TABLE_NAME.match(p.stem) and not p.is_symlink())

    def read_table(self, name: str):
        """The table ``name``; raises ValueError (one line, naming the file) when it cannot be used."""
        if not TABLE_NAME.match(name or ""):
            raise ValueError(f"unreadable: tables/{name}.json: not a safe table name")
        path = self.tables_dir / f"{name}.json"
        try:
            text = read_regular_file(path, self.path).decode("utf-8")
            table = Table.from_json(text)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"unreadable: tables/{name}.json: {reason}") from None
        if table.name != name:  # the name inside the file is never trusted as a path: the file's name is
            import dataclasses

            table = dataclasses.replace(table, name=name)
        return table

    def last_checkpoint(self) -> Path | None:
        if not self.checkpoints.is_dir():
            return None
        done = [p for p in self.checkpoints.iterdir() if p.is_dir() and (p / "state.json").exists()]
        if not done:
            return None
        return max(done, key=lambda p: read_json(p / "state.json", {}).get("global_step", -1))

    def checkpoints_newest_first(self) -> list[Path]:
        """Complete checkpoints (``step-N`` with a state.json), highest step first, by their folder name."""
        if not self.checkpoints.is_dir():
            return []
        done = [
            p
            for p in self.checkpoints.iterdir()
            if p.name.startswith("step-") and p.is_dir() and not p.is_symlink() and (p / "state.json").exists()
        ]
        return sorted(done, key=lambda p: p.name, reverse=True)

    def final_model(self) -> Path | None:
        path = self.path / "model"
        return path if (path / "config.json").exists() else None

    # -- control (any process) ----------------------------------------------
    def request(self, action: str) -> None:
        """Ask the owner to ``pause``, ``resume`` or ``cancel`` (polled between steps)."""
        if action not in ("pause", "resume", "cancel"):
            raise ValueError(f"unknown control action {action!r}")
        prev = self.pending_request()
        atomic_write_json(self.path / "control.json", {"action": action, "seq": request_seq(prev) + 1})

    def pending_request(self) -> dict:
        data = read_json(self.path / "control.json", {})
        return data if isinstance(data, dict) else {}


class RunWriter(EventSink):
    """The owner's side of a run: appends events, writes status/results/tables atomically."""

    def __init__(self, run: Run):
        self.run = run
        self.lock = OwnerLock(run.path / "owner.lock")
        self._fh: TextIO | None = None

    RESERVE = ".space-reserve"  # freed when the disk is full, so the failure itself can still be recorded
    RESERVE_BYTES = 256 * 1024

    def open(self) -> RunWriter:
        if not self.lock.acquire():
            raise RunUnavailable(
                f"run {self.run.experiment}/{self.run.run_id} is owned by another live process; "
                f"follow it or send it pause/resume/cancel requests instead "
                f"(lmconsole control {self.run.experiment} ...)"
            )
        self.clean_leftovers()
        repair_events(self.run.events_path)
        self._fh = fh = open(self.run.events_path, "a", encoding="utf-8")
        self.opened_at = fh.tell()  # where this attempt's events begin
        self._reserve()
        return self

    def clean_leftovers(self) -> list[str]:
        """Remove the half-written temporaries a killed or disk-full attempt left (owner only, lock held)."""
        import shutil

        gone = []
        candidates = []
        if self.run.checkpoints.is_dir():
            candidates += [p for p in self.run.checkpoints.iterdir() if p.name.startswith(".tmp-")]
        candidates += [p for p in self.run.path.glob(".model.tmp*")]
        for folder in (self.run.path, self.run.tables_dir):
            if (
                folder.is_dir()
            ):  # atomic_write_text temporaries of the owner's files (not control.json: anyone writes it)
                candidates += [p for p in folder.glob(".*.tmp") if not p.name.startswith(".control.json.")]
        for p in candidates:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                try:
                    p.unlink()
                except OSError:
                    continue
            gone.append(p.name)
        return gone

    def _reserve(self) -> None:
        try:
            fd = os.open(self.run.path / self.RESERVE, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.posix_fallocate(fd, 0, self.RESERVE_BYTES)
            finally:
                os.close(fd)
        except (OSError, AttributeError):
            self._free_reserve()

    def _free_reserve(self) -> bool:
        try:
            os.unlink(self.run.path / self.RESERVE)
            return True
        except OSError:
            return False

    def _with_space(self, fn):
        """Run ``fn``; on a full disk free the reserve and try once more."""
        try:
            return fn()
        except OSError as exc:
            if is_disk_full(exc) and self._free_reserve():
                return fn()
            raise

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None
        self._free_reserve()
        self.lock.release()

    @property
    def _out(self) -> TextIO:
        if self._fh is None:
            raise RuntimeError(f"the events file of {self.run.path} is not open for writing")
        return self._fh

    def emit(self, event: Event) -> None:
        # One write per line, flushed before returning, so a reader never sees a
        # complete-looking line that is not on disk.
        line = to_json(event) + "\n"
        self._out.write(line)
        self._with_space(self._out.flush)  # a failed flush keeps the line buffered: retrying the flush is enough
        if isinstance(event, StatusChanged):
            self.set_status(event.status, event.reason)

    def discard_events(self, start: int, end: int | None = None) -> None:
        """Move bytes ``[start, end)`` of ``events.jsonl`` to ``events.discarded.jsonl``; the rest stays, in order.

        The one way a resume rewinds its history: back to a checkpoint (``start`` = the checkpoint's
        offset: the steps the attempt that died did after it), or, with no checkpoint, from scratch
        (``start`` = 0, ``end`` = :attr:`opened_at`: the earlier attempts' events). Offsets are line starts.
        """
        self._out.flush()
        path = self.run.events_path
        repair_events(path)
        size = path.stat().st_size
        end = size if end is None else min(end, size)
        if not 0 <= start < end:
            return
        # The cut bytes reach events.discarded.jsonl before they leave events.jsonl: a crash in
        # between keeps them twice, never nowhere.
        if end == size:  # back to a checkpoint: only the tail is read, then cut off in place
            with open(path, "rb+") as fh:
                fh.seek(start)
                self._keep_discarded(fh.read())
                fh.truncate(start)
        else:  # from scratch: what stays moves to the front, so the file is written anew
            data = path.read_bytes()
            self._keep_discarded(data[start:end])
            atomic_write_text(path, (data[:start] + data[end:]).decode("utf-8"))
        self._out.close()
        self._fh = open(path, "a", encoding="utf-8")

    def _keep_discarded(self, data: bytes) -> None:
        with open(self.run.path / "events.discarded.jsonl", "ab") as fh:
            fh.write(data)
            fh.flush()

    def set_status(self, status: str, reason: str = "", **extra) -> None:
        data = {"status": status, "reason": reason, "pid": os.getpid(), "host": socket.gethostname()}
        from engine.device import visible_gpus

        gpus = visible_gpus()
        if gpus is not None:  # the GPUs this job holds, for the system view (a scheduler may pass its own)
            data["gpus"] = gpus
        data.update(extra)
        self._with_space(lambda: atomic_write_json(self.run.path / "status.json", data))

    def write_results(self, results: dict) -> None:
        atomic_write_json(self.run.path / "results.json", results)

    def write_table(self, table) -> Path:
        if not TABLE_NAME.match(table.name):
            raise ValueError(f"table name {table.name!r} is not a safe file name (letters, digits, '_', '-')")
        path = self.run.tables_dir / f"{table.name}.json"
        atomic_write_text(path, table.to_json())
        return path


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
        atomic_write_json(path / "config.json", redact_values(config))  # a token pasted into a value stays out
        atomic_write_json(path / "status.json", {"status": "queued", "reason": ""})
        return run

    def _resolve_inside(self, path: Path) -> Path:
        root = self.root.resolve()
        resolved = path.resolve()
        if root != resolved and root not in resolved.parents:
            raise ValueError(f"{path} is outside the runs directory {self.root}")
        return resolved

    def runs(self, experiment: str | None = None) -> list[Run]:
        """Runs on disk; symlinked experiment folders and run directories are never runs (they may lead anywhere)."""
        if experiment is not None:
            check_name(experiment)
        if not self.root.is_dir():
            return []
        exps = [self.root / experiment] if experiment else sorted(p for p in self.root.iterdir() if p.is_dir())
        out: list[Run] = []
        for exp in exps:
            if not exp.is_dir() or exp.is_symlink():
                continue
            # os.scandir: a real directory (not a symlink) from the listing itself, one stat for config.json
            with os.scandir(exp) as it:
                names = sorted(
                    e.name
                    for e in it
                    if e.is_dir(follow_symlinks=False) and os.path.exists(os.path.join(e.path, "config.json"))
                )
            out.extend(Run(exp / name) for name in names)
        return sorted(out, key=lambda r: (r.run_id, r.experiment))

    def latest(self, experiment: str, status: str | None = None) -> Run | None:
        runs = self.runs(experiment)
        if status:
            runs = [r for r in runs if r.status().get("status") == status]
        return runs[-1] if runs else None

    def get(self, ref: str) -> Run:
        """``experiment/run-id``, ``experiment`` (latest run), a run-id prefix, or the end of a run id
        (at least 4 characters: the short form ``lmconsole runs`` shows in a narrow terminal).

        :class:`NotFound` when no run matches; ``ValueError`` for a name that is not a safe
        directory name or leads outside the runs directory.
        """
        ref = ref.strip().rstrip("/")
        if "/" in ref:
            exp, rid = ref.split("/", 1)
            check_name(exp)
            check_name(rid)
            path = self._resolve_inside(self.root / exp / rid)
            if (self.root / exp).is_symlink() or (self.root / exp / rid).is_symlink():
                raise ValueError(f"{ref} is a symlink: runs are only read from real folders under {self.root}")
            if (path / "config.json").exists():
                return Run(self.root / exp / rid)
        else:
            check_name(ref)
            latest = self.latest(ref)
            if latest:
                return latest
            matches = [r for r in self.runs() if r.run_id.startswith(ref)]
            if not matches and len(ref) >= 4:  # the short form ``lmconsole runs`` shows: the id's end
                matches = [r for r in self.runs() if r.run_id.endswith(ref)]
            if len(matches) == 1:
                return matches[0]
        raise NotFound(f"no run matches {ref!r} under {self.root} (see `lmconsole runs`)")
