"""One run: live curves, evaluation results, its tables, its log, its evaluation mistakes (Examples)
and its model on new input (Try), in tabs that fit 80x24.

A 1 Hz timer polls the run's :class:`~tui.data.RunFeed` in a worker thread (new
bytes of events.jsonl or the job's MetricStore) and redraws only what changed.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, OptionList, RichLog, Static, TabbedContent, TabPane, Tabs

from engine.status import ACTIVE, ENDED
from engine.store.follow import RunFeed
from engine.study.export import export_runs, export_table

from ..data import eval_keys, eval_series, short_id, status_line, step_series, system_series
from ..metricinfo import headline, higher_is_better
from ..widgets.bars import StatusLine, TitleBar
from ..widgets.examples import ExamplesPane
from ..widgets.plots import CurvePlot, Series
from ..widgets.results import ResultsTable, details_text, results_rows
from ..widgets.tables import TableList, TableView
from ..widgets.trypane import TryPane
from .base import ConsoleScreen, CurveViewKeys, last_failure


@dataclass
class SweepRequested(Message):
    """A trial's run view asks for its sweep's view. The app opens it: the sweep view opens run
    views, so this module cannot import it without a circle."""

    sweep: str


TAB_IDS = ("curves", "results", "tables", "log", "examples", "try")


def _seed_stat(stats: dict, key: str):
    return stats.get(f"final.{key}") or stats.get(key)


def seed_cell(stats: dict, key: str, with_n: bool = True) -> Text:
    """``0.92 ± 0.02`` (``(n=3)`` too, unless the header says n) for a metric of the run's seed group."""
    from engine.store.seeds import fmt_stat

    return Text(fmt_stat(_seed_stat(stats, key), with_n=with_n), justify="right")


class RunScreen(CurveViewKeys, ConsoleScreen):
    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="back to the list"),
        Binding("1", "tab('curves')", "Curves", show=False, tooltip="loss, learning rate and the evaluation metric"),
        Binding("2", "tab('results')", "Results", show=False, tooltip="each evaluation's metrics (left/right scroll)"),
        Binding("3", "tab('tables')", "Tables", show=False, tooltip="the run's tables (right: into the table)"),
        Binding("4", "tab('log')", "Log", show=False, tooltip="the run's log lines"),
        Binding("5", "tab('examples')", "Examples", show=False, tooltip="evaluation examples and mistakes"),
        Binding("6", "tab('try')", "Try", show=False, tooltip="try the model on your own input"),
        # short descriptions: the footer must keep ? at 80 columns
        Binding("p", "control('pause')", "Pause", tooltip="the run holds at its next step; p again resumes"),
        Binding("c", "control('cancel')", "Cancel", tooltip="asks first; the run saves a checkpoint"),
        Binding(
            "R",
            "control('retry')",
            "Resume",
            tooltip="a failed, cancelled or interrupted run goes on from its checkpoint",
        ),
        Binding("e", "export", "Export", tooltip="the table shown, or all the run's tables"),
        Binding("m", "next_metric", "Metric", tooltip="the evaluation panel's next metric"),
        *CurveViewKeys.VIEW_BINDINGS,
        Binding("v", "next_series", "Series", show=False, tooltip="loss panel: total loss, each part, all together"),
        Binding(
            "g",
            "next_system",
            "System",
            show=False,
            tooltip="small panel: learning rate, then each CPU/RAM/GPU figure sampled",
        ),
        Binding("enter", "details", "Traceback", show=False, tooltip="a failed run: its traceback"),
        Binding("u", "push", "Push", show=False, tooltip="upload the run's model to the Hugging Face Hub (asks first)"),
        Binding("r", "rerun", "Rerun", show=False, tooltip="the run's exact config and seed again (asks first)"),
        Binding("N", "clone", "Clone", show=False, tooltip="a new experiment in the manifest from the run"),
        Binding("s", "sweep", "Sweep", show=False, tooltip="a sweep's trial: its sweep's view (trials, best first)"),
    ]

    _seeds_shown: dict | None = None  # this run's seed group: {"stats", "n_runs"} (engine.store.seeds)

    def __init__(self, run=None, job=None):
        super().__init__()
        self.feed = RunFeed(run=run, job=job, refresh=self.refresh_queue)
        self.state = None
        self.metric: str | None = None
        self._polling = False
        self._shown_tables: tuple = ()
        self._table_name: str | None = None
        self._log_mark = None
        self._evals_seen = -1
        self._titled = run is not None
        self.loss_series = 0  # loss panel: 0 = total loss, i = the i-th part, -1 = all together
        self.failure = None  # the run's JobFailed event (reason, hint, traceback), once it failed

    # -- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield TitleBar(self._title(), id="title")
        yield StatusLine("…", id="run-status")
        yield Static("", id="run-failure")
        with TabbedContent(id="run-tabs", initial=self._initial_tab()):
            with TabPane("1 Curves", id="curves"):
                with Grid(id="curve-grid"):
                    yield CurvePlot("training loss", id="plot-loss")
                    yield CurvePlot("learning rate", id="plot-lr")
                    yield CurvePlot("evaluation", xlabel="epoch", id="plot-metric")
            with TabPane("2 Results", id="results"):
                with Vertical():
                    yield Static("", id="results-headline")
                    yield ResultsTable(id="results-table", fixed_columns=3)
                    with VerticalScroll(id="results-extra-box"):
                        yield Static("", id="results-extra")
            with TabPane("3 Tables", id="tables"):
                # the list above the table: the table gets the whole width (its numbers never cut)
                with Vertical():
                    yield TableList(id="table-list")
                    yield TableView(id="table-view")
            with TabPane("4 Log", id="log"):
                yield RichLog(id="run-log", max_lines=5000, wrap=True, markup=False, highlight=False)
            with TabPane("5 Examples", id="examples"):
                yield ExamplesPane(id="examples-pane")
            with TabPane("6 Try", id="try"):
                self.try_pane = TryPane(id="try-pane")  # kept: on_unmount releases its model
                yield self.try_pane
        yield Footer(compact=True, show_command_palette=False)

    def _title(self) -> str:
        run, job = self.feed.run, self.feed.job
        if run is not None:
            cfg = run.config()
            head = f"{run.experiment} / {short_id(run.run_id)}"
            return f"{head} · {cfg.get('task', '?')} · {cfg.get('model', '?')}"
        return f"{job.experiment} · job #{job.id}" if job is not None else "?"

    def _initial_tab(self) -> str:
        run = self.feed.run
        task = run.config().get("task") if run is not None else None
        if task is None and self.feed.job is not None:
            exp = (
                self.app.manifest.get(self.feed.job.experiment)
                if self.feed.job.experiment in self.app.manifest.names
                else None
            )
            task = exp.task if exp else None
        return "tables" if task == "inspect" else "curves"

    def on_mount(self) -> None:
        from ..modelslot import model_slot

        model_slot(self.app).keep_only(self.feed.run)  # another run's model kept for the Try tab goes now
        self.query_one(TableView).show(None, "no tables in this run (yet)")
        self._poll()
        self.set_interval(1.0, self._poll)

    # -- polling ------------------------------------------------------------------------------
    def _poll(self) -> None:
        if not self._polling:
            self._polling = True
            self._poll_worker()

    @work(thread=True, exit_on_error=False, group="poll")
    def _poll_worker(self) -> None:
        try:
            state = self.feed.poll()
            seeds = self._read_seed_stats(state)
            failure = self.failure
            if state.status == "failed" and failure is None and self.feed.run is not None:
                failure = last_failure(self.feed.run)
        except Exception as exc:  # noqa: BLE001 - a broken run directory must not kill the view
            self._polling = False
            self.app.call_from_thread(self._poll_failed, f"cannot read the run: {exc}")
            return
        self.app.call_from_thread(self._apply, state, failure, seeds)

    _seed_stats: dict | None = None
    _seed_stamp: tuple = ()
    _seed_read: float = 0.0

    def _read_seed_stats(self, state) -> dict | None:
        """Mean ± std and n of this run's seed group, re-read when a run of the group changes."""
        import time

        from engine.store.runs import RunStore
        from engine.store.seeds import group_of, group_runs, group_stats

        run = self.feed.run
        if run is None or not state.results:
            return None
        group = group_of(run)
        if not group:
            return None
        if self._seed_stats is not None and time.monotonic() - self._seed_read < 5:
            return self._seed_stats  # the other seeds' files are re-read every 5 s, not every poll
        self._seed_read = time.monotonic()
        runs = group_runs(RunStore(run.path.parent.parent), group, run.experiment)
        stamp = tuple((r.run_id, (r.path / "results.json").exists(), r.status().get("status")) for r in runs)
        if stamp != self._seed_stamp:
            self._seed_stamp, self._seed_stats = stamp, {"stats": group_stats(runs), "n_runs": len(runs)}
        return self._seed_stats

    def _poll_failed(self, message: str) -> None:
        self.query_one("#run-status", StatusLine).say(message, "error")

    def _apply(self, state, failure=None, seeds=None) -> None:
        self._polling = False
        bar = self.query_one("#run-status", StatusLine)
        line = status_line(state, (bar.content_region.width or self.app.size.width - 2) if failure is None else None)
        if failure is not None and state.reason:
            line = line.replace(f": {state.reason}", "", 1)  # the reason is shown in full below
        self.query_one("#run-status", StatusLine).say(line, "error" if state.status == "failed" else "info")
        self._show_failure(failure)
        seeds_changed = seeds is not getattr(self, "_seeds_shown", None)
        self._seeds_shown = seeds
        if self.state is not None and state.version == self.state.version and not seeds_changed:
            return
        self.state = state
        if self.feed.run is not None and not self._titled:
            self._titled = True  # a queued job gets its run (and its title) once it starts
            self.query_one(TitleBar).update(self._title())
        self._draw_curves(state)
        if len(state.evals) != self._evals_seen or state.results or seeds_changed:
            self._draw_results(state)
        self._draw_table_list(state)
        self._draw_log(state)

    def _draw_curves(self, state) -> None:
        if self._none_coming(state):  # short: a plot drops a title wider than its canvas
            inspect = self.feed.run is not None and self.feed.run.config().get("task") == "inspect"
            empty = f"none ({'inspect run' if inspect else state.status})"
        else:
            empty = "no data yet"
        for plot in self.query(CurvePlot):
            plot.empty = empty
        steps = state.steps
        key = (len(steps), steps[-1].step if steps else None)
        loss = [Series("loss", *step_series(steps, "loss"))]
        parts = list(steps[-1].parts) if steps else []
        loss += [Series(p, *step_series(steps, p)) for p in parts]
        # Total and parts squeezed together hide each other: one at a time, `v` steps through.
        if self.loss_series >= len(loss):
            self.loss_series = 0
        one = loss[self.loss_series] if self.loss_series >= 0 else None
        plot = self.query_one("#plot-loss", CurvePlot)
        title = f"training {one.label}" if one else "training loss (all)"
        if len(loss) > 1:
            title += " (v)"
        plot.show([one] if one else loss, title=title, key=(key, self.loss_series), best="min")
        self._draw_lr_or_system(state, key)
        keys = eval_keys(state.evals)
        if self.metric not in keys:
            self.metric = keys[0] if keys else None
        if self.metric:
            split = state.evals[-1].split if state.evals else ""
            better = higher_is_better(self.metric)
            plot = self.query_one("#plot-metric", CurvePlot)
            plot.show(
                [Series(self.metric, *eval_series(state.evals, self.metric))],
                title=f"{self.metric} on {split} (m: next)",  # per epoch: the x axis says so
                key=(len(state.evals), self.metric),
                best="" if better is None else "max" if better else "min",
            )
            self.auto_log(plot, self.metric)

    system_view = 0  # the small panel: 0 = learning rate, i = the i-th system figure (`g` steps through)

    def _draw_lr_or_system(self, state, key) -> None:
        """The learning rate, or one of the job's CPU/RAM/GPU samples (SystemSampled, about every 30 s)."""
        plot = self.query_one("#plot-lr", CurvePlot)
        figures = system_series(state.system)
        if self.system_view > len(figures):
            self.system_view = 0
        if self.system_view == 0:
            plot.xlabel = "step"
            title = "learning rate" + (" (g: system)" if figures else "")
            plot.show([Series("lr", *step_series(state.steps, "learning_rate"))], title=title, key=(key, 0))
            return
        name, xs, ys = figures[self.system_view - 1]
        plot.xlabel = "minutes"
        plot.show(
            [Series(name, xs, ys)], title=f"{name} (g: next)", key=(len(state.system), self.system_view), best="max"
        )

    def action_next_system(self) -> None:
        n = len(system_series(self.state.system)) if self.state is not None else 0
        self.system_view = (self.system_view + 1) % (n + 1) if n else 0
        if self.state is not None:
            self._draw_curves(self.state)
        self.action_tab("curves")
        if not n:
            self.say("no system samples in this run yet (a job records CPU/RAM/GPU about every 30 s)")

    def _none_coming(self, state) -> str:
        """Why no more data will come to this run ("" while some may): an inspect run trains
        nothing, an ended run adds nothing; "yet" would promise what never comes."""
        run = self.feed.run
        if run is not None and run.config().get("task") == "inspect":
            return "an inspect run trains nothing (its tables: 3)"
        if state.status in ENDED:
            return f"the run {state.status}" if state.status != "finished" else "the run recorded none"
        if state.status == "interrupted":
            return "the run was interrupted (R resumes it)"
        return ""

    def _fit_results(self, first: int | None = None) -> None:
        table = self.query_one("#results-table", ResultsTable)
        table.fit(table._available(), first)
        self._show_results_headline()

    @on(ResultsTable.Scrolled)
    def _results_scrolled(self) -> None:
        self._show_results_headline()

    def _show_results_headline(self) -> None:
        """The headline, and which epoch columns are out of view (the table shows whole columns)."""
        left, right = self.query_one("#results-table", ResultsTable).hidden
        hint = []
        if left:
            hint.append(f"← {left} earlier epoch{'s' * (left > 1)}")
        if right:
            hint.append(f"{right} later epoch{'s' * (right > 1)} →")
        line = getattr(self, "_results_headline", "")
        self.query_one("#results-headline", Static).update(Text(line + ("\n" + " · ".join(hint) if hint else "")))

    def _draw_results(self, state) -> None:
        self._evals_seen = len(state.evals)
        table = self.query_one("#results-table", DataTable)
        evals = state.evals
        headers, rows, texts = results_rows(evals, state.results)
        first = table.hidden[0] if isinstance(table, ResultsTable) else 0
        table.clear(columns=True)
        seeds = self._seeds_shown
        if seeds:  # the run's seed group: mean ± std, next to this run's own final and best values
            from engine.store.seeds import common_n

            n = common_n([_seed_stat(seeds["stats"], r[0]) for r in rows])
            headers.insert(
                3, f"seeds mean ± std (n={n})" if n is not None else f"seeds mean ± std ({seeds['n_runs']} runs)"
            )
            rows = [r[:3] + [seed_cell(seeds["stats"], r[0], with_n=n is None)] + r[3:] for r in rows]
        for i, h in enumerate(headers):
            table.add_column(h, key=f"c{i}")
        for row in rows:
            table.add_row(*row)
        self.call_after_refresh(self._fit_results, first)  # column widths are measured on refresh
        task = self.feed.run.config().get("task", "") if self.feed.run is not None else ""
        line = headline(task, state.results, evals[0].metrics if evals else None) if state.results else ""
        if not line and evals:
            line = f"epoch {evals[-1].epoch} of a run still going" if state.status in ACTIVE else ""
        why = self._none_coming(state)
        self._results_headline = line or (f"no final results: {why}" if why else "no final results yet")
        self._show_results_headline()
        config = self.feed.run.config() if self.feed.run is not None else None
        extra = details_text(evals, state.results, texts, config)
        flags = self._flags(state)
        if flags:  # degenerate results (engine.metrics.flags), above everything else
            extra = "\n".join(f"FLAG {f.metric}: {f.message}" for f in flags) + ("\n" + extra if extra else "")
        if not rows and not texts:
            empty = f"no evaluation results: {why}" if why else "no evaluation results yet"
            extra = empty + (f"\n{extra}" if extra else "")
        self.query_one("#results-extra", Static).update(Text(extra))  # data, not markup
        self.query_one("#results-extra-box").display = bool(extra)

    def _flags(self, state) -> list:
        """Flags on degenerate results of a finished run (engine.metrics.flags); computed once per results."""
        from engine.metrics.flags import run_flags

        run = self.feed.run
        if not state.results or run is None:
            return []
        return run_flags(run)

    def _draw_table_list(self, state) -> None:
        if state.tables != self._shown_tables:
            self._shown_tables = state.tables
            opts = self.query_one("#table-list", OptionList)
            highlighted = self._table_name
            opts.clear_options()
            opts.add_options(list(state.tables))
            if state.tables:
                idx = state.tables.index(highlighted) if highlighted in state.tables else 0
                opts.highlighted = idx
                self._load_table(state.tables[idx])
        elif self._table_name and self._table_name == "epochs":
            self._load_table(self._table_name)  # rewritten after every evaluation

    def _draw_log(self, state) -> None:
        log = self.query_one(RichLog)
        logs = state.logs
        start: int | None = 0
        if self._log_mark is not None:
            start = next((i + 1 for i in range(len(logs) - 1, -1, -1) if logs[i] is self._log_mark), None)
            if start is None:  # the store dropped old lines: continue by time
                start = next((i for i, ev in enumerate(logs) if ev.time > self._log_mark.time), len(logs))
        for ev in logs[start:]:
            stamp = _dt.datetime.fromtimestamp(ev.time).strftime("%H:%M:%S")
            level = "" if ev.level == "info" else f"{ev.level.upper()}: "
            lines = ev.message.rstrip("\n").splitlines() or [""]
            log.write(Text("\n".join([f"{stamp} {level}{lines[0]}"] + [f"         {ln}" for ln in lines[1:]])))
        if logs:
            self._log_mark = logs[-1]

    # -- tables -------------------------------------------------------------------------------
    @on(OptionList.OptionHighlighted, "#table-list")
    def _table_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        name = str(event.option.prompt)
        if name != self._table_name:
            self._load_table(name)

    def _load_table(self, name: str) -> None:
        self._table_name = name
        self._table_worker(name)

    @work(thread=True, exclusive=True, group="table", exit_on_error=False)
    def _table_worker(self, name: str) -> None:
        run = self.feed.run
        try:
            assert run is not None  # the tables listed are this run's
            table, msg = run.read_table(name), ""
        except Exception as exc:  # noqa: BLE001 - a corrupt table file is shown, not raised
            table, msg = None, f"cannot read table {name}: {exc}"
        self.app.call_from_thread(lambda: self.query_one(TableView).show(table, msg))

    # -- actions ------------------------------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    # -- Examples and Try: loaded the first time their tab is shown --------------------------
    @on(TabbedContent.TabActivated, "#run-tabs")
    def _tab_shown(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id
        if tab == "examples":
            self.query_one(ExamplesPane).start(self.feed.run, self.app.manifest.settings.data_mirror)
            self.query_one("#ex-table").focus()  # w, x, o act on the rows at once
        elif tab == "try":
            self.query_one(TryPane).start(self.feed.run)
            self.query_one("#try-input").focus()

    def on_unmount(self) -> None:
        self.try_pane.release()  # the model goes soon after the view (at once when another run opens)

    def action_tab(self, tab: str) -> None:
        tabs = self.query_one("#run-tabs", TabbedContent)
        if tab != "results" and self.query_one("#results-table").has_focus:
            tabs.query_one(Tabs).focus()  # else TabbedContent follows the focus back to its pane
        tabs.active = tab
        if tab == "results":
            self.query_one("#results-table").focus()  # arrows scroll the epochs at once

    def curve_plots(self) -> list[CurvePlot]:
        return [self.query_one("#plot-loss", CurvePlot), self.query_one("#plot-metric", CurvePlot)]

    def action_next_series(self) -> None:
        parts = list(self.state.steps[-1].parts) if self.state and self.state.steps else []
        n = 1 + len(parts)
        self.loss_series = -1 if self.loss_series == n - 1 else self.loss_series + 1
        if n == 1:
            self.loss_series = 0
        if self.state is not None:
            self._draw_curves(self.state)
        self.action_tab("curves")

    # -- a failed run: its reason and hint in full, enter for the traceback ------------------
    def _show_failure(self, failure) -> None:
        self.failure = failure
        box = self.query_one("#run-failure", Static)
        box.display = failure is not None
        if failure is not None:
            hint = f"\nhint: {failure.hint}" if failure.hint else ""
            more = "  (enter: traceback)" if failure.traceback else ""
            box.update(Text(f"✗ {failure.reason}{hint}{more}"))

    def action_details(self) -> None:
        from .dialogs import TextDialog

        if self.failure is not None and self.failure.traceback:
            self.app.push_screen(TextDialog(f"Traceback of {self._title()}", self.failure.traceback))

    def action_next_metric(self) -> None:
        keys = eval_keys(self.state.evals) if self.state else []
        if keys:
            self.metric = keys[(keys.index(self.metric) + 1) % len(keys)] if self.metric in keys else keys[0]
            self._draw_curves(self.state)
            self.action_tab("curves")

    def action_control(self, action: str) -> None:
        job, run = self.feed.job, self.feed.run
        if job is not None and job.run is not None:
            run = job.run
        if action == "retry":
            new = None
            with self.errors_said():
                new = self._retry(job if job is not None and job.done else None, run)
            if new is not None and (new.resume is not None or new.run is not None):
                self.feed.attach(new)
            return
        self.control(action, job=job, run=run)

    def action_rerun(self) -> None:
        from .reruns import ask_rerun

        ask_rerun(self, self.feed.run)

    def action_clone(self) -> None:
        from .reruns import ask_clone

        ask_clone(self, self.feed.run)

    def action_sweep(self) -> None:
        """The sweep view of this trial's sweep (the app opens it: see :class:`SweepRequested`)."""
        from engine.store.trials import trial_record

        run = self.feed.run
        record = trial_record(run) if run is not None else None
        if run is None or record is None:
            self.say("this run is no trial of a sweep")
            return
        self.app.post_message(SweepRequested(str(record.get("name") or run.experiment)))

    def action_push(self) -> None:
        """Push a finished run to the Hub: form, then a confirmation showing repo, visibility and files."""
        from .dialogs import ConfirmDialog, PushDialog

        run = self.feed.run
        model = run.final_model() if run is not None else None
        if run is None or model is None:
            self.say("only a finished training run with a saved model can be pushed")
            return
        files = sorted(p.name for p in model.iterdir() if p.is_file()) + ["README.md (model card)"]

        def confirmed(choice, yes) -> None:
            if yes:
                self._push(run, choice)

        def chosen(choice) -> None:
            if choice is None:
                return
            where = f"{choice.repo} ({'private' if choice.private else 'public'}"
            where += f", branch {choice.revision})" if choice.revision else ")"
            verb = "Write a dry-run folder for" if choice.dry_run else "Upload to"
            self.app.push_screen(
                ConfirmDialog(f"{verb} {where}: {', '.join(files)}?", yes="Push"), lambda yes: confirmed(choice, yes)
            )

        self.app.push_screen(PushDialog(f"{run.experiment}/{short_id(run.run_id)}", repo=""), chosen)

    @work(thread=True, exit_on_error=False, group="push")
    def _push(self, run, choice) -> None:
        from engine.hub.publish import PushError, push

        try:
            res = push(
                run, choice.repo, private=choice.private, revision=choice.revision or None, dry_run=choice.dry_run
            )  # a dry run stages in a new temporary folder (shown), never ./
        except PushError as exc:
            self.app.call_from_thread(self.say, f"push failed: {exc}", "error")
            return
        except Exception as exc:  # noqa: BLE001 - never crash the console
            self.app.call_from_thread(self.say, f"push failed: {type(exc).__name__}: {exc}", "error")
            return
        msg = (
            f"dry run: {len(res['files'])} files in {Path(res['folder']).resolve()}"
            if res["dry_run"]
            else f"pushed to https://huggingface.co/{res['repo_id']}"
        )
        self.app.call_from_thread(self.say, msg, "ok")

    def action_export(self) -> None:
        run = self.feed.run
        if run is None:
            self.say("nothing to export yet: the job has not started")
            return
        active = self.query_one("#run-tabs", TabbedContent).active
        view = self.query_one(TableView)
        if active == "tables" and view.table is not None:
            table = view.table
            self.ask_export(f"table {table.name}", lambda folder, formats: export_table(run, table, folder, formats))
        else:
            self.ask_export(
                f"all tables of {run.experiment}/{short_id(run.run_id)}",
                lambda folder, formats: export_runs([run], folder, formats),
            )
