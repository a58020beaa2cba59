"""Curves drawn with textual-plotext, redrawn only when their data changed.

plotext rebuilds the whole figure on every refresh, so the owner calls
:meth:`CurvePlot.show` from a 1-2 Hz timer with a ``key`` that changes only
with the data; series differ by marker and label, not only by colour.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual_plotext import PlotextPlot

# Distinguishable on a 16-colour or monochrome terminal (one per overlaid run).
MARKERS = ("•", "x", "+", "o", "*", "#", "@", "%")


@dataclass(frozen=True)
class Series:
    label: str
    xs: list
    ys: list


class CurvePlot(PlotextPlot):
    """One plot; ``show()`` replaces its series."""

    DEFAULT_CSS = """
    CurvePlot { height: 1fr; min-height: 5; }
    """

    def __init__(self, title: str, xlabel: str = "step", **kwargs):
        super().__init__(**kwargs)
        self.plot_title = title
        self.xlabel = xlabel
        self._key = object()
        self._draw([], title)

    def show(self, series: list[Series], title: str | None = None, key=None) -> None:
        if key is not None and key == self._key:
            return  # nothing new: skip the (costly) rebuild
        self._key = key
        self._draw(series, title or self.plot_title)
        self.refresh()

    def _draw(self, series: list[Series], title: str) -> None:
        plt = self.plt
        plt.clear_figure()
        plt.xlabel(self.xlabel)
        shown = [s for s in series if s.xs]
        plt.title(title if shown else f"{title}: no data yet")
        for i, s in enumerate(shown):
            # One series: the finest (braille) marker; several: a distinct character each.
            marker = "braille" if len(shown) == 1 else MARKERS[i % len(MARKERS)]
            label = f"{MARKERS[i % len(MARKERS)]} {s.label}" if len(shown) > 1 else None
            plt.plot(s.xs, s.ys, marker=marker, label=label)
