"""Plain data for the console: series for the plots and one-line formatting. No Textual here.

A run's metrics come from the engine's :class:`~engine.store.follow.RunFeed` (the one
reader of a run's events, for the console and the queue alike); :func:`status_line`
renders its :class:`~engine.store.follow.FeedState` in one line.
"""

from __future__ import annotations

import math

from engine.events import EvalFinished, StepLogged
from engine.status import ACTIVE, UNEXPECTED
from engine.store.follow import FeedState, phase_text
from engine.store.listing import PRIMARY, primary_key
from engine.tables import fmt_duration, fmt_num

STATUS_ICON = {
    "queued": "…",
    "running": "▶",
    "paused": "‖",
    "finished": "✓",
    "failed": "✗",
    "cancelled": "■",
    "interrupted": "!",
    "stalled": "◌",  # running, but no sign of life for too long
    "blocked": "⊘",
    "pruned": "✂",
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


def progress_text(last_step: StepLogged | None, phase=None, active: bool = True) -> str:
    """Short progress cell for tables: ``step 20/168 12% ETA 3m38s`` or the current phase."""
    if last_step is not None:
        tot = last_step.total_steps
        pct = f" {100 * last_step.step // tot}%" if tot else ""
        eta = f" ETA {fmt_duration(last_step.eta_s)}" if last_step.eta_s is not None and active else ""
        return f"step {last_step.step}/{tot or '?'}{pct}{eta}"
    return phase_text(phase)


def status_line(state: FeedState, width: int | None = None) -> str:
    """``running · step 20/168 (12%) · epoch 0.48 · 5.0k tok/s · ETA 3m38s · cpu 721 MB``

    The ETA only while the run is running (a paused run has none). Given a ``width``, the line
    fits it on one line: the device's memory, then the throughput, the device and the epoch go
    first; the status, the step and the ETA stay.
    """
    head = status_text(state.status)
    if state.reason and state.status in UNEXPECTED | {"finished"}:  # a finished run with a reason stopped early
        head += f": {state.reason}"
    parts: list[tuple[int, str]] = [(0, head)]  # (the order it goes in when short of room: higher first)
    s = state.last_step
    if s is not None:
        tot = s.total_steps
        parts.append((0, f"step {s.step}/{tot}" + (f" ({100 * s.step // tot}%)" if tot else "")))
        parts.append((1, f"epoch {s.epoch:.2f}"))
        if s.tokens_per_s:
            parts.append((3, f"{s.tokens_per_s / 1000:.1f}k tok/s"))
        if s.eta_s is not None and state.status == "running":
            parts.append((0, f"ETA {fmt_duration(s.eta_s)}"))
    elif state.phase and state.status in ACTIVE:
        parts.append((0, state.phase))
    if state.device:
        parts.append((2, state.device))
    if s is not None and s.memory_mb:
        parts.append((4, f"{s.memory_mb:,.0f} MB"))

    def join(parts: list[tuple[int, str]]) -> str:
        line = ""
        for p, text in parts:  # the memory follows its device: ``cpu, fp32 512 MB``
            line += (" " if p == 4 and state.device else " · " if line else "") + text
        return line

    for drop in (4, 3, 2, 1):
        line = join(parts)
        if width is None or len(line) <= width:
            return line
        parts = [(p, text) for p, text in parts if p != drop]
    return join(parts)


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
