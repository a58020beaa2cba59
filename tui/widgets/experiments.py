"""The experiments pane: every experiment of the manifest with the status of its latest run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from engine.status import PROBLEM, UNEXPECTED

from ..data import status_text
from .panes import Note, TablePane

if TYPE_CHECKING:
    from engine.manifest import Experiment


def data_of(exp) -> str:
    ds = getattr(exp, "dataset", None)
    if not ds:
        return "-"
    return ds.removeprefix("embedded:") + (" (emb.)" if ds.startswith("embedded:") else "")


def study_cell(exp, statuses) -> str:
    """A study's progress: ``3/9 done, 1 ✗`` (steps finished, failed), from its steps' latest runs or jobs."""
    sts = [statuses.get(step, ("", ""))[0] for step in exp.steps]
    done, failed = sts.count("finished"), sum(s in PROBLEM for s in sts)
    return f"{done}/{len(sts)} done" + (f", {failed} ✗" if failed else "")


class ExperimentsPane(TablePane):
    COLUMNS = (" ", "experiment", "last run", "task", "model", "data", "after")
    EMPTY = "the manifest has no experiments"
    FILTER_HINT = "filter experiments: name, task, model, data (enter: keep, esc: clear)"

    BINDINGS = [
        Binding("r", "run", "Run", tooltip="queue the experiment (or the marked ones), dependencies first"),
        Binding("space", "mark", "Mark", tooltip="mark the experiment, to run several at once"),
        *TablePane.FILTER_BINDINGS,
    ]

    @dataclass
    class RunRequested(Message):
        names: list

    @dataclass
    class OpenRequested(Message):
        experiment: str

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.experiments: Sequence[Experiment] = ()
        self.statuses: dict[str, tuple[str, str]] = {}

    def set_experiments(self, experiments, statuses: dict[str, tuple[str, str]]) -> None:
        """statuses: experiment -> (status, reason) of its latest run or job."""
        self.experiments = experiments
        self.statuses = statuses
        self.marked &= {e.name for e in experiments}
        rows = []
        for exp in experiments:
            st = statuses.get(exp.name, ("", ""))[0]
            last = study_cell(exp, statuses) if exp.task == "study" else (status_text(st) if st else "-")
            cells = [exp.name, last, exp.task, exp.model or "-", data_of(exp), ", ".join(exp.dependencies) or "-"]
            rows.append(
                (
                    exp.name,
                    cells,
                    " ".join([exp.name, exp.task, exp.model, str(getattr(exp, "dataset", "")), exp.description]),
                )
            )
        self.set_rows(rows)

    def action_run(self) -> None:
        names = self.marked_or_current()
        if names:
            self.post_message(self.RunRequested(names))
            self.marked.clear()
            self._show()

    @on(DataTable.RowSelected)
    def _open(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.OpenRequested(event.row_key.value))

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        name = event.row_key.value or ""
        exp = next((e for e in self.experiments if e.name == name), None)
        if exp is None:
            return
        st, reason = self.statuses.get(name, ("", ""))
        text = exp.description or f"{exp.task} {exp.model}"
        if st in UNEXPECTED and reason:
            text = f"{name}: {st}: {reason}"
        self.post_message(Note(text, "error" if st == "failed" else "info", source=self.id or ""))
