"""Plain data for the console: run feeds, series for the plots and one-line formatting. No Textual here.

A :class:`RunFeed` gives the console one view of a run's metrics whoever runs it:
every job runs in its own process, so the feed follows the run directory with the
engine's :class:`~engine.store.follow.RunFollower` (offsets, torn lines, rewinds after a
resume) into a private MetricStore, and takes status words from the job when it has one.

``poll()`` does file I/O (new bytes of ``events.jsonl`` only): call it from a
worker thread on a 1-2 Hz timer, never per training step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from engine.events import (
    EvalFinished,
    LogEmitted,
    MetricStore,
    PhaseStarted,
    ProgressUpdated,
    RunStarted,
    StepLogged,
    TableWritten,
)
from engine.status import ACTIVE, FINAL, UNEXPECTED, WAITING
from engine.store.follow import RunFollower
from engine.store.listing import PRIMARY, primary_key
from engine.store.runs import Run
from engine.tables import fmt_duration, fmt_num

STATUS_ICON = {
    "queued": "…",
    "running": "▶",
    "paused": "‖",
    "finished": "✓",
    "failed": "✗",
    "cancelled": "■",
    "interrupted": "!",
    "blocked": "⊘",
    "unreadable": "?",
}


def status_text(status: str) -> str:
    """Status word with an icon: readable without colour."""
    return f"{STATUS_ICON.get(status, '?')} {status}"


def short_id(run_id: str) -> str:
    """``20261129-152312-160143-abe0`` -> ``11-29 15:23:12`` (the id is a timestamp)."""
    if len(run_id) >= 15 and run_id[8] == "-":
        d, t = run_id[:8], run_id[9:15]
        return f"{d[4:6]}-{d[6:8]} {t[:2]}:{t[2:4]}:{t[4:6]}"
    return run_id[:14]


def phase_text(event) -> str:
    if isinstance(event, ProgressUpdated):
        pct = f" ({100 * event.done // event.total}%)" if event.total else ""
        return f"{event.phase} {event.done:,}/{event.total:,}{pct}"
    if isinstance(event, PhaseStarted):
        return f"{event.phase}: {event.detail}" if event.detail else event.phase
    return ""


def progress_text(last_step: StepLogged | None, phase=None, active: bool = True) -> str:
    """Short progress cell for tables: ``step 20/168 12% ETA 3m38s`` or the current phase."""
    if last_step is not None:
        tot = last_step.total_steps
        pct = f" {100 * last_step.step // tot}%" if tot else ""
        eta = f" ETA {fmt_duration(last_step.eta_s)}" if last_step.eta_s is not None and active else ""
        return f"step {last_step.step}/{tot or '?'}{pct}{eta}"
    return phase_text(phase)


@dataclass
class FeedState:
    """A snapshot of one run for the UI thread (plain lists, safe to keep)."""

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

    def status_line(self) -> str:
        """``running · step 20/168 (12%) · epoch 0.48 · 5.0k tok/s · ETA 3m38s · cpu 721 MB``"""
        parts = [status_text(self.status)]
        if self.reason and self.status in UNEXPECTED:
            parts[0] += f": {self.reason}"
        s = self.last_step
        if s is not None:
            tot = s.total_steps
            parts.append(f"step {s.step}/{tot}" + (f" ({100 * s.step // tot}%)" if tot else ""))
            parts.append(f"epoch {s.epoch:.2f}")
            if s.tokens_per_s:
                parts.append(f"{s.tokens_per_s / 1000:.1f}k tok/s")
            if s.eta_s is not None and self.status in ACTIVE:
                parts.append(f"ETA {fmt_duration(s.eta_s)}")
        elif self.phase and self.status in ACTIVE:
            parts.append(self.phase)
        dev = self.device
        if s is not None and s.memory_mb:
            dev = f"{dev} {s.memory_mb:,.0f} MB".strip()
        if dev:
            parts.append(dev)
        return " · ".join(parts)


class RunFeed:
    """Metric history of one run for the console, whichever process runs it (see module doc)."""

    def __init__(self, run: Run | None = None, job=None):
        self.job = job
        self.run = run
        self._store = MetricStore()
        self._follower: RunFollower | None = None
        self._phase = ""
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

    def attach(self, job) -> None:
        """Follow this job from now on (e.g. after resuming this run)."""
        self.job = job
        self._settled = False

    def _current_run(self) -> Run | None:
        if self.run is None and self.job is not None:
            self.run = self.job.run or self.job.resume
        if self.run is not None and (self._follower is None or self._follower.run.path != self.run.path):
            self._follower = RunFollower(self.run)
        return self.run

    def poll(self) -> FeedState:
        run = self._current_run()
        grew = False
        if run is not None and self._settled and self._follower.stamp() != self._stamp:
            self._settled = False  # written again (e.g. resumed by another process)
        if run is not None and not self._settled:
            events, rewound = self._follower.poll()
            if rewound:
                self._store = MetricStore()
                self._phase = ""
                self._tables_dirty = True
            for ev in events:
                grew = True
                if isinstance(ev, RunStarted) and ev.device:
                    self._device = ev.device
                elif isinstance(ev, LogEmitted) and ev.message.startswith("device "):
                    self._device = ev.message[len("device ") :]
                elif isinstance(ev, (PhaseStarted, ProgressUpdated)):
                    self._phase = phase_text(ev)
                elif isinstance(ev, TableWritten):
                    self._tables_dirty = True
                self._store.emit(ev)
            if self._tables_dirty:
                self._tables = tuple(run.table_names())
                self._tables_dirty = False
        snap = self._store.snapshot()
        if self.job is not None and hasattr(self.job, "refresh"):
            self.job.refresh()  # the queue's view of it (rate-limited re-read of the queue on disk)
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
            if not grew and self._follower.offset > 0:
                self._settled, self._stamp = True, self._follower.stamp()
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


def eval_series(evals: list[EvalFinished], key: str) -> tuple[list, list]:
    xs, ys = [], []
    for ev in evals:
        v = ev.metrics.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(ev.epoch)
            ys.append(float(v))
    return xs, ys


def eval_keys(evals: list[EvalFinished]) -> list[str]:
    """Scalar metric keys over all evaluations, primary metric first."""
    keys: dict[str, None] = {}
    for ev in evals:
        for k, v in ev.metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                keys[k] = None
    first = primary_key({k: 0.0 for k in keys})
    ordered = [k for k in PRIMARY if k in keys] + [k for k in keys if k not in PRIMARY]
    if first and first in ordered:
        ordered.remove(first)
        ordered.insert(0, first)
    return ordered


def step_series(steps: list[StepLogged], attr: str, limit: int = 600) -> tuple[list, list]:
    """(steps, values) for one StepLogged field or ``parts`` key; non-finite values dropped.

    Thinned to at most ``limit`` points: plotext rebuilds every point on each refresh.
    """
    stride = max(1, len(steps) // limit)
    xs, ys = [], []
    for s in steps[::stride]:
        v = getattr(s, attr, None) if attr in ("loss", "learning_rate", "grad_norm") else s.parts.get(attr)
        if isinstance(v, (int, float)) and math.isfinite(v):
            xs.append(s.step)
            ys.append(float(v))
    return xs, ys


def compact_value(v, width: int = 60) -> str:
    """Nested results (confusion matrices, per-class dicts) on one or a few short lines."""
    if isinstance(v, dict):
        return ", ".join(f"{k}: {compact_value(x, width)}" for k, x in v.items())
    if isinstance(v, list):
        if v and all(isinstance(r, list) for r in v):
            return "[" + "; ".join(" ".join(fmt_num(c) for c in r) for r in v) + "]"
        return "[" + ", ".join(fmt_num(x) if not isinstance(x, (dict, list)) else compact_value(x) for x in v) + "]"
    return fmt_num(v)


def system_series(samples: list) -> list[tuple[str, list, list]]:
    """(name, minutes since the first sample, values) of each figure the job's SystemSampled events carry:
    CPU %, RAM and the process's RSS, then per GPU utilisation, memory, temperature and power."""
    if not samples:
        return []
    t0 = samples[0].time
    out: dict[str, tuple[list, list]] = {}

    def add(name: str, t: float, v) -> None:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            xs, ys = out.setdefault(name, ([], []))
            xs.append(round((t - t0) / 60, 3))
            ys.append(float(v))

    for ev in samples:
        host = ev.host if isinstance(ev.host, dict) else {}
        add("cpu %", ev.time, host.get("cpu_percent"))
        add("ram used MB", ev.time, host.get("ram_used_mb"))
        add("job RSS MB", ev.time, host.get("process_rss_mb"))
        for g in ev.gpus if isinstance(ev.gpus, list) else []:
            if isinstance(g, dict):
                i = g.get("index", "?")
                add(f"gpu{i} util %", ev.time, g.get("util_percent"))
                add(f"gpu{i} memory MB", ev.time, g.get("memory_used_mb"))
                add(f"gpu{i} temp C", ev.time, g.get("temperature_c"))
                add(f"gpu{i} power W", ev.time, g.get("power_w"))
    return [(k, xs, ys) for k, (xs, ys) in out.items()]
