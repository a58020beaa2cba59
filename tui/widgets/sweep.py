"""The parallel-coordinates plot of a sweep: one normalised axis per parameter, then the objective.

Each trial is a line across the axes, marked and coloured by the third of the objective it falls
in (:data:`tui.sweepdata.BANDS`), so the best settings read without colour too. The axes'
value ranges are in the text below the plot (plotext has one y axis, not one per parameter).
"""

from __future__ import annotations

from textual_plotext import PlotextPlot

from ..sweepdata import BANDS, Axis


class ParallelPlot(PlotextPlot):
    """``show(axes, lines, key)``: redrawn only when ``key`` changes (plotext rebuilds it all)."""

    DEFAULT_CSS = """
    ParallelPlot { height: 1fr; min-height: 6; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.axes: list[Axis] = []
        self.lines: list[tuple[int, int, list[float | None]]] = []
        self._key: object = object()

    def show(self, axes: list[Axis], lines, key=None) -> None:
        if key is not None and key == self._key:
            return
        self._key = key
        self.axes, self.lines = list(axes), list(lines)
        self.refresh()

    def render(self):
        self._draw(max(10, self.size.width))
        return super().render()

    def _draw(self, width: int) -> None:
        plt = self.plt
        plt.clear_figure()
        if not self.lines or len(self.axes) < 2:
            plt.title("parameters against the objective: no trial with an objective yet")
            return
        plt.title("parameters against the objective (each axis: its low .. high)")
        # worst first, so the best lines are drawn last, on top
        for _trial, band, pos in sorted(self.lines, key=lambda line: -line[1]):
            pts = [(i, p) for i, p in enumerate(pos) if p is not None]
            if pts:
                _, marker, color = BANDS[band]
                plt.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color)
        n = len(self.axes)
        room = max(4, (width - 8) // n - 1)  # each axis name in its share of the width
        plt.xlim(-0.2, n - 0.8)
        plt.xticks(list(range(n)), [a.name[:room] for a in self.axes])
        plt.ylim(0, 1)
        plt.yticks([0, 0.5, 1], ["low", "mid", "high"])
        plt.xlabel("  ".join(f"{marker} {name}" for name, marker, _ in BANDS))
