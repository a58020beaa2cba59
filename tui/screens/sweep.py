"""A sweep's view: its trials (best marked, sorted by the objective), the objective per trial with
the best so far, parameters against the objective (parallel coordinates) and Optuna's importances.

Everything comes from :func:`engine.sweep.summary.sweep_summary`, read in a worker every
``POLL_S`` seconds from the trials' run directories. The Optuna study (for the importances) is
opened only when the count of ended trials changes: opening it costs tens of milliseconds
(SQLite) to seconds (a remote database), and importances only move when a trial ends.
``enter`` on a trial opens its run; ``c`` compares the best three finished trials.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane, Tabs

from engine.store.runs import Run
from engine.tables import fmt_num

from ..data import status_text
from ..sweepdata import importance_text, objective_series, parallel_coordinates, top_finished
from ..widgets.bars import StatusLine, TitleBar
from ..widgets.plots import CurvePlot, Series
from ..widgets.sweep import ParallelPlot
from .base import ConsoleScreen, job_for_run

POLL_S = 2.0  # the trials change at most once per evaluation of a running trial


class SweepScreen(ConsoleScreen):
    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="back to the experiments"),
        Binding("1", "tab('sweep-trials')", "Trials", show=False, tooltip="the trials, best first; enter opens one"),
        Binding("2", "tab('sweep-objective')", "Objective", show=False, tooltip="objective per trial, best so far"),
        Binding(
            "3", "tab('sweep-params')", "Parameters", show=False, tooltip="parallel coordinates: parameters, objective"
        ),
        Binding("enter", "open_trial", "Open", tooltip="the highlighted trial's run view"),
        Binding("c", "compare", "Compare best", tooltip="the best three finished trials side by side"),
    ]

    def __init__(self, name: str):
        super().__init__()
        self.sweep = name
        self.summary = None  # engine.sweep.summary.SweepSummary, as last read
        self._importances: tuple[dict[str, float], str] = ({}, "")
        self._importances_at = -1  # ended trials when the importances were last read (tests wait on it)
        self._polling = False

    def compose(self) -> ComposeResult:
        yield TitleBar(f"Sweep {self.sweep}", id="title")
        yield StatusLine("reading the trials ...", id="sweep-progress")
        with TabbedContent(id="sweep-tabs"):
            with TabPane("1 Trials", id="sweep-trials"):
                with Vertical():
                    yield DataTable(id="trials-table", cursor_type="row", zebra_stripes=True)
                    yield Static("importance: reading the study ...", id="trials-importance", classes="sweep-note")
            with TabPane("2 Objective", id="sweep-objective"):
                yield CurvePlot("objective per trial", xlabel="trial", id="objective-plot")
            with TabPane("3 Parameters", id="sweep-params"):
                with Vertical():
                    yield ParallelPlot(id="parallel-plot")
                    yield Static("", id="params-axes", classes="sweep-note")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#trials-table", DataTable).focus()
        self._poll()
        self.set_interval(POLL_S, self._poll)

    # -- data -----------------------------------------------------------------------------
    def _poll(self) -> None:
        if not self._polling:
            self._polling = True
            self._poll_worker()

    @work(thread=True, exit_on_error=False, group="poll")
    def _poll_worker(self) -> None:
        """The trials first (run directories: fast), then, when a trial has ended since the last
        time, the importances (the study: slow), so the table never waits for the database."""
        from engine.sweep.summary import sweep_summary

        try:
            summary = sweep_summary(self.app.store.root, self.sweep)
            self.app.call_from_thread(self._apply, summary)
            if summary is not None and summary.done != self._importances_at:
                exp = next((e for e in self.app.manifest.experiments if e.name == self.sweep), None)
                if exp is not None and getattr(exp, "sweep", None) is not None:
                    with_study = sweep_summary(self.app.store.root, self.sweep, exp=exp) or summary
                    self._importances = (with_study.importances, with_study.note)
                else:
                    self._importances = ({}, "the manifest no longer has this sweep")
                self._importances_at = summary.done
                self.app.call_from_thread(self._show_importances)
        except Exception as exc:  # noqa: BLE001 - a view that cannot read says so and keeps trying
            self.app.call_from_thread(self.say, f"cannot read the sweep: {type(exc).__name__}: {exc}", "error")
        finally:
            self._polling = False

    def _show_importances(self) -> None:
        text = importance_text(*self._importances, width=self.size.width)
        self.query_one("#trials-importance", Static).update(text)

    def _apply(self, summary) -> None:
        if summary is None:
            self.query_one("#sweep-progress", StatusLine).update(f"{self.sweep} has no trials on disk yet")
            return
        if self.summary is not None and summary == self.summary:
            return
        self.summary = summary
        exp = next((e for e in self.app.manifest.experiments if e.name == self.sweep), None)
        spec = getattr(exp, "sweep", None)
        planned = spec.trials if spec is not None else summary.planned
        progress = f"{summary.done}/{planned or len(summary.trials)} trials"
        best = summary.best
        if best is not None and best.objective is not None:
            progress += f", best {fmt_num(best.objective)} (trial {best.trial})"
        self.query_one("#sweep-progress", StatusLine).update(f"{progress} · {summary.objective} ({summary.direction})")
        self.query_one("#title", TitleBar).update(f"Sweep {self.sweep} · study {summary.study}")
        self._draw_table(summary)
        self._draw_objective(summary)
        exp = self.app.manifest.get(self.sweep) if self.sweep in self.app.manifest.names else None
        spec = getattr(exp, "sweep", None)
        scales = {p.name: p.log for p in spec.parameters if p.is_range} if spec is not None else {}
        axes, lines = parallel_coordinates(summary, scales)
        self.query_one(ParallelPlot).show(axes, lines, key=(tuple(axes), tuple((t, b, tuple(p)) for t, b, p in lines)))
        self.query_one("#params-axes", Static).update("\n".join(a.describe() for a in axes))

    def _draw_table(self, summary) -> None:
        table = self.query_one("#trials-table", DataTable)
        cursor = self._cursor_key()
        params = list(dict.fromkeys(k for t in summary.trials for k in t.parameters))
        table.clear(columns=True)
        for col in [" ", "trial", "status", *params, summary.objective or "objective", "best ep"]:
            table.add_column(col, key=col)
        for t in summary.trials:
            table.add_row(
                "★" if t.best else "",
                str(t.trial),
                status_text(t.status),
                *(fmt_num(t.parameters.get(p), 3) for p in params),
                fmt_num(t.objective),
                "" if t.best_epoch is None else str(t.best_epoch),
                key=t.run,
            )
        keys = [t.run for t in summary.trials]
        if cursor in keys:
            table.move_cursor(row=keys.index(cursor), animate=False)

    def _draw_objective(self, summary) -> None:
        xs, ys, best = objective_series(summary.trials, summary.direction != "minimize")
        self.query_one("#objective-plot", CurvePlot).show(
            [Series(summary.objective or "objective", xs, ys), Series("best so far", xs, best)],
            title=f"{summary.objective or 'objective'} per trial",
            key=(tuple(xs), tuple(ys)),
        )

    def _cursor_key(self) -> str | None:
        table = self.query_one("#trials-table", DataTable)
        if not table.row_count:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - no row under the cursor
            return None

    # -- actions --------------------------------------------------------------------------
    def _run(self, key: str) -> Run:
        return Run(self.app.store.root / key)

    @on(DataTable.RowSelected, "#trials-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self._open(event.row_key.value)

    def action_open_trial(self) -> None:
        key = self._cursor_key()
        if key:
            self._open(key)

    def _open(self, key: str) -> None:
        from .run import RunScreen

        run = self._run(key)
        self.app.push_screen(RunScreen(run=run, job=job_for_run(self.app.queue, run)))

    def action_compare(self) -> None:
        keys: list[str] = top_finished(self.summary) if self.summary is not None else []
        if len(keys) < 2:
            self.say("compare needs two finished trials with an objective", "warning")
            return
        from .compare import CompareScreen

        self.app.push_screen(CompareScreen([self._run(k) for k in keys]))

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        tabs = self.query_one("#sweep-tabs", TabbedContent)
        tabs.query_one(Tabs).focus()  # else TabbedContent follows a focused table back to its pane
        tabs.active = tab
        if tab == "sweep-trials":
            self.query_one("#trials-table", DataTable).focus()
