"""The runs pane: every run on disk (any process), newest first; select several to compare.

Columns: experiment, start time, status, headline result, tags, then the
hyperparameters that differ between the listed runs, and the note. ``s``/``S`` (or a click on a
header) sort by any column; ``/`` filters with the engine's filter language
(``lr<1e-4``, ``tag:baseline``, plain text). ``t``/``n`` edit tags and note,
``a`` archives (``A`` shows archived runs), ``d`` deletes after a confirmation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from engine.status import REASON_SHOWN
from engine.store.listing import RunRow, differing_keys, fmt_value, parse_filter, short_name, sort_rows

from ..data import short_id, status_text
from .panes import Note, TablePane

if TYPE_CHECKING:
    from engine.store.runs import Run

MAX_HYPER = 6  # differing hyperparameters shown as columns (the rest: `lmconsole runs`)
BASE_COLUMNS = (" ", "experiment", "started", "status", "result", "tags")
TAIL_COLUMNS = ("note",)


class RunsPane(TablePane):
    COLUMNS = BASE_COLUMNS + TAIL_COLUMNS
    EMPTY = "no runs on disk yet"
    FILTER_HINT = "filter: text, tag:NAME, lr<1e-4, status=failed (enter keeps, esc clears)"

    BINDINGS = [
        Binding("space", "mark", "Select", tooltip="select the run, to compare or export several"),
        Binding("v", "compare", "Compare", tooltip="the selected runs side by side: curves, results, config"),
        Binding("e", "export", "Export", tooltip="the selected runs' tables as CSV, Markdown, LaTeX, JSON"),
        Binding("p", "control('pause')", "Pause", tooltip="a running run holds at its next step; p again resumes"),
        Binding("c", "control('cancel')", "Cancel", tooltip="asks first; the run saves a checkpoint"),
        Binding(
            "R",
            "control('retry')",
            "Resume",
            tooltip="a failed, cancelled or interrupted run goes on from its checkpoint",
        ),
        Binding("t", "edit('tags')", "Tags", tooltip="add or remove the run's tags (+tag -tag)"),
        Binding("n", "edit('note')", "Note", tooltip="write the run's note"),
        Binding(
            "a",
            "edit('archive')",
            "Archive/restore",
            show=False,
            tooltip="hide the run from lists and exports, or bring it back",
        ),
        Binding("A", "toggle_archived", "Show archived", show=False, tooltip="list the archived runs instead"),
        Binding("d", "edit('delete')", "Delete", show=False, tooltip="delete the run and its files (asks first)"),
        Binding(
            "r", "source('rerun')", "Rerun", show=False, tooltip="the run's exact config and seed again (asks first)"
        ),
        Binding("N", "source('clone')", "Clone", show=False, tooltip="a new experiment in the manifest from the run"),
        Binding("s", "sort(1)", "Sort", show=False, tooltip="sort by the next column"),
        Binding("S", "sort(-1)", "Sort reverse", show=False, tooltip="reverse the sort"),
        *TablePane.FILTER_BINDINGS,
    ]

    @dataclass
    class RunsRequested(Message):
        action: str  # compare | export
        runs: list[Run]

    @dataclass
    class ControlRequested(Message):
        action: str
        run: Run

    @dataclass
    class OpenRequested(Message):
        run: Run

    @dataclass
    class SourceRequested(Message):
        action: str  # rerun | clone
        run: Run

    @dataclass
    class EditRequested(Message):
        action: str  # tags | note | archive | delete
        rows: list[RunRow]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._all_rows: list[RunRow] = []  # archived or not, as set_runs passed them
        self.rows: dict[str, RunRow] = {}  # the rows listed now, by key
        self.hyper: list[str] = []
        self.sort_column = "started"
        self.sort_desc = True  # newest first
        self.show_archived = False
        self._columns: tuple = self.COLUMNS
        self._terms: list = []

    def on_mount(self) -> None:
        self.table.fixed_columns = 2  # mark and experiment stay while the columns scroll sideways (right/left)

    # -- data ---------------------------------------------------------------------
    def set_runs(self, rows: list[RunRow]) -> None:
        """Every run on disk (archived ones too: ``A`` switches between the two lists)."""
        self._all_rows = rows
        self._rebuild()

    def _rebuild(self) -> None:
        rows = [r for r in self._all_rows if r.archived == self.show_archived]
        self.rows = {r.key: r for r in rows}
        self.marked &= set(self.rows)
        self.hyper = differing_keys(rows, MAX_HYPER)
        columns = BASE_COLUMNS + tuple(self.hyper) + TAIL_COLUMNS
        self._set_columns(columns)
        ordered = sort_rows(rows, self.sort_column, self.sort_desc)
        out = []
        for r in ordered:
            why = (r.status in REASON_SHOWN and r.reason) or r.problems
            note = " ".join((r.reason if why else (r.note or r.model)).split())
            result = r.result_text
            cells = [
                r.run.experiment,
                short_id(r.run.run_id),
                status_text(r.status),
                result,
                " ".join(r.tags),
                *(Text(fmt_value(r.config.get(k)), justify="right") for k in self.hyper),
                note,
            ]
            out.append((r.key, cells, r.haystack()))
        self.set_rows(out)

    def _label(self, column: str) -> str:
        label = short_name(column)
        if column == self.sort_column:
            label += " ▼" if self.sort_desc else " ▲"
        return label

    def _set_columns(self, columns: tuple) -> None:
        labels = tuple(self._label(c) for c in columns)
        if (columns, labels) == self._columns:
            return
        self._columns = (columns, labels)
        table = self.table
        table.clear(columns=True)
        for col, label in zip(columns, labels):
            table.add_column(label, key=col)

    def matches_filter(self, key: str) -> bool:
        row = self.rows.get(key)
        if row is None:
            return False
        # A text term looks in the row's filter text, kept from set_rows (Term.matches would build
        # it again for each row at each key typed): the same test, without the per-key cost.
        hay = self._haystack.get(key)
        return all(
            (t.value.lower() in hay) != t.negate if t.kind == "text" and hay is not None else t.matches(row)
            for t in self._terms
        )

    def _show(self) -> None:
        self._terms = parse_filter(self.filter_text)
        super()._show()

    def selected_runs(self) -> list[Run]:
        return [self.rows[k].run for k in self.marked_or_current() if k in self.rows]

    def selected_rows(self) -> list[RunRow]:
        return [self.rows[k] for k in self.marked_or_current() if k in self.rows]

    # -- actions ------------------------------------------------------------------
    def action_compare(self) -> None:
        runs = self.selected_runs()
        if runs:
            self.post_message(self.RunsRequested("compare", runs))

    def action_export(self) -> None:
        runs = self.selected_runs()
        if runs:
            self.post_message(self.RunsRequested("export", runs))

    def action_control(self, action: str) -> None:
        row = self.rows.get(self.cursor_key or "")
        if row is not None:
            self.post_message(self.ControlRequested(action, row.run))

    def action_source(self, action: str) -> None:
        row = self.rows.get(self.cursor_key or "")
        if row is not None:
            self.post_message(self.SourceRequested(action, row.run))

    def action_edit(self, action: str) -> None:
        rows = self.selected_rows()
        if rows:
            self.post_message(self.EditRequested(action, rows))

    def action_toggle_archived(self) -> None:
        self.show_archived = not self.show_archived
        self.EMPTY = "no archived runs (A shows the others)" if self.show_archived else type(self).EMPTY
        self.marked.clear()
        self._rebuild()
        self.post_message(
            Note(
                "showing archived runs (a restores, A goes back)"
                if self.show_archived
                else "showing active runs (archived hidden: A shows them)",
                source=self.id or "",
            )
        )

    def sort_columns(self) -> list[str]:
        return ["started", "experiment", "status", "result", "tags", *self.hyper, "note"]

    def action_sort(self, step: int) -> None:
        """``s``: next column (ascending, ``started`` newest first); ``S``: reverse the order."""
        if step < 0:
            self.sort_desc = not self.sort_desc
        else:
            cols = self.sort_columns()
            i = cols.index(self.sort_column) if self.sort_column in cols else -1
            self.sort_column = cols[(i + 1) % len(cols)]
            self.sort_desc = self.sort_column == "started"
        self._rebuild()
        self.post_message(
            Note(
                f"sorted by {self.sort_column} {'descending' if self.sort_desc else 'ascending'} "
                "(s: next column, S: reverse)",
                source=self.id or "",
            )
        )

    @on(DataTable.HeaderSelected)
    def _header(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        col = str(event.column_key.value)
        if col == " ":
            return
        if col == self.sort_column:
            self.sort_desc = not self.sort_desc
        else:
            self.sort_column, self.sort_desc = col, False
        self._rebuild()

    @on(DataTable.RowSelected)
    def _open(self, event: DataTable.RowSelected) -> None:
        event.stop()
        row = self.rows.get(event.row_key.value or "")
        if row is not None:
            self.post_message(self.OpenRequested(row.run))

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        r = self.rows.get(event.row_key.value or "")
        if r is None:
            return
        text = f"{r.key}: {r.status}" + (f": {r.reason}" if r.reason else "")
        if r.note and not r.reason:
            text += f" · {r.note}"
        self.post_message(Note(text, "error" if r.status == "failed" else "info", source=self.id or ""))
