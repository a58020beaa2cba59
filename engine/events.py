"""Engine events: plain frozen dataclasses with a JSON-lines round trip.

The engine publishes events through an :class:`EventSink`; the run directory
(``events.jsonl``), the headless CLI and the console are all just subscribers.
Names are past tense (``StepLogged``); nothing here knows about any UI.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol


def _now() -> float:
    return time.time()


@dataclass(frozen=True)
class Event:
    """Base class; ``time`` is seconds since the epoch when the event happened."""

    time: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True)
class RunStarted(Event):
    run_id: str
    experiment: str
    task: str
    resumed: bool = False
    device: str = ""


@dataclass(frozen=True)
class PhaseStarted(Event):
    """A named phase of a job began (``data``, ``train``, ``eval``...)."""

    phase: str
    detail: str = ""


@dataclass(frozen=True)
class ProgressUpdated(Event):
    """Progress of non-training work (tokenisation, evaluation): ``done`` of ``total`` ``unit``
    (lines, documents; empty = items), with the tokens/s and the phase's ETA where known."""

    phase: str
    done: int
    total: int
    unit: str = ""
    tokens_per_s: float | None = None
    eta_s: float | None = None


@dataclass(frozen=True)
class StepLogged(Event):
    """Training metrics averaged over the last ``logging_steps`` optimizer steps."""

    step: int
    epoch: float
    loss: float
    learning_rate: float
    total_steps: int = 0
    parts: dict = field(default_factory=dict)  # e.g. {"mlm_loss": .., "nsp_loss": ..}
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    samples_per_s: float | None = None
    eta_s: float | None = None
    memory_mb: float | None = None


@dataclass(frozen=True)
class EvalFinished(Event):
    """Evaluation metrics; ``epoch`` 0 is the evaluation before training, a fraction one inside an epoch
    (``eval_steps``: 1.5 is halfway through the second epoch)."""

    epoch: float
    step: int
    split: str
    metrics: dict


@dataclass(frozen=True)
class TrainingStopped(Event):
    """Training ended before its last step, on purpose (early stopping); the run still ends ``finished``.

    ``reason`` is one line for people; ``epoch`` (fractional inside an epoch) and ``step`` say where.
    """

    reason: str
    epoch: float
    step: int


@dataclass(frozen=True)
class BatchReduced(Event):
    """``auto_find_batch_size`` met an out-of-memory error: the per-device batch now holds ``batch_size``
    sequences and ``gradient_accumulation_steps`` doubled with it (the effective batch is unchanged)."""

    step: int
    batch_size: int
    gradient_accumulation_steps: int
    error: str = ""


@dataclass(frozen=True)
class CheckpointSaved(Event):
    step: int
    epoch: int
    path: str


@dataclass(frozen=True)
class TableWritten(Event):
    name: str
    path: str


@dataclass(frozen=True)
class LogEmitted(Event):
    level: str  # "info" | "warning" | "error"
    message: str


@dataclass(frozen=True)
class StatusChanged(Event):
    status: str
    reason: str = ""


@dataclass(frozen=True)
class JobFailed(Event):
    reason: str
    hint: str = ""
    traceback: str = ""


@dataclass(frozen=True)
class SystemSampled(Event):
    """CPU/RAM and per-GPU figures, sampled by a job about every 30 s (engine/job/system.py).

    ``host``: cpu_percent (all cores, 0-100), cpu_count, ram_used_mb, ram_total_mb, process_rss_mb.
    ``gpus``: one dict per GPU the job sees: index, name, util_percent, memory_used_mb,
    memory_total_mb, temperature_c, power_w, power_limit_w. ``note`` says why there are none.
    """

    host: dict = field(default_factory=dict)
    gpus: list = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True)
class RunFinished(Event):
    status: str  # finished | cancelled
    results: dict = field(default_factory=dict)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        RunStarted,
        PhaseStarted,
        ProgressUpdated,
        StepLogged,
        EvalFinished,
        TrainingStopped,
        BatchReduced,
        CheckpointSaved,
        TableWritten,
        LogEmitted,
        StatusChanged,
        JobFailed,
        RunFinished,
        SystemSampled,
    )
}


def json_safe(value: Any) -> Any:
    """JSON has no NaN/inf: encode them as strings so lines stay valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # "nan", "inf", "-inf"
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _restore(value: Any) -> Any:
    if value in ("nan", "inf", "-inf"):
        return float(value)
    if isinstance(value, dict):
        return {k: _restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v) for v in value]
    return value


def to_dict(event: Event) -> dict:
    data = {"event": type(event).__name__}
    data.update(json_safe(dataclasses.asdict(event)))
    return data


def to_json(event: Event) -> str:
    return json.dumps(to_dict(event), separators=(",", ":"), allow_nan=False)


def from_dict(data: dict) -> Event:
    data = dict(data)
    cls = EVENT_TYPES[data.pop("event")]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: _restore(v) for k, v in data.items() if k in names})


def from_json(line: str) -> Event:
    return from_dict(json.loads(line))


class EventSink(Protocol):
    """Anything that receives engine events. Must be cheap and never block long."""

    def emit(self, event: Event) -> None: ...


class CallbackSink:
    """Adapts a plain function to the sink interface."""

    def __init__(self, fn: Callable[[Event], None]):
        self._fn = fn

    def emit(self, event: Event) -> None:
        self._fn(event)


class FanoutSink:
    """Sends every event to several sinks, in order (the run directory first)."""

    def __init__(self, sinks: Iterable[EventSink] = ()):
        self._sinks = list(sinks)

    def add(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def emit(self, event: Event) -> None:
        for sink in self._sinks:
            sink.emit(event)


class MetricStore:
    """Thread-safe in-memory history of one run, for UIs that poll it.

    The training thread appends; a UI timer reads snapshots at 1-2 Hz. Step
    history is capped (downsampled by 2 when full) so memory stays bounded on
    long runs.
    """

    def __init__(self, max_points: int = 4000):
        self._lock = threading.Lock()
        self.max_points = max_points
        self.steps: list[StepLogged] = []
        self.evals: list[EvalFinished] = []
        self.logs: list[LogEmitted] = []
        self.system: list[SystemSampled] = []  # CPU/RAM/GPU samples (about every 30 s), capped like steps
        self.last_step: StepLogged | None = None
        self.status: str = "queued"
        self.reason: str = ""
        self.version = 0  # bumps on every change: cheap "anything new?" check

    def emit(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, StepLogged):
                self.last_step = event
                self.steps.append(event)
                if len(self.steps) > self.max_points:
                    self.steps = self.steps[::2]
            elif isinstance(event, EvalFinished):
                self.evals.append(event)
            elif isinstance(event, LogEmitted):
                self.logs.append(event)
                del self.logs[:-500]
            elif isinstance(event, SystemSampled):
                self.system.append(event)
                if len(self.system) > self.max_points:
                    self.system = self.system[::2]
            elif isinstance(event, StatusChanged):
                # a pause, its resume and a cancel are news in the log too (as `attach` prints them)
                if event.status in ("paused", "cancelled") or (event.status == "running" and self.status == "paused"):
                    what = "resumed" if event.status == "running" else event.status
                    self.logs.append(
                        LogEmitted(
                            level="info", message=what + (f": {event.reason}" if event.reason else ""), time=event.time
                        )
                    )
                self.status, self.reason = event.status, event.reason
            elif isinstance(event, JobFailed):
                self.status, self.reason = "failed", event.reason
                self.logs.append(LogEmitted(level="error", message=event.traceback or event.reason))
            self.version += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "steps": list(self.steps),
                "evals": list(self.evals),
                "logs": list(self.logs),
                "system": list(self.system),
                "last_step": self.last_step,
                "status": self.status,
                "reason": self.reason,
                "version": self.version,
            }
