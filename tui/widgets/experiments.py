"""The experiments pane: every experiment of the manifest with the status of its latest run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def short_source(spec: str) -> str:
    """A model or dataset in a table cell at 80 columns: a Hub id or a path by its last part
    (``google-bert/bert-base-uncased`` -> ``bert-base-uncased``); presets and ``run:`` as they are.
    The whole name is in the line below the table when the row is highlighted."""
    if not spec or spec.startswith(("run:", "embedded:")) or "/" not in spec:
        return spec
    return spec.rstrip("/").rsplit("/", 1)[-1] or spec


def data_of(exp) -> str:
    ds = getattr(exp, "dataset", None)
    if not ds:
        return "-"
    # an embedded corpus by its name alone: the line below a highlighted row says "embedded:"
    return short_source(ds.removeprefix("embedded:"))


def study_cell(exp, statuses, finished: frozenset[str] | set[str] = frozenset()) -> str:
    """A study's progress: ``3/9 done, 1 ✗``: steps with a finished run (``finished``, or the latest
    status), and steps whose latest run or job failed with none finished (a failed retry of a
    finished step still counts as done: its finished run is what the study uses)."""
    sts = {step: statuses.get(step, ("", ""))[0] for step in exp.steps}
    done = [step for step, st in sts.items() if st == "finished" or step in finished]
    failed = sum(st in PROBLEM for step, st in sts.items() if step not in done)
    return f"{len(done)}/{len(sts)} done" + (f", {failed} ✗" if failed else "")


class ExperimentsPane(TablePane):
    COLUMNS = (" ", "experiment", "last run", "task", "model", "data", "after")
    # What gives way, in this order, when the table is wider than the pane: the dependencies, the data,
    # the task (the status line shows all three for the highlighted row). The name, its last run (a
    # sweep's progress is long) and the model stay whole.
    DROP_ORDER = ("after", "data", "task")
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
        # the memory estimate of a training experiment in words (set by the screen, which knows the manifest)
        self.memory_of: Callable[[Experiment], str] | None = None
        self._all_rows: list[tuple[str, list, str]] = []
        self.shown: tuple[str, ...] = self.COLUMNS  # on screen: DROP_ORDER gives way in a narrow pane

    @property
    def show_after(self) -> bool:
        return "after" in self.shown

    def set_rows(self, rows: list[tuple[str, list, str]]) -> None:
        self._all_rows = rows
        self._fit_columns()

    def on_resize(self) -> None:
        self._fit_columns()

    def _fit_columns(self) -> None:
        """Drop columns (``DROP_ORDER``) until the table fits the pane, never cutting a cell."""
        names = self.COLUMNS[1:]
        widths = dict(zip(names, (len(c) for c in names)))
        for _, cells, _ in self._all_rows:
            for name, cell in zip(names, cells):
                widths[name] = max(widths[name], len(str(cell)))
        kept = list(names)
        for dropped in ("", *self.DROP_ORDER):
            if dropped:
                kept.remove(dropped)
            natural = sum(widths[c] + 2 for c in kept) + 3 + 2  # cell padding, the mark column, a scrollbar
            if not self.size.width or natural <= self.size.width:
                break
        shown = (self.COLUMNS[0], *kept)
        cursor = self.cursor_key if shown != self.shown else None
        if shown != self.shown:
            self.shown = shown
            table = self.table
            table.clear(columns=True)
            for col in shown:
                table.add_column(col, key=col)
            self._with_mark.clear()
        index = [names.index(c) for c in kept]
        super().set_rows([(k, [cells[i] for i in index], text) for k, cells, text in self._all_rows])
        if cursor is not None:
            keys = [k for k, _ in self._rows]
            if cursor in keys:
                self.table.move_cursor(row=keys.index(cursor), animate=False)

    def set_experiments(
        self,
        experiments,
        statuses: dict[str, tuple[str, str]],
        finished: frozenset[str] | set[str] = frozenset(),
        sweeps: dict[str, str] | None = None,
    ) -> None:
        """statuses: experiment -> (status, reason) of its latest run or job; finished: the
        experiments with a finished run (a study counts those steps done); sweeps: a sweep's
        progress (``7/16 trials, best 0.931``), shown instead of its latest trial's status."""
        self.experiments = experiments
        self.statuses = statuses
        self.marked &= {e.name for e in experiments}
        rows = []
        for exp in experiments:
            st = statuses.get(exp.name, ("", ""))[0]
            last = study_cell(exp, statuses, finished) if exp.task == "study" else (status_text(st) if st else "-")
            if sweeps and exp.name in sweeps:
                last = sweeps[exp.name]
            model = "-" if exp.task == "study" else short_source(exp.model) or "-"  # a study has steps, no model
            after = "-" if exp.task == "study" else ", ".join(exp.dependencies) or "-"  # its steps: in the plan
            cells = [exp.name, last, exp.task, model, data_of(exp), after]
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
        source = " ".join(filter(None, [exp.task, exp.model])) + (
            f" on {exp.dataset}" if getattr(exp, "dataset", None) else ""
        )
        if exp.dependencies and exp.task != "study":
            source += f", after {', '.join(exp.dependencies)}"
        text = f"{exp.description} ({source})" if exp.description else source
        memory = self.memory_of(exp) if self.memory_of is not None else ""
        if memory:  # before queueing: what it will take of a GPU (or of RAM)
            text += f" · {memory}"
        if st in UNEXPECTED and reason:
            text = f"{name}: {st}: {reason}"
        self.post_message(Note(text, "error" if st == "failed" else "info", source=self.id or ""))
