"""Curves drawn with textual-plotext, redrawn only when their data or view changed.

plotext rebuilds the whole figure on every refresh, so the owner calls
:meth:`CurvePlot.show` from a 1-2 Hz timer with a ``key`` that changes only
with the data; series differ by marker and label, not only by colour.

What plotext does not do for us, done here:

* tick labels at evenly spaced round values (1, 2, 5 x 10^k) we compute, with the
  axis limits set to the outer ticks, so equal rows carry equal steps;
* a log-y view by plotting log10 of the values with our own ``10^k`` labels
  (plotext's own log scale fails on repeated builds of one figure);
* EMA smoothing (TensorBoard's debiased form) with the raw curve kept faint;
* a cap on the points drawn (min and max per bucket, so spikes survive);
* the last / min / max of the shown series in the title.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from textual_plotext import PlotextPlot

# Distinguishable on a 16-colour or monochrome terminal (one per overlaid run).
MARKERS = ("•", "x", "+", "o", "*", "#", "@", "%")
# EMA weights offered by `[` / `]` (0 = raw), as TensorBoard's smoothing slider.
SMOOTHING = (0.0, 0.6, 0.8, 0.9, 0.95, 0.99)
RAW_COLOR = "gray"
TICK_ROOM = 9  # columns of the y tick labels and the frame
MAX_POINTS = 4000  # kept per series; a 1M-point history is bucketed down to this


@dataclass(frozen=True)
class Series:
    label: str
    xs: list
    ys: list


def nice_step(span: float, count: int) -> float:
    """A round step (1, 2, 2.5, 5 x 10^k) giving about ``count`` intervals over ``span``."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag * (1 + 1e-9):
            return m * mag
    return 10 * mag


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Evenly spaced round values covering [lo, hi]: the first <= lo, the last >= hi."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi - lo <= abs(hi) * 1e-12:
        pad = abs(hi) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    step = nice_step(hi - lo, count)
    start = math.floor(lo / step + 1e-9) * step
    ticks, v = [], start
    while v < hi - 1e-9 * step:
        ticks.append(v)
        v = start + len(ticks) * step
    ticks.append(v)
    return [0.0 if abs(t) < step * 1e-9 else t for t in ticks]


def tick_label(v: float, step: float) -> str:
    """Short labels with as many decimals as the step needs: 3,500 / 0.25 / 2e-04 / 1.2k."""
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or step < 1e-3:
        return f"{v:.1e}".replace("e+0", "e").replace("e-0", "e-")
    if a >= 1e4 and step >= 100:
        return f"{v / 1000:g}k"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    if step < 1 and not math.isclose(step * 10**decimals % 1, 0, abs_tol=1e-6):
        decimals += 1  # 0.25 steps need two decimals
    return f"{v:,.{decimals}f}"


def log_label(exp10: float) -> str:
    v = 10**exp10
    if 1e-3 <= v < 1e5:
        return f"{v:,.{max(0, -round(exp10))}f}" if exp10 < 0 else f"{v:,.0f}"
    return f"1e{round(exp10)}"


def ema(ys: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased at the start."""
    if weight <= 0:
        return list(ys)
    out, last, n = [], 0.0, 0
    for y in ys:
        n += 1
        last = last * weight + (1 - weight) * y
        out.append(last / (1 - weight**n))
    return out


def downsample(xs: list, ys: list, limit: int) -> tuple[list, list]:
    """At most about ``limit`` points: min and max of each bucket, in x order (spikes survive)."""
    n = len(xs)
    if n <= limit or limit < 4:
        return list(xs), list(ys)
    buckets = limit // 2
    out_x, out_y = [], []
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        if lo >= hi:
            continue
        seg = ys[lo:hi]
        i_min, i_max = lo + seg.index(min(seg)), lo + seg.index(max(seg))
        for i in sorted({i_min, i_max}):
            out_x.append(xs[i])
            out_y.append(ys[i])
    return out_x, out_y


def short(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or (0 < a < 1e-3):
        return f"{v:.2e}"
    if a >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}" if a >= 1 else f"{v:.3f}"


class CurvePlot(PlotextPlot):
    """One plot; ``show()`` replaces its series, ``set_view()`` its log/smoothing/series view."""

    DEFAULT_CSS = """
    CurvePlot { height: 1fr; min-height: 5; }
    """

    def __init__(self, title: str, xlabel: str = "step", **kwargs):
        super().__init__(**kwargs)
        self.plot_title = title
        self.xlabel = xlabel
        self._key = object()
        self.series: list[Series] = []
        self.title = title
        self.log_y = False
        self.smoothing = 0.0
        self.only: int | None = None  # index of the one series shown, None = all
        self.best: str = ""  # "min" / "max": mark the best point in the title
        self.stats = ""  # the title's statistics, for tests
        self.legend = True  # False where the screen shows the series' markers and labels itself
        self.empty = "no data yet"  # the title without data; a screen says why when none will come

    def show(self, series: list[Series], title: str | None = None, key=None, best: str = "") -> None:
        if key is not None and key == self._key:
            return  # nothing new: skip the (costly) rebuild
        self._key = key
        # Thinned once here (min/max buckets), once more to the width when drawn.
        self.series = [Series(s.label, *downsample(s.xs, s.ys, MAX_POINTS)) for s in series if s.xs]
        self.title = title or self.plot_title
        self.best = best
        self.refresh()

    def set_view(self, log_y: bool | None = None, smoothing: float | None = None, only=...) -> None:
        if log_y is not None:
            self.log_y = log_y
        if smoothing is not None:
            self.smoothing = smoothing
        if only is not ...:
            self.only = only
        self.refresh()

    def shown(self) -> list[Series]:
        if self.only is not None and 0 <= self.only < len(self.series):
            return [self.series[self.only]]
        return self.series

    def render(self):
        self._draw(max(10, self.size.width), max(5, self.size.height))
        return super().render()

    # -- drawing --------------------------------------------------------------------------
    def _values(self, ys: list[float]) -> list[float | None]:
        if not self.log_y:
            return list(ys)  # a copy typed as the log branch's (plotext only reads it)
        return [math.log10(y) if y > 0 else None for y in ys]

    def _title(self, shown: list[Series], width: int) -> str:
        # plotext drops a title wider than its canvas (the width less the y tick labels)
        width = width - TICK_ROOM
        if not shown:
            return f"{self.title}: {self.empty}"
        name = self.title + (", log" if self.log_y else "")
        if self.smoothing:
            name += f" ema {self.smoothing:g}"
        self.stats = ""
        if len(shown) == 1:
            s = shown[0]
            vals = [y for y in s.ys if math.isfinite(y)]
            if vals:
                parts = [f"last {short(vals[-1])}"]
                if self.best:
                    pick = min if self.best == "min" else max
                    i = pick(range(len(s.ys)), key=s.ys.__getitem__)
                    at = f"ep {s.xs[i]:g}" if self.xlabel == "epoch" else f"{s.xs[i]:g}"
                    parts.append(f"best {short(s.ys[i])} @{at}")
                    other = max if self.best == "min" else min
                    parts.append(f"{other.__name__} {short(other(vals))}")
                else:
                    parts.append(f"min {short(min(vals))} max {short(max(vals))}")
                # drop whole fields, never cut one: the other extreme first, then the last value;
                # the best stays while it fits (every metric's title shows it, not only a short one's)
                while len(parts) > 1 and len(name + ": " + ", ".join(parts)) > width - 2:
                    parts.pop(0 if len(parts) == 2 and self.best else -1)
                self.stats = ", ".join(parts)
        full = f"{name}: {self.stats}" if self.stats else name
        return full if len(full) <= width - 2 else name

    def _draw(self, width: int, height: int) -> None:
        plt = self.plt
        plt.clear_figure()
        shown = self.shown()
        plt.title(self._title(shown, width))
        if not shown:
            return
        limit = max(40, 2 * width)  # braille draws 2 points per cell; more is invisible
        lo, hi = math.inf, -math.inf
        xlo, xhi = math.inf, -math.inf
        for i, s in enumerate(shown):
            xs, ys = downsample(s.xs, s.ys, limit * 4 if self.smoothing else limit)
            pairs = [(x, y) for x, y in zip(xs, self._values(ys)) if y is not None and math.isfinite(y)]
            if not pairs:
                continue
            xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
            marker = "braille" if len(shown) == 1 else MARKERS[i % len(MARKERS)]
            if self.smoothing and len(ys) > 2:
                plt.plot(*downsample(xs, ys, limit), marker="braille", color=RAW_COLOR)
                sm = ema(ys, self.smoothing)
                plt.plot(*downsample(xs, sm, limit), marker=marker)
            else:
                plt.plot(xs, ys, marker=marker)
            lo, hi = min(lo, min(ys)), max(hi, max(ys))
            xlo, xhi = min(xlo, xs[0]), max(xhi, xs[-1])
        if not math.isfinite(lo):
            return
        rows = height - 5  # canvas rows: less title, frame (2), x ticks, x label
        self._y_ticks(lo, hi, max(2, min(5, (rows + 1) // 2)))
        self._x_ticks(xlo, xhi, max(3, min(6, width // 10)))
        plt.xlabel(self._xlabel(shown, width))

    def _xlabel(self, shown: list[Series], width: int) -> str:
        """The x axis label, with the series' markers and names after it when several are drawn:
        plotext's legend sits inside the canvas, over the start of the curves."""
        if len(shown) < 2 or not self.legend:
            return self.xlabel
        key = "  ".join(f"{MARKERS[i % len(MARKERS)]} {s.label}" for i, s in enumerate(shown))
        with_axis = f"{self.xlabel} · {key}"
        return with_axis if len(with_axis) <= width - 2 else key

    def _y_ticks(self, lo: float, hi: float, count: int) -> None:
        plt = self.plt
        if self.log_y:
            a, b = math.floor(lo), math.ceil(hi)
            if b - a < 1:
                b = a + 1
            step = max(1, math.ceil((b - a) / max(1, count - 1)))
            powers: list[float] = list(range(a, b + step, step))
            plt.ylim(powers[0], powers[-1])
            plt.yticks(powers, [log_label(t) for t in powers])
            return
        # At most ``count`` ticks, so each has a row of its own with a blank row between:
        # two ticks on one row would show one label at random.
        ticks = nice_ticks(lo, hi, max(1, count - 1))
        for intervals in range(count - 2, 0, -1):
            if len(ticks) <= count:
                break
            ticks = nice_ticks(lo, hi, intervals)
        tick_step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
        plt.ylim(ticks[0], ticks[-1])
        plt.yticks(ticks, [tick_label(t, tick_step) for t in ticks])

    def _x_ticks(self, lo: float, hi: float, count: int) -> None:
        plt = self.plt
        if hi <= lo:  # one point (a first evaluation): plotext divides by the x range
            # a whole unit either side, never below 0 for a count (epoch 0 reads 0..1, not -0.4..0.4)
            lo, hi = (max(0.0, lo - 1) if lo >= 0 else lo - 1), hi + 1
        ticks = nice_ticks(lo, hi, count)
        step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
        inside = [t for t in ticks if lo - 1e-9 <= t <= hi + 1e-9] or ticks
        plt.xlim(lo, hi)
        plt.xticks(inside, [tick_label(t, step) for t in inside])
