"""The main screen: Experiments | Jobs | Runs | System tabs, a title bar and a one-line status.

A 1 Hz timer passes data down to the panes: the job queue's state (re-read from
``runs/.queue`` and the run directories; panes redrawn only when it changed) and, every few
seconds, the runs on disk (read in a worker thread, so runs of other processes show up and are
followed too).
"""

from __future__ import annotations

import gc

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Footer, Static, TabbedContent, TabPane

from engine.status import ACTIVE, Status
from engine.store.listing import RowCache, RunRow
from engine.study.export import export_runs

from ..sweepdata import sweep_progress
from ..widgets.bars import StatusLine, TitleBar
from ..widgets.experiments import ExperimentsPane
from ..widgets.jobs import JobsPane
from ..widgets.panes import Note
from ..widgets.runs import RunsPane
from ..widgets.system import SystemPane, sample_view
from .base import ConsoleScreen, job_for_run

RUNS_EVERY_S = 3  # how often the runs directory is re-read (another process may write to it)
SYSTEM_EVERY_S = 2  # how often the system tab samples CPU/RAM/GPUs while it is shown


_frozen = False


def freeze_heap_once() -> None:
    """Once the console is up with the runs listed: ``gc.freeze()``, so that the collector's full passes
    skip what exists by then (the app, its widgets, the first runs list).

    With 1,000 runs those passes walked the whole heap and took 75-120 ms each, falling on a key every
    few dozen (the slowest filter keys in bench/store_scale.py). Frozen objects are still freed when
    their last reference goes; only cyclic garbage among them would stay, at most this one-time heap.
    Only in a console process of its own (``LMConsole.freeze_heap``), not in tests that build apps.
    """
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


class MainScreen(ConsoleScreen):
    BINDINGS = [
        Binding(
            "1", "tab('experiments')", "Experiments", show=False, tooltip="the manifest's experiments and their runs"
        ),
        Binding("2", "tab('jobs')", "Jobs", show=False, tooltip="the queue: waiting, running and ended jobs"),
        Binding("3", "tab('runs')", "Runs", show=False, tooltip="every run on disk, filtered and sorted"),
        Binding("4", "tab('system')", "System", show=False, tooltip="CPU, RAM and each GPU, with the job holding it"),
        Binding("ctrl+r", "reload", "Reload manifest", show=False, tooltip="read experiments.toml again"),
        Binding("w", "report", "Report", show=False, tooltip="write the study report of the finished runs"),
    ]

    def __init__(self):
        super().__init__()
        self._queue_version = -1
        self._ticks = 0
        self._rows: list[RunRow] = []  # every run on disk, oldest first, as last passed to the panes
        self._cache = RowCache()
        self._rows_shown: list[RunRow] | None = None  # the rows load_runs last passed on (worker thread)
        self._probe = None  # engine.job.system.SystemProbe, made on first look at the system tab
        self._sweeps: dict[str, str] = {}  # sweep -> its progress line, read with the runs

    def compose(self) -> ComposeResult:
        yield TitleBar("lmconsole", id="title")
        yield Static("", id="manifest-banner")
        with TabbedContent(id="tabs"):
            with TabPane("1 Experiments", id="experiments"):
                yield ExperimentsPane(id="experiments-pane")
            with TabPane("2 Jobs", id="jobs"):
                yield JobsPane(id="jobs-pane")
            with TabPane("3 Runs", id="runs"):
                yield RunsPane(id="runs-pane")
            with TabPane("4 System", id="system"):
                yield SystemPane(id="system-pane")
        yield StatusLine("", id="status")
        yield Footer(compact=True, show_command_palette=False)

    def palette_panes(self) -> list[tuple[object, str]]:
        """The panes whose actions the command palette lists on any tab, each with its tab."""
        return [
            (self.query_one(ExperimentsPane), "experiments"),
            (self.query_one(JobsPane), "jobs"),
            (self.query_one(RunsPane), "runs"),
        ]

    def on_mount(self) -> None:
        self._queue_version = -1
        self._update_queue()
        # The runs on disk are read after the first frame is on screen: with 1,000 runs that reading
        # (a worker thread) would otherwise hold the first frame back.
        self.call_after_refresh(self.load_runs)
        self.query_one(ExperimentsPane).focus_table()
        self.set_interval(1.0, self._tick)

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.refresh_all()

    # -- data down ------------------------------------------------------------------------
    def refresh_all(self) -> None:
        self._queue_version = -1
        self._update_queue()
        self.load_runs()

    def _tick(self) -> None:
        if self.app.screen is not self and not isinstance(self.app.screen, ModalScreen):
            return  # hidden under a run view: no work (refreshed on resume)
        self._ticks += 1
        self._update_queue()
        if self._ticks % RUNS_EVERY_S == 0:
            self.load_runs()
        if self._ticks % SYSTEM_EVERY_S == 0 and self.query_one(TabbedContent).active == "system":
            self.sample_system()

    def _update_queue(self) -> None:
        queue = self.app.queue
        jobs = list(queue.jobs)
        busy = any(j.status in ACTIVE for j in jobs)
        if queue.version == self._queue_version and not busy:
            return
        self._queue_version = queue.version
        self.query_one(JobsPane).set_jobs(jobs)
        self._update_experiments()
        self._update_title()

    def _update_title(self) -> None:
        jobs = self.app.queue.jobs
        counts = {
            s: sum(1 for j in jobs if j.status == s)
            for s in (Status.RUNNING, Status.STALLED, Status.PAUSED, Status.QUEUED, Status.FAILED)
        }
        parts = [f"{n} {s}" for s, n in counts.items() if n]
        manifest = self.app.manifest
        self.query_one(TitleBar).update(
            f"lmconsole · {manifest.path.name} · {len(manifest.experiments)} experiments · "
            f"{len(self._rows)} runs" + (" · " + ", ".join(parts) if parts else "")
        )

    def _update_experiments(self) -> None:
        statuses: dict[str, tuple[str, str]] = {}
        for r in self._rows:  # oldest first: the latest run wins
            statuses[r.run.experiment] = (r.status, r.reason)
        for job in self.app.queue.jobs:  # this console's jobs are fresher than the disk
            if not job.done or job.status == "blocked" or job.run is None:
                statuses[job.experiment] = (job.status, job.reason)
        finished = {r.run.experiment for r in self._rows if r.status == "finished"}
        pane = self.query_one(ExperimentsPane)
        if pane.memory_of is None:
            pane.memory_of = self._memory_of
        pane.set_experiments(self.app.manifest.experiments, statuses, finished, self._sweeps)

    def _memory_of(self, exp) -> str:
        """``memory ≈ 5.12 GiB per GPU (...)`` for a training experiment, on the device the queue would give it."""
        from engine.models.memory import memory_note
        from engine.queue.gpus import gpus_needed, scheduler_gpus

        manifest = self.app.manifest
        on_gpu = gpus_needed(exp, bool(scheduler_gpus(manifest.settings))) > 0
        return memory_note(manifest, exp, on_gpu, self.app.store)

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False)
    def load_runs(self) -> None:
        rows = self._cache.load(self.app.store.runs())
        # Nothing changed on disk (the usual case, every few seconds): the panes are not rebuilt
        # (with 1,000 runs that costs the UI thread a noticeable pause, felt as a stalled key).
        if rows == self._rows_shown:
            return
        self._rows_shown = rows
        # a sweep's progress changes only with its trials' runs, so it is read here, with them
        # (from the run directories alone: the Optuna study is never opened on a refresh)
        try:
            sweeps = sweep_progress(self.app.store.root, self.app.manifest.experiments)
        except Exception:  # noqa: BLE001 - a progress line is extra: the status stays
            sweeps = {}
        self.app.call_from_thread(self._apply_runs, rows, sweeps)

    @work(thread=True, exclusive=True, group="system", exit_on_error=False)
    def sample_system(self) -> None:
        from engine.job.system import SystemProbe

        if self._probe is None:
            self._probe = SystemProbe()
        view = sample_view(self._probe, self._rows)
        self.app.call_from_thread(self.query_one(SystemPane).set_view, view)

    def _apply_runs(self, rows: list[RunRow], sweeps: dict[str, str] | None = None) -> None:
        self._rows = rows
        self._sweeps = sweeps or {}
        self.query_one(RunsPane).set_runs(rows)
        self._update_experiments()
        self._update_title()
        if getattr(self.app, "freeze_heap", False):
            freeze_heap_once()

    # -- actions ------------------------------------------------------------------------
    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        self._focus_tab(tab)

    def _focus_tab(self, tab: str) -> None:
        panes: dict[str, type[ExperimentsPane | JobsPane | RunsPane | SystemPane]] = {
            "experiments": ExperimentsPane,
            "jobs": JobsPane,
            "runs": RunsPane,
            "system": SystemPane,
        }
        self.query_one(panes[tab]).focus_table()

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane is not None and event.pane.id:
            self._focus_tab(event.pane.id)
            if event.pane.id == "runs":
                self.load_runs()  # fresh from disk when the user looks
            elif event.pane.id == "system":
                self.sample_system()

    def action_reload(self) -> None:
        self.app.reload_manifest()

    def show_manifest_problems(self, error) -> None:
        """A reload that failed: say so above the tabs, keep working with the last good manifest."""
        banner = self.query_one("#manifest-banner", Static)
        banner.display = error is not None
        if error is not None:
            n = len(error.problems)
            banner.update(
                Text(
                    f"✗ {error.path.name}: {n} problem{'s' if n != 1 else ''}, still using the last good "
                    f"version (fix it, then ctrl+r): " + "; ".join(error.problems)
                )
            )

    def action_report(self) -> None:
        self.say("writing the study report ...")
        self._write_report()

    @work(thread=True, exclusive=True, group="report", exit_on_error=False)
    def _write_report(self) -> None:
        """The study report of every experiment with a finished run, next to the manifest (``report/``)."""
        from engine.study.report import build_report, write_report

        manifest = self.app.manifest
        try:
            report = build_report(self.app.store, manifest.names)
            n = len(report.sections[0].tables[0].rows)
            if not n:
                self.app.call_from_thread(self.say, "no finished run yet: run the study first", "warning")
                return
            out = manifest.path.parent / "report"
            write_report(report, out)
            flags = sum(len(t.rows) for t in report.sections[1].tables)
            text = f"report of {n} runs written to {out}/report.{{md,tex,html}}" + (
                f"; {flags} flag(s) raised" if flags else ""
            )
            self.app.call_from_thread(self.say, text, "warning" if flags else "info")
        except Exception as exc:  # noqa: BLE001 - a failed report is a message, not a crash
            self.app.call_from_thread(
                self.say,
                f"report failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                "error",
            )

    def say(self, text: str, level: str = "info") -> None:
        self.query_one(StatusLine).say(text, level)
        if level == "error":
            super().say(text, level)

    # -- requests up from the panes -------------------------------------------------------
    @on(Note)
    def _note(self, note: Note) -> None:
        if note.source == f"{self.query_one(TabbedContent).active}-pane":
            self.query_one(StatusLine).say(note.text, note.level)

    @on(ExperimentsPane.RunRequested)
    def _run(self, msg: ExperimentsPane.RunRequested) -> None:
        self.run_experiments(msg.names)
        self._update_queue()

    # -- navigation: the run view opens from here (a RunScreen is a ConsoleScreen, so the shared
    # base cannot import it without a circle) -------------------------------------------------
    def open_run(self, run=None, job=None) -> None:
        from .run import RunScreen  # on first use: keeps the first frame fast

        if job is None and run is not None:
            job = job_for_run(self.app.queue, run)
        self.app.push_screen(RunScreen(run=run, job=job))

    def open_sweep(self, name: str) -> None:
        from .sweep import SweepScreen

        self.app.push_screen(SweepScreen(name))

    @on(ExperimentsPane.OpenRequested)
    def _open_experiment(self, msg: ExperimentsPane.OpenRequested) -> None:
        if msg.experiment in self._sweeps:  # a sweep with trials on disk: its trials, not its latest trial
            self.open_sweep(msg.experiment)
            return
        jobs = [j for j in self.app.queue.jobs if j.experiment == msg.experiment]
        runs = [r.run for r in self._rows if r.run.experiment == msg.experiment]
        if jobs and not jobs[-1].done:
            self.open_run(job=jobs[-1])
        elif runs:
            self.open_run(run=runs[-1])
        else:
            self.say(f"{msg.experiment} has no runs yet: press r to run it")

    @on(JobsPane.OpenRequested)
    def _open_job(self, msg: JobsPane.OpenRequested) -> None:
        self.open_run(job=msg.job, run=msg.job.run)

    @on(JobsPane.ControlRequested)
    def _control_job(self, msg: JobsPane.ControlRequested) -> None:
        self.control(msg.action, job=msg.job, run=msg.job.run)
        self._update_queue()

    @on(JobsPane.MoveRequested)
    def _move_job(self, msg: JobsPane.MoveRequested) -> None:
        message = ""
        with self.errors_said():
            message = self.app.queue.control(msg.job, "up" if msg.delta < 0 else "down")
        if not message.startswith("moved"):
            if message:
                self.say(message)
            return
        self._update_queue()
        pane = self.query_one(JobsPane)
        keys = [r.key.value for r in pane.table.ordered_rows]
        if str(msg.job.id) in keys:
            pane.table.move_cursor(row=keys.index(str(msg.job.id)), animate=False)

    @on(RunsPane.OpenRequested)
    def _open_run(self, msg: RunsPane.OpenRequested) -> None:
        self.open_run(run=msg.run)

    @on(RunsPane.SourceRequested)
    def _source_run(self, msg: RunsPane.SourceRequested) -> None:
        from .reruns import ask_clone, ask_rerun

        (ask_rerun if msg.action == "rerun" else ask_clone)(self, msg.run)

    @on(RunsPane.ControlRequested)
    def _control_run(self, msg: RunsPane.ControlRequested) -> None:
        self.control(msg.action, run=msg.run)
        self._update_queue()

    @on(RunsPane.RunsRequested)
    def _runs_requested(self, msg: RunsPane.RunsRequested) -> None:
        runs = msg.runs
        if msg.action == "compare":
            from .compare import CompareScreen

            self.app.push_screen(CompareScreen(runs))
        else:
            what = f"{len(runs)} run(s)" if len(runs) > 1 else f"{runs[0].experiment}/{runs[0].run_id}"
            self.ask_export(what, lambda folder, formats: export_runs(runs, folder, formats))

    @on(RunsPane.EditRequested)
    def _edit_runs(self, msg: RunsPane.EditRequested) -> None:
        self.edit_runs(msg.action, msg.rows, done=self.load_runs)
