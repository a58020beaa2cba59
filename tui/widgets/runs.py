"""The runs pane: every run on disk (any process), newest first; select several to compare."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from engine.status import RESUMABLE

from ..data import short_id, status_text
from .panes import Note, TablePane


class RunsPane(TablePane):
    COLUMNS = (" ", "experiment", "started", "status", "result", "note")
    EMPTY = "no runs on disk yet"
    FILTER_HINT = "filter runs: experiment, status, task, model (enter: keep, esc: clear)"

    BINDINGS = [
        Binding("space", "mark", "Select"),
        Binding("v", "compare", "Compare"),
        Binding("e", "export", "Export"),
        Binding("p", "control('pause')", "Pause"),
        Binding("c", "control('cancel')", "Cancel"),
        Binding("R", "control('retry')", "Resume"),
        *TablePane.FILTER_BINDINGS,
    ]

    @dataclass
    class RunsRequested(Message):
        action: str  # compare | export
        runs: list

    @dataclass
    class ControlRequested(Message):
        action: str
        run: object

    @dataclass
    class OpenRequested(Message):
        run: object

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.summaries: dict[str, object] = {}

    def set_summaries(self, summaries) -> None:
        self.summaries = {s.key: s for s in summaries}
        self.marked &= set(self.summaries)
        rows = []
        for s in reversed(summaries):  # newest first
            note = s.reason if s.status in RESUMABLE else s.model
            rows.append((s.key, [s.run.experiment, short_id(s.run.run_id), status_text(s.status), s.result, note],
                         f"{s.key} {s.status} {s.task} {s.model}"))
        self.set_rows(rows)

    def selected_runs(self) -> list:
        return [self.summaries[k].run for k in self.marked_or_current() if k in self.summaries]

    def action_compare(self) -> None:
        runs = self.selected_runs()
        if runs:
            self.post_message(self.RunsRequested("compare", runs))

    def action_export(self) -> None:
        runs = self.selected_runs()
        if runs:
            self.post_message(self.RunsRequested("export", runs))

    def action_control(self, action: str) -> None:
        s = self.summaries.get(self.cursor_key or "")
        if s is not None:
            self.post_message(self.ControlRequested(action, s.run))

    @on(DataTable.RowSelected)
    def _open(self, event: DataTable.RowSelected) -> None:
        event.stop()
        s = self.summaries.get(event.row_key.value)
        if s is not None:
            self.post_message(self.OpenRequested(s.run))

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        s = self.summaries.get(event.row_key.value)
        if s is None:
            return
        text = f"{s.key}: {s.status}" + (f": {s.reason}" if s.reason else "")
        self.post_message(Note(text, "error" if s.status == "failed" else "info", source=self.id or ""))
