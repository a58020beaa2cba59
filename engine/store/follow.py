"""Following a run's events from any process: offsets, torn lines, rewinds; a run's live history.

:class:`RunFollower` reads only the new complete lines of ``events.jsonl`` on
each :meth:`~RunFollower.poll`. A resumed job cuts the file back to its
checkpoint or replaces it (``engine.store.runs.RunWriter.discard_events``), which an
offset alone cannot tell: the follower remembers the bytes just before its
offset and, when they changed, starts over (``rewound`` is then True and
``generation`` bumps, so a reader drops what it built from the old history).
The console, ``lmconsole attach`` and the launcher parent all use this.

:class:`RunFeed` builds on it the metric history of one run (steps, evaluations, logs, phase,
device, tables, results) as a :class:`FeedState`: what the console's views draw and what the
queue shows of each job. It is the one place that turns a run's events into that history.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from engine.events import (
    Event,
    LogEmitted,
    MetricStore,
    PhaseStarted,
    ProgressUpdated,
    RunStarted,
    StepLogged,
    TableWritten,
    from_dict,
)
from engine.files import open_plain
from engine.status import FINAL, WAITING
from engine.store.runs import BIG_EVENTS, Run, read_events_sampled
from engine.tables import fmt_duration

TAIL = 64


class RunFollower:
    def __init__(self, run: Run, offset: int = 0):
        self.run = run
        self.offset = offset
        self.generation = 0
        self._tail = b""
        if offset:
            self._remember_tail()

    def _rewound(self) -> bool:
        if self.offset == 0:
            return False
        try:
            with open_plain(self.run.events_path) as fh:
                fh.seek(self.offset - len(self._tail))
                return fh.read(len(self._tail)) != self._tail
        except OSError:
            return True

    def _remember_tail(self) -> None:
        try:
            with open_plain(self.run.events_path) as fh:
                start = max(0, self.offset - TAIL)
                fh.seek(start)
                self._tail = fh.read(self.offset - start)
        except OSError:
            self._tail = b""

    def poll(self) -> tuple[list[Event], bool]:
        """(new events, rewound): with ``rewound`` the events are the whole history again."""
        rewound = self._rewound()
        if rewound:
            self.offset, self._tail = 0, b""
            self.generation += 1
        before = self.offset
        if self.offset == 0 and (self.stamp() or (0,))[0] > BIG_EVENTS:
            # A long run: open it in time and memory that do not grow with the file (sampled steps + the tail).
            rows, self.offset = read_events_sampled(self.run.events_path)
            events = []
            for row in rows:
                try:
                    events.append(from_dict(row))
                except Exception:  # noqa: BLE001 - valid JSON but not an event
                    continue
        else:
            events, self.offset = self.run.follow(self.offset)  # skips torn and foreign lines
        if self.offset != before:
            self._remember_tail()
        return events, rewound

    def stamp(self):
        """(size, mtime) of events.jsonl, or None: cheap "did anything change" probe."""
        try:
            st = os.stat(self.run.events_path)
            return st.st_size, st.st_mtime_ns
        except OSError:
            return None


def phase_text(event) -> str:
    """What a job does before its first step, from its latest ``PhaseStarted`` / ``ProgressUpdated``."""
    if isinstance(event, ProgressUpdated):
        pct = f" ({100 * event.done // event.total}%)" if event.total else ""
        return f"{event.phase} {event.done:,}/{event.total:,}{pct}{progress_extra(event)}"
    if isinstance(event, PhaseStarted):
        return f"{event.phase}: {event.detail}" if event.detail else event.phase
    return ""


def progress_extra(event: ProgressUpdated) -> str:
    """What a ``ProgressUpdated`` adds to its counts where known: `` lines · 1.2M tok/s · ETA 3m10s``."""
    parts = []
    if event.tokens_per_s:
        parts.append(f"{event.tokens_per_s / 1e3:,.1f}k tok/s")  # as StepLogged's throughput prints
    if event.eta_s is not None:
        parts.append(f"ETA {fmt_duration(event.eta_s)}")
    return (f" {event.unit}" if event.unit else "") + "".join(f" · {p}" for p in parts)


class JobView(Protocol):
    """What a feed reads of the queue's job for its run: which run, and the status words
    until the run has its own (``engine.queue.jobqueue.Job``)."""

    id: int
    experiment: str
    run: Run | None
    resume: Run | None
    status: str
    reason: str

    @property
    def done(self) -> bool: ...


@dataclass
class FeedState:
    """A snapshot of one run for a reader thread (plain lists, safe to keep)."""

    status: str = "queued"
    reason: str = ""
    steps: list = field(default_factory=list)
    evals: list = field(default_factory=list)
    logs: list = field(default_factory=list)
    system: list = field(default_factory=list)  # SystemSampled events
    last_step: StepLogged | None = None
    phase: str = ""
    device: str = ""
    tables: tuple = ()
    results: dict = field(default_factory=dict)
    version: tuple = ()


class RunFeed:
    """The metric history of one run, whichever process runs it: the one reader of a run's events
    for the console (run and compare views) and the queue's jobs.

    Every job runs in its own process, so the feed follows the run directory with a
    :class:`RunFollower` (offsets, torn lines, rewinds after a resume) into a private
    :class:`~engine.events.MetricStore`, and takes status words from ``job`` (the queue's
    view of the job) while the run has none of its own. ``refresh`` (optional) is called
    before ``job`` is read: the queue's rate-limited re-read that keeps ``job`` current.

    :meth:`follow` reads the new events only; :meth:`poll` also reads status, tables and
    results and returns a :class:`FeedState`. Both do file I/O (new bytes of ``events.jsonl``):
    call them from a worker thread on a 1-2 Hz timer, never per training step.
    """

    def __init__(self, run: Run | None = None, job: JobView | None = None, refresh: Callable[[], object] | None = None):
        self.job = job
        self.run = run
        self.refresh = refresh
        self._store = MetricStore()
        self._follower: RunFollower | None = None
        self._phase = ""
        self._phase_event: PhaseStarted | ProgressUpdated | None = None
        self._device = ""
        self._tables: tuple = ()
        self._tables_dirty = True
        self._results: dict = {}
        self._disk_status: dict = {"status": "queued"}
        self._settled = False  # a final run whose file stopped growing: nothing left to read
        self._stamp = None  # (size, mtime) of events.jsonl when the feed settled

    @property
    def generation(self) -> int:
        """Bumps when the history is re-read from the start (the run was rewound by a resume)."""
        return self._follower.generation if self._follower is not None else 0

    @property
    def metrics(self) -> MetricStore:
        """The history read so far (replaced by a new one when the run is rewound)."""
        return self._store

    @property
    def phase_event(self) -> PhaseStarted | ProgressUpdated | None:
        """The latest phase or progress event: what the job does before its first step."""
        return self._phase_event

    def attach(self, job: JobView) -> None:
        """Follow this job from now on (e.g. after resuming this run)."""
        self.job = job
        self._settled = False

    def _current_run(self) -> Run | None:
        if self.run is None and self.job is not None:
            self.run = self.job.run or self.job.resume
        if self.run is not None and (self._follower is None or self._follower.run.path != self.run.path):
            self._follower = RunFollower(self.run)
        return self.run

    def follow(self) -> bool:
        """Read the run's new events into the history; True when any came."""
        if self._current_run() is None:
            return False
        assert self._follower is not None  # made with the run
        events, rewound = self._follower.poll()
        if rewound:
            self._store = MetricStore()
            self._phase, self._phase_event = "", None
            self._tables_dirty = True
        for ev in events:
            if isinstance(ev, RunStarted) and ev.device:
                self._device = ev.device
            elif isinstance(ev, LogEmitted) and ev.message.startswith("device "):
                self._device = ev.message[len("device ") :]
            elif isinstance(ev, (PhaseStarted, ProgressUpdated)):
                self._phase, self._phase_event = phase_text(ev), ev
            elif isinstance(ev, TableWritten):
                self._tables_dirty = True
            self._store.emit(ev)
        return bool(events)

    def poll(self) -> FeedState:
        run = self._current_run()
        follower = self._follower if run is not None else None  # made with the run
        grew = False
        if follower is not None and self._settled and follower.stamp() != self._stamp:
            self._settled = False  # written again (e.g. resumed by another process)
        if run is not None and not self._settled:
            grew = self.follow()
            if self._tables_dirty:
                self._tables = tuple(run.table_names())
                self._tables_dirty = False
        snap = self._store.snapshot()
        if self.job is not None and self.refresh is not None:
            self.refresh()  # the queue's view of the job (rate-limited re-read of the queue on disk)
        if self.job is not None and (run is None or self.job.status in WAITING or self.job.reason == "starting"):
            status, reason = str(self.job.status), self.job.reason or snap["reason"]
        elif run is not None:
            self._disk_status = run.status()  # status.json (+ a lock probe): cheap at 1 Hz
            status, reason = self._disk_status.get("status", "queued"), self._disk_status.get("reason", "")
        else:
            status, reason = "queued", ""
        if run is not None and status in FINAL:
            if not self._results or grew:
                self._results = run.results()
            # Finished and not growing: stop re-reading (until a resume writes again).
            if not grew and follower is not None and follower.offset > 0:
                self._settled, self._stamp = True, follower.stamp()
        elif self._settled:
            self._settled = False
        return FeedState(
            status=status,
            reason=reason,
            steps=snap["steps"],
            evals=snap["evals"],
            logs=snap["logs"],
            system=snap.get("system", []),
            last_step=snap["last_step"],
            phase=self._phase,
            device=self._device,
            tables=self._tables,
            results=self._results,
            version=(self.generation, snap["version"], status, len(self._tables), bool(self._results), self._phase),
        )
