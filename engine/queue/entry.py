"""The queue file's content as typed data: one :class:`QueueEntry` per job, in a :class:`QueueState`.

``runs/.queue/queue.json`` is ``{"format": 1, "next_id": N, "jobs": [entry, ...]}``. An entry as
the scheduler leaves it once it started the job (keys sorted, as every writer writes them)::

    {"depends_on": [1], "devices": [0], "experiment": "finetune", "gpus": 1, "id": 2,
     "manifest": "/abs/experiments.toml", "pid": 4242, "reason": "", "resume": false,
     "run": "finetune/20260101-100000-000000-abcd", "seen_seq": 0, "started": 1767261600.1,
     "state": "started", "submitted": 1767261590.5}

``seen_seq`` and ``started`` appear when the job starts; ``seed`` and ``group`` only on one seed
of an experiment with ``seeds``; ``sweep`` (the Optuna study's name) only on a trial of a sweep,
whose parameters the scheduler asks the study for when it starts the job; ``held`` once a waiting
job was paused (and stays, ``false``, after it is released); ``waiting`` and ``blocked`` only while
the scheduler says why a waiting job cannot start yet (not enough free GPU memory now) or ever (it
fits no GPU of the machine). :meth:`QueueEntry.to_json` writes back exactly the keys and values
:meth:`QueueEntry.from_json` read (keys it does not know included), so one queue file serves this
version and the previous one alike.

An entry holds what was asked and what the scheduler did, never a status: the status of a job
is derived from its run directory each time (``engine.queue.schedule``). Entries are frozen;
a change is a :func:`dataclasses.replace` made under the queue's lock
(:meth:`QueueState.change`), and new entries are built only by :meth:`QueueState.add`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from engine.files import SAFE_NAME
from engine.store.runs import Run, RunStore

FORMAT = 1

# Keys every entry written by this version (and the previous one) carries, null when unset.
_ALWAYS = (
    *("depends_on", "devices", "experiment", "gpus", "id", "manifest"),
    *("pid", "reason", "resume", "run", "state", "submitted"),
)
# Keys written only once they have a value (absent in the file = None here).
_OPTIONAL = ("seen_seq", "started", "seed", "group", "held", "sweep", "waiting", "blocked")


class QueueFormatError(ValueError):
    """A queue file entry this version cannot read (an unknown state, a missing id...)."""


def shown(value: Any, limit: int = 60) -> str:
    """``value`` for a one-line reason: its repr in ASCII (no control character reaches a terminal), cut short."""
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(data: dict, key: str, default: int, low: int | None = None) -> int:
    value = data.get(key, default)
    if not _is_int(value) or (low is not None and value < low):
        at_least = f" of at least {low}" if low is not None else ""
        raise QueueFormatError(f"{key} must be a whole number{at_least}, not {shown(value)}")
    return value


def _opt_int(data: dict, key: str, low: int | None = None) -> int | None:
    return None if data.get(key) is None else _int(data, key, 0, low)


def _ints(data: dict, key: str) -> tuple[int, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(_is_int(v) and v >= 0 for v in value):
        raise QueueFormatError(f"{key} must be a list of whole numbers, not {shown(value)}")
    return tuple(value)


def _opt(data: dict, key: str, types: tuple[type, ...], what: str) -> Any:
    value = data.get(key)
    if value is not None and (not isinstance(value, types) or (bool not in types and isinstance(value, bool))):
        raise QueueFormatError(f"{key} must be {what}, not {shown(value)}")
    return value


def check_run_ref(ref: Any, experiment: str) -> str:
    """``ref`` if it names a run directory of ``experiment`` as ``<experiment>/<run id>`` (two safe names);
    else :class:`QueueFormatError`. A hand-edited ``/elsewhere`` or ``../x/y`` never leaves the runs dir."""
    parts = ref.split("/") if isinstance(ref, str) else []
    if len(parts) != 2 or not all(SAFE_NAME.match(p) and p not in (".", "..") for p in parts):
        raise QueueFormatError(f"run must be <experiment>/<run id> inside the runs directory, not {shown(ref)}")
    if parts[0] != experiment:
        raise QueueFormatError(f"run {shown(ref)} belongs to another experiment than {experiment}")
    return ref


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
    sweep: str | None = None  # a trial of a sweep: the study it asks for its parameters when it starts
    waiting: str | None = None  # why the scheduler has not started it yet (e.g. GPU memory), set by the scheduler
    blocked: str | None = None  # why it can never start here (it fits no GPU of the machine), set by the scheduler
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # keys of a newer version, kept

    @classmethod
    def from_json(cls, data: dict) -> QueueEntry:
        """The entry of one ``jobs`` item; :class:`QueueFormatError` names what is wrong with it."""
        if not isinstance(data, dict):
            raise QueueFormatError(f"a queue entry is an object, not {data!r}")
        job = f"job #{shown(data['id'], 20) if 'id' in data else '?'}"
        try:
            state = data.get("state", EntryState.QUEUED.value)
            try:
                state = EntryState(state)
            except ValueError:
                words = ", ".join(s.value for s in EntryState)
                raise QueueFormatError(f"unknown state {state!r} (one of {words})") from None
            if "id" not in data:
                raise QueueFormatError("no id")
            experiment = data.get("experiment")
            if not isinstance(experiment, str) or not SAFE_NAME.match(experiment):
                raise QueueFormatError(f"experiment must be an experiment name, not {shown(experiment)}")
            run = data.get("run")
            if run is not None:
                check_run_ref(run, experiment)
            manifest = _opt(data, "manifest", (str,), "the path of a manifest")
            if manifest is not None and (not manifest.startswith("/") or "\x00" in manifest):
                raise QueueFormatError(f"manifest must be an absolute path, not {shown(manifest)}")
            if state is EntryState.STARTED and run is None:
                raise QueueFormatError("started without a run directory")
            known = set(_ALWAYS) | set(_OPTIONAL)
            return cls(
                id=_int(data, "id", 0, low=1),
                experiment=experiment,
                state=state,
                manifest=manifest,
                run=run,
                resume=_opt(data, "resume", (bool,), "true or false") or False,
                depends_on=_ints(data, "depends_on"),
                gpus=_int(data, "gpus", 0, low=0),
                devices=_ints(data, "devices"),
                pid=_opt_int(data, "pid", low=0),
                reason=_opt(data, "reason", (str,), "a sentence") or "",
                submitted=_opt(data, "submitted", (int, float), "a time"),
                started=_opt(data, "started", (int, float), "a time"),
                seen_seq=_opt_int(data, "seen_seq", low=0),
                seed=_opt(data, "seed", (int,), "a whole number"),
                group=_opt(data, "group", (str,), "a name"),
                held=_opt(data, "held", (bool,), "true or false"),
                sweep=_opt(data, "sweep", (str,), "a study name"),
                waiting=_opt(data, "waiting", (str,), "a sentence"),
                blocked=_opt(data, "blocked", (str,), "a sentence"),
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
            self,
            state=EntryState.QUEUED,
            resume=resume,
            pid=None,
            reason="",
            devices=(),
            waiting=None,
            blocked=None,
            **changes,
        )

    def runner_kwargs(self, store: RunStore) -> dict[str, Any]:
        """The keyword arguments of ``run_experiment(manifest, self.experiment, **...)`` for this job: the
        store, and the options (its run directory, whether it resumes, the control requests it must not act
        on, its seed)."""
        if not self.run:
            raise QueueFormatError(f"job #{self.id} has no run directory yet")
        from engine.job.runner import JobOptions

        options = JobOptions(
            run=Run(store.root / self.run),
            resuming=self.resume,
            seen_seq=self.seen_seq or 0,
            seed=self.seed if self.group else None,
            group=self.group or "",
        )
        return {"store": store, "options": options}


@dataclass(frozen=True)
class Quarantined:
    """A ``jobs`` item set apart, never run: what the file held (as read) and why, in one line."""

    data: Any
    reason: str
    time: float | None = None  # when it was moved out of queue.json

    def to_json(self) -> dict:
        return {"entry": self.data, "reason": self.reason, "time": self.time}

    @classmethod
    def from_json(cls, item: Any) -> Quarantined:
        if not isinstance(item, dict):
            return cls(item, "not a quarantine record")
        t = item.get("time")
        return cls(item.get("entry"), str(item.get("reason") or "?"), t if isinstance(t, (int, float)) else None)


def _on_cycle(start: int, deps: dict[int, tuple[int, ...]]) -> bool:
    """Whether ``start`` depends on itself through ``deps`` (job id -> its dependencies)."""
    seen: set[int] = set()
    todo = list(deps.get(start, ()))
    while todo:
        cur = todo.pop()
        if cur == start:
            return True
        if cur not in seen:
            seen.add(cur)
            todo.extend(deps.get(cur, ()))
    return False


def _set_apart(
    jobs: list[QueueEntry], quarantined: list[Quarantined], run_inside: Callable[[str], bool] | None
) -> list[QueueEntry]:
    """The entries that may stay in the queue; the others join ``quarantined`` with their reason.

    Set apart: a second entry with an id already used, a run that resolves outside the runs
    directory (a symlinked experiment folder), and waiting entries that depend on a job not in the
    queue or on themselves (a cycle): those would wait forever, or start a job twice every pass.
    """
    kept: list[QueueEntry] = []
    for e in jobs:
        if any(k.id == e.id for k in kept):
            quarantined.append(Quarantined(e.to_json(), f"job #{e.id}: a second entry with id {e.id}"))
        elif e.run and run_inside is not None and not run_inside(e.run):
            quarantined.append(
                Quarantined(e.to_json(), f"job #{e.id}: run {shown(e.run)} leads outside the runs directory")
            )
        else:
            kept.append(e)
    while True:  # until no waiting entry depends on a missing job (setting one apart may orphan another)
        ids = {e.id for e in kept}
        deps = {e.id: e.depends_on for e in kept}
        bad: dict[int, str] = {}
        for e in kept:
            if e.state is not EntryState.QUEUED:
                continue  # a started or removed job no longer waits on anything
            missing = [d for d in e.depends_on if d not in ids]
            if missing:
                bad[e.id] = f"job #{e.id}: depends on job #{missing[0]}, which is not in the queue"
            elif _on_cycle(e.id, deps):
                bad[e.id] = f"job #{e.id}: its dependencies go round in a circle back to it"
        if not bad:
            return kept
        quarantined.extend(Quarantined(e.to_json(), bad[e.id]) for e in kept if e.id in bad)
        kept = [e for e in kept if e.id not in bad]


@dataclass
class QueueState:
    """The whole queue file: its entries in queue order and the next job id.

    Reading never fails: an entry this version cannot trust is set apart in ``quarantined`` (the
    queue file moves it to ``quarantine.json`` at its next change), and a file that is not a queue
    at all reads as an empty queue with ``damaged`` saying why (the file is moved aside, not
    overwritten).
    """

    jobs: list[QueueEntry] = field(default_factory=list)
    next_id: int = 1
    format: int | None = FORMAT
    extra: dict[str, Any] = field(default_factory=dict)  # top-level keys of a newer version, kept
    quarantined: list[Quarantined] = field(default_factory=list)  # entries of the file never run
    damaged: str = ""  # why the file could not be read as a queue ("" when it could, or there is none)

    @classmethod
    def from_json(cls, data: Any, run_inside: Callable[[str], bool] | None = None) -> QueueState:
        """The state of a ``queue.json`` (``None``: no file yet, an empty queue). ``run_inside(ref)``
        says whether an entry's run stays inside the runs directory (symlinks resolved)."""
        if data is None:
            return cls()
        if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
            got = type(data.get("jobs")).__name__ if isinstance(data, dict) else type(data).__name__
            what = f"'jobs' is {got}" if isinstance(data, dict) else f"it holds a {got}"
            return cls(damaged=f"not a queue: {what}, not a list of jobs")
        quarantined: list[Quarantined] = []
        jobs: list[QueueEntry] = []
        for item in data["jobs"]:
            try:
                jobs.append(QueueEntry.from_json(item))
            except QueueFormatError as exc:
                quarantined.append(Quarantined(item, str(exc)))
        jobs = _set_apart(jobs, quarantined, run_inside)
        used = [e.id for e in jobs] + [
            q.data["id"] for q in quarantined if isinstance(q.data, dict) and _is_int(q.data.get("id"))
        ]
        given = data.get("next_id")
        # Never hand out an id in use (or set apart): a bad or stale next_id would start a job twice.
        next_id = max(given if isinstance(given, int) and _is_int(given) else 1, max(used, default=0) + 1)
        fmt = data.get("format")
        return cls(
            jobs=jobs,
            next_id=next_id,
            format=fmt if _is_int(fmt) else None,
            extra={k: v for k, v in data.items() if k not in ("jobs", "next_id", "format")},
            quarantined=quarantined,
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
        sweep: str | None = None,
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
            sweep=sweep or None,
        )
        self.next_id += 1
        self.jobs.append(entry)
        return entry
