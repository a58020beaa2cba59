"""Plain data for the sweep view: best-so-far, parallel-coordinate axes, importances. No Textual here.

Everything is derived from :class:`engine.sweep.summary.SweepSummary` (the one reader of a
sweep); these functions only reshape it for the plots and one-line texts of
:mod:`tui.screens.sweep`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.tables import fmt_num

# Parallel coordinates colour and mark each trial by the third of the objective it falls in
# (best third first), so the lines read without colour too.
BANDS = (("best third", "•", "green"), ("middle third", "+", "yellow"), ("worst third", "x", "red"))
LOG_RATIO = 20.0  # a positive numeric axis spanning more than this factor is drawn on log10


def _number(v) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def objective_series(trials, maximize: bool) -> tuple[list[int], list[float], list[float]]:
    """(trial numbers, objective, best so far) in trial order, over the trials with an objective.

    Best so far counts finished trials only (a pruned or failed trial's last value is no model
    the sweep keeps); before the first finished one it follows the objective."""
    xs, ys, best = [], [], []
    current: float | None = None
    for t in sorted(trials, key=lambda t: t.trial):
        v = _number(t.objective)
        if v is None:
            continue
        if t.status == "finished" and (current is None or (v > current if maximize else v < current)):
            current = v
        xs.append(t.trial)
        ys.append(v)
        best.append(current if current is not None else v)
    return xs, ys, best


@dataclass(frozen=True)
class Axis:
    """One vertical axis of the parallel-coordinates plot: a parameter or the objective."""

    name: str
    low: str  # the value at the bottom (0), as text
    high: str  # the value at the top (1)
    log: bool = False
    categories: tuple[str, ...] = ()  # a categorical axis: its values bottom to top

    def describe(self) -> str:
        if self.categories:
            return f"{self.name}: {' < '.join(self.categories)}"
        return f"{self.name}: {self.low}..{self.high}" + (" (log)" if self.log else "")


def _axis(name: str, values: list, log: bool | None = None) -> tuple[Axis, list[float | None]]:
    """The axis of ``values`` and each value's position on it (0 bottom .. 1 top; None if missing).

    ``log``: the scale the sweep declared for this parameter; None (the objective, a parameter no
    longer in the manifest) decides from the values' spread."""
    present = [v for v in values if v is not None]
    numbers = [_number(v) for v in present]
    if present and all(n is not None for n in numbers):
        nums = [float(n) for n in numbers if n is not None]
        lo, hi = min(nums), max(nums)
        log = lo > 0 and (hi / lo > LOG_RATIO if log is None else log)

        def scale(x: float) -> float:
            return math.log10(x) if log else x

        span = scale(hi) - scale(lo)
        pos = [
            None if _number(v) is None else (0.5 if span <= 0 else (scale(float(v)) - scale(lo)) / span) for v in values
        ]
        return Axis(name, fmt_num(lo, 3), fmt_num(hi, 3), log), pos
    cats = sorted({str(v) for v in present})
    step = 1 / (len(cats) - 1) if len(cats) > 1 else 0.0
    pos = [None if v is None else (cats.index(str(v)) * step if len(cats) > 1 else 0.5) for v in values]
    return Axis(name, cats[0] if cats else "", cats[-1] if cats else "", categories=tuple(cats)), pos


def parallel_coordinates(
    summary, scales: dict[str, bool] | None = None
) -> tuple[list[Axis], list[tuple[int, int, list[float | None]]]]:
    """Axes (each parameter, then the objective) and one line per trial with an objective:
    (trial, band index 0 best .. 2 worst, position on each axis). ``scales``: parameter -> log, as the
    sweep declares its ranges (a range without ``log`` is drawn linear however wide it is)."""
    trials = [t for t in summary.trials if _number(t.objective) is not None]
    params = list(dict.fromkeys(k for t in trials for k in t.parameters))
    axes, columns = [], []
    for p in params:
        axis, pos = _axis(p, [t.parameters.get(p) for t in trials], (scales or {}).get(p))
        axes.append(axis)
        columns.append(pos)
    axis, pos = _axis(summary.objective or "objective", [t.objective for t in trials])
    axes.append(axis)
    columns.append(pos)
    # summary.trials is sorted best first: rank r of n falls in band 3 * r // n; equal objectives
    # share their mean rank, as quantiles do (a sweep where every trial scored the same is all middle)
    ranks = []
    for t in trials:
        same = [j for j, u in enumerate(trials) if u.objective == t.objective]
        ranks.append((same[0] + same[-1]) / 2)
    lines = [
        (t.trial, min(2, int(3 * ranks[i] // len(trials))), [col[i] for col in columns]) for i, t in enumerate(trials)
    ]
    return axes, lines


def importance_text(importances: dict[str, float], note: str = "", width: int = 78) -> str:
    """``importance: learning_rate 0.82 ████████, warmup 0.18 ██`` (Optuna's), or why there is none."""
    if not importances:
        return f"importance: {note or 'none yet'}"
    bar = max(4, min(10, (width - 12) // max(1, len(importances)) - 16))
    parts = [f"{k} {v:.2f} {'█' * max(1, round(v * bar)) if v > 0 else ''}".rstrip() for k, v in importances.items()]
    return "importance: " + ", ".join(parts)


def top_finished(summary, n: int = 3) -> list[str]:
    """The ``experiment/run id`` of the best ``n`` finished trials with an objective, best first."""
    return [t.run for t in summary.trials if t.status == "finished" and _number(t.objective) is not None][:n]


def sweep_progress(runs_dir, experiments) -> dict[str, str]:
    """``7/16 trials, best 0.931`` per experiment with a sweep and at least one trial on disk.

    Reads the trials' run directories only (never the Optuna study): cheap enough for the
    experiments tab's refresh of the runs list."""
    from dataclasses import replace

    from engine.sweep.summary import sweep_summary

    out = {}
    for exp in experiments:
        spec = getattr(exp, "sweep", None)
        if spec is None:
            continue
        summary = sweep_summary(runs_dir, exp.name)
        if summary is not None:
            out[exp.name] = replace(summary, planned=spec.trials).progress_text()
    return out
