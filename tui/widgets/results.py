"""Evaluation results of one run: final, best (epoch) and per-epoch history, readable at 80 columns.

The metric, final and best columns stay put (``fixed_columns``) while the epoch
columns scroll with the left/right arrows, one column per key press. Long texts
(a run's note) and nested values (the confusion matrix, labelled true x predicted)
go below the table, wrapped.
"""

from __future__ import annotations

from rich.text import Text
from textual.message import Message
from textual.widget import Widget
from textual.widgets import DataTable

from engine.tables import flat_results, fmt_num, fmt_same

from ..data import compact_value, eval_keys
from ..metricinfo import best_of
from .tables import cell

LONG_TEXT = 16  # a string value longer than this leaves the table for the notes below


class ResultsTable(DataTable):
    """A DataTable whose left/right arrows scroll by one epoch column instead of one character, and
    whose width is always whole columns: a number is never cut at the edge, and no horizontal
    scrollbar is drawn mid-screen (:attr:`hidden` says how many epoch columns are out of view)."""

    DEFAULT_CSS = "ResultsTable { scrollbar-size-horizontal: 0; }"

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.hidden = (0, 0)  # epoch columns out of view, (to the left, to the right)

    def _widths(self) -> list[int]:
        return [col.get_render_width(self) for col in self.ordered_columns]

    def _edges(self) -> list[int]:
        """Scroll offsets at which a scrolling (non-fixed) column starts."""
        edges, x = [0], 0
        for width in self._widths()[self.fixed_columns :]:
            x += width
            edges.append(x)
        return edges

    def fit(self, available: int, first: int | None = None) -> None:
        """Show the fixed columns and as many whole scrolling columns as fit in ``available`` cells,
        from scrolling column ``first`` (default: the one at the current scroll offset)."""
        if available <= 0:  # not laid out yet (a tab not shown): fitted on its first resize
            return
        widths = self._widths()
        fixed, scrolling = widths[: self.fixed_columns], widths[self.fixed_columns :]
        edges = self._edges()
        if first is None:
            first = max((i for i, e in enumerate(edges[:-1]) if e <= self.scroll_x), default=0)
        bar = 1 if self.show_vertical_scrollbar else 0
        room = available - sum(fixed) - bar
        last = first
        while last < len(scrolling) and sum(scrolling[first : last + 1]) <= room:
            last += 1
        if last == first and first < len(scrolling):  # one column wider than the view: shown, cut
            last = first + 1
        width = min(available, sum(fixed) + sum(scrolling[first:last]) + bar) if scrolling else None
        if self.styles.width is None or width is None or self.styles.width.value != width:
            self.styles.width = width
        hidden = (first, len(scrolling) - last)
        if hidden != self.hidden:
            self.hidden = hidden
            self.post_message(self.Scrolled())
        x = edges[first] if first < len(edges) else 0
        self.call_after_refresh(self.scroll_to, x=x, animate=False)  # once the new width is laid out

    def _available(self) -> int:
        return self.parent.size.width if isinstance(self.parent, Widget) else self.size.width

    def on_resize(self) -> None:
        self.fit(self._available())

    def action_cursor_right(self) -> None:
        if self.hidden[1]:
            self.fit(self._available(), self.hidden[0] + 1)

    def action_cursor_left(self) -> None:
        if self.hidden[0]:
            self.fit(self._available(), self.hidden[0] - 1)

    class Scrolled(Message):
        """The epoch columns in view changed (the screen says which are hidden)."""


def results_rows(evals: list, results: dict) -> tuple[list[str], list[list], dict[str, str]]:
    """(column headers, rows, long texts): metric | final | best (ep) | ep 0 | ep 1 ..."""
    keys = eval_keys(evals)
    final = {k.removeprefix("final."): v for k, v in flat_results(results).items()}
    rows_keys = keys + [k for k in final if k not in keys]
    texts: dict[str, str] = {}
    for k in rows_keys:
        values = [ev.metrics.get(k) for ev in evals] + [final.get(k)]
        shown = [v for v in values if v is not None]
        long = any(isinstance(v, str) and len(v) > LONG_TEXT for v in values)
        # a label the same at every epoch (eval_split = "validation") widened each epoch column
        same_label = len(evals) > 1 and bool(shown) and all(isinstance(v, str) and v == shown[0] for v in shown)
        if long or same_label:
            texts[k] = next(str(v) for v in reversed(values) if v is not None)
    headers = ["metric", "final", "best (ep)"] + [f"ep {ev.epoch}" for ev in evals]
    rows = []
    for k in rows_keys:
        if k in texts:
            continue
        history = [ev.metrics.get(k) for ev in evals]
        last = final.get(k, history[-1] if history else None)
        best = best_of(history, k) if len(history) > 1 else None
        # one format across the row: 0.970 beside 0.972, never 0.97
        same = fmt_same([last, best[1] if best else None, *history])
        best_cell = Text(f"{same[1]} ({evals[best[0]].epoch})", justify="right") if best else ""
        rows.append([k, _cell(last, same[0]), best_cell] + [_cell(v, t) for v, t in zip(history, same[2:])])
    return headers, rows, texts


def _cell(value, text: str) -> Text | str:
    """A numeric cell right-aligned with its row's format ``text``; other values as :func:`cell`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Text(text, justify="right")
    return cell(value)


def confusion_text(matrix: list, labels: list[str]) -> str:
    """The matrix with its axes named: rows are true classes, columns predicted ones."""
    width = max([len(str(lab)) for lab in labels] + [len(fmt_num(c)) for row in matrix for c in row] + [4])
    corner = "true \\ predicted"
    first = max(len(corner), max(len(str(lab)) for lab in labels) + 2) + 2
    lines = [corner.ljust(first) + "  ".join(str(lab).rjust(width) for lab in labels)]
    for lab, row in zip(labels, matrix):
        lines.append(f"  {lab}".ljust(first) + "  ".join(fmt_num(c).rjust(width) for c in row))
    return "\n".join(lines)


def class_labels(result: dict, n: int, config: dict | None = None) -> list[str]:
    """The classes as the report names them (``0 negative``): engine.metrics.classification.class_labels."""
    from engine.metrics.classification import class_labels as labels

    classes = result.get("classes") or list(range(n))
    return labels(classes, result.get("class_names"), config)[:n]


def details_text(evals: list, results: dict, texts: dict[str, str], config: dict | None = None) -> str:
    """Below the table: the confusion matrix (labelled), other nested values, then long notes."""
    nested: dict = {}
    if evals:
        nested.update({k: v for k, v in evals[-1].metrics.items() if isinstance(v, (dict, list))})
    final = results.get("final")
    source: dict = final if isinstance(final, dict) else results
    for k, v in source.items():
        if isinstance(v, (dict, list)) and k != "history":
            nested[k] = v
    scope = source if "confusion_matrix" in source else (evals[-1].metrics if evals else {})
    parts = []
    matrix = nested.pop("confusion_matrix", None)
    for k in ("classes", "class_names"):
        nested.pop(k, None)
    if isinstance(matrix, list) and matrix and all(isinstance(r, list) for r in matrix):
        where = "final" if source is not results else "last evaluation"
        parts.append(
            f"confusion matrix ({where}; rows true, columns predicted)\n"
            + confusion_text(matrix, class_labels(scope, len(matrix), config))
        )
    variants = nested.pop("variants", None)  # how the text metrics were computed: last, the longest note
    parts += [f"{k}: {compact_value(v)}" for k, v in nested.items()]
    if isinstance(variants, dict):
        parts.append("text metric variants: " + "; ".join(f"{k} {v}" for k, v in variants.items()))
    parts += [f"{k}: {v}" for k, v in texts.items() if k.split(".")[0] not in nested]  # not twice
    return "\n".join(parts)
