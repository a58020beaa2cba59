"""The queue file's content as typed data: one :class:`QueueEntry` per job, in a :class:`QueueState`.

``runs/.queue/queue.json`` is ``{"format": 1, "next_id": N, "jobs": [entry, ...]}``. An entry as
the scheduler leaves it once it started the job (keys sorted, as every writer writes them)::

    {"depends_on": [1], "devices": [0], "experiment": "finetune", "gpus": 1, "id": 2,
     "manifest": "/abs/experiments.toml", "pid": 4242, "reason": "", "resume": false,
     "run": "finetune/20260101-100000-000000-abcd", "seen_seq": 0, "started": 1767261600.1,
     "state": "started", "submitted": 1767261590.5}

``seen_seq`` and ``started`` appear when the job starts; ``seed`` and ``group`` only on one seed
of an experiment with ``seeds``; ``held`` once a waiting job was paused (and stays, ``false``,
after it is released). :meth:`QueueEntry.to_json` writes back exactly the keys and values
:meth:`QueueEntry.from_json` read (keys it does not know included), so one queue file serves
this version and the previous one alike.

An entry holds what was asked and what the scheduler did, never a status: the status of a job
is derived from its run directory each time (``engine.queue.schedule``). Entries are frozen;
a change is a :func:`dataclasses.replace` made under the queue's lock
(:meth:`QueueState.change`), and new entries are built only by :meth:`QueueState.add`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from engine.store.runs import Run, RunStore

FORMAT = 1

# Keys every entry written by this version (and the previous one) carries, null when unset.
_ALWAYS = (
    *("depends_on", "devices", "experiment", "gpus", "id", "manifest"),
    *("pid", "reason", "resume", "run", "state", "submitted"),
)
# Keys written only once they have a value (absent in the file = None here).
_OPTIONAL = ("seen_seq", "started", "seed", "group", "held")


class QueueFormatError(ValueError):
    """A queue file entry this version cannot read (an unknown state, a missing id...)."""


class EntryState(str, Enum):
    """Where an entry stands in the queue (not the job's status, which comes from its run).

    ``queued``: waiting for the scheduler (or put back by a retry or resume); ``started``: the
    scheduler created or reopened its run and started its job process; ``removed``: cancelled
    while waiting, or its experiment left the manifest.

    Holding a waiting job is the ``held`` flag of an entry, not a fourth state: a held entry is
    still ``queued`` for the previous version (which knows only these three words and reads
    ``held`` beside them), and the hold outlives a cancel and a retry of the entry (a retried
    held job comes back held), which a state word would forget.
    """

    QUEUED = "queued"
    STARTED = "started"
    REMOVED = "removed"

    def __str__(self) -> str:
        return self.value


def _int(data: dict, key: str, default: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise QueueFormatError(f"{key} must be a whole number, not {value!r}")
    return value


def _opt_int(data: dict, key: str) -> int | None:
    return None if data.get(key) is None else _int(data, key, 0)


def _ints(data: dict, key: str) -> tuple[int, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise QueueFormatError(f"{key} must be a list of numbers, not {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class QueueEntry:
    """One job of the queue as saved in ``queue.json`` (see the module doc for the format)."""

    id: int
    experiment: str
    state: EntryState = EntryState.QUEUED
    manifest: str | None = None  # the manifest it was queued from, absolute (several may share runs/)
    run: str | None = None  # "experiment/run_id" under the runs directory, once it has one
    resume: bool = False  # the next start continues ``run`` from its last checkpoint
    depends_on: tuple[int, ...] = ()
    gpus: int = 0  # GPUs it needs
    devices: tuple[int, ...] = ()  # scheduler GPU indices it was given
    pid: int | None = None  # its job process (the client's own pid for a job thread)
    reason: str = ""  # why it was removed
    submitted: float | None = None
    started: float | None = None
    seen_seq: int | None = None  # control requests up to this number were sent before this start
    seed: int | None = None  # one seed of an experiment with ``seeds``, run in ``group``
    group: str | None = None
    held: bool | None = None  # paused while waiting: the scheduler skips it (None: never held)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # keys of a newer version, kept

    @classmethod
    def from_json(cls, data: dict) -> QueueEntry:
        """The entry of one ``jobs`` item; :class:`QueueFormatError` names what is wrong with it."""
        if not isinstance(data, dict):
            raise QueueFormatError(f"a queue entry is an object, not {data!r}")
        job = f"job #{data.get('id', '?')}"
        try:
            state = data.get("state", EntryState.QUEUED.value)
            try:
                state = EntryState(state)
            except ValueError:
                words = ", ".join(s.value for s in EntryState)
                raise QueueFormatError(f"unknown state {state!r} (one of {words})") from None
            if "id" not in data:
                raise QueueFormatError("no id")
            if not isinstance(data.get("experiment"), str):
                raise QueueFormatError(f"experiment must be a name, not {data.get('experiment')!r}")
            known = set(_ALWAYS) | set(_OPTIONAL)
            return cls(
                id=_int(data, "id", 0),
                experiment=data["experiment"],
                state=state,
                manifest=data.get("manifest"),
                run=data.get("run"),
                resume=bool(data.get("resume", False)),
                depends_on=_ints(data, "depends_on"),
                gpus=_int(data, "gpus", 0),
                devices=_ints(data, "devices"),
                pid=_opt_int(data, "pid"),
                reason=str(data.get("reason") or ""),
                submitted=data.get("submitted"),
                started=data.get("started"),
                seen_seq=_opt_int(data, "seen_seq"),
                seed=data.get("seed"),
                group=data.get("group"),
                held=data.get("held"),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except QueueFormatError as exc:
            raise QueueFormatError(f"{job}: {exc}") from None

    def to_json(self) -> dict:
        """The ``jobs`` item: the keys the previous version writes and reads, with the same values."""
        out: dict[str, Any] = dict(self.extra)
        out.update(
            depends_on=list(self.depends_on),
            devices=list(self.devices),
            experiment=self.experiment,
            gpus=self.gpus,
            id=self.id,
            manifest=self.manifest,
            pid=self.pid,
            reason=self.reason,
            resume=self.resume,
            run=self.run,
            state=self.state.value,
            submitted=self.submitted,
        )
        for key in _OPTIONAL:
            value = getattr(self, key)
            if value is not None or (key == "seed" and self.group is not None):
                out[key] = value
        return out

    def requeued(self, resume: bool, **changes: Any) -> QueueEntry:
        """This entry back in the queue (a retry, a resume): waiting again, with no process or GPUs."""
        return dataclasses.replace(
            self, state=EntryState.QUEUED, resume=resume, pid=None, reason="", devices=(), **changes
        )

    def runner_kwargs(self, store: RunStore) -> dict[str, Any]:
        """The keyword arguments of ``run_experiment(manifest, self.experiment, **...)`` for this job:
        its run directory, whether it resumes, the control requests it must not act on, its seed."""
        if not self.run:
            raise QueueFormatError(f"job #{self.id} has no run directory yet")
        kwargs: dict[str, Any] = {
            "run": Run(store.root / self.run),
            "resume_flag": self.resume,
            "store": store,
            "seen_seq": self.seen_seq or 0,
        }
        if self.group:
            kwargs.update(seed=self.seed, group=self.group)
        return kwargs


@dataclass
class QueueState:
    """The whole queue file: its entries in queue order and the next job id."""

    jobs: list[QueueEntry] = field(default_factory=list)
    next_id: int = 1
    format: int | None = FORMAT
    extra: dict[str, Any] = field(default_factory=dict)  # top-level keys of a newer version, kept

    @classmethod
    def from_json(cls, data: Any) -> QueueState:
        """The state of a ``queue.json``; anything but an object with a ``jobs`` list is an empty queue
        (no file yet, or one cut short before the atomic rewrites)."""
        if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
            return cls()
        jobs = [QueueEntry.from_json(e) for e in data["jobs"]]
        default_next = max((e.id for e in jobs), default=0) + 1
        return cls(
            jobs=jobs,
            next_id=_int(data, "next_id", default_next),
            format=data.get("format"),
            extra={k: v for k, v in data.items() if k not in ("jobs", "next_id", "format")},
        )

    def to_json(self) -> dict:
        out: dict[str, Any] = dict(self.extra)
        if self.format is not None:
            out["format"] = self.format
        out.update(next_id=self.next_id, jobs=[e.to_json() for e in self.jobs])
        return out

    def get(self, job_id: int) -> QueueEntry | None:
        return next((e for e in self.jobs if e.id == job_id), None)

    def put(self, entry: QueueEntry) -> QueueEntry:
        """Replace the entry with ``entry``'s id (changed with :func:`dataclasses.replace`)."""
        for i, e in enumerate(self.jobs):
            if e.id == entry.id:
                self.jobs[i] = entry
                return entry
        raise KeyError(entry.id)

    def change(self, job_id: int, **changes: Any) -> QueueEntry:
        """Replace fields of one entry; returns the new entry."""
        entry = self.get(job_id)
        if entry is None:
            raise KeyError(job_id)
        return self.put(dataclasses.replace(entry, **changes))

    def add(
        self,
        experiment: str,
        manifest: str,
        gpus: int,
        depends_on: Iterable[int] = (),
        seed: int | None = None,
        group: str | None = None,
        run: str | None = None,
        resume: bool = False,
    ) -> QueueEntry:
        """A new waiting entry at the end of the queue, with the next id: the one place entries are built."""
        entry = QueueEntry(
            id=self.next_id,
            experiment=experiment,
            manifest=manifest,
            run=run,
            resume=resume,
            depends_on=tuple(depends_on),
            gpus=gpus,
            submitted=time.time(),
            seed=seed if group else None,
            group=group or None,
        )
        self.next_id += 1
        self.jobs.append(entry)
        return entry
