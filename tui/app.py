"""The console app: wiring only (manifest -> job queue on disk -> screens).

``run_console(path)`` is what ``lmconsole`` with no command calls. The console is
a client of the runs directory's queue (``engine.queue.jobqueue``): every job runs in its
own process, so quitting (or losing the terminal) leaves them going. Tests build
the app with :func:`build_app` and a queue with a fake runner. Nothing here
imports torch or transformers, so the first frame comes fast.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from engine.errors import ManifestError
from engine.manifest import load

from .appbase import ConsoleApp
from .commands import ConsoleCommands


def default_queue(manifest):
    from engine.queue.jobqueue import JobQueue

    return JobQueue(manifest)


class LMConsole(ConsoleApp):
    CSS_PATH = "styles.tcss"
    TITLE = "lmconsole"
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    freeze_heap = False  # gc.freeze() once the runs are listed (run_console: a process of its own)
    BINDINGS = [
        Binding("q", "quit", "Quit", tooltip="leave the console (asks first; jobs go on in their own processes)"),
        Binding("question_mark", "help", "Help", tooltip="every key of the console, by screen"),
    ]

    def __init__(self, manifest_path: str | Path, queue_factory=default_queue):
        super().__init__()
        self.manifest_path = Path(manifest_path)
        self.queue_factory = queue_factory
        # None until on_mount loads the manifest (see ConsoleApp: the screens read them set)
        self.manifest = None  # type: ignore[assignment]
        self.queue = None  # type: ignore[assignment]
        self.store = None  # type: ignore[assignment]
        self.loop: asyncio.AbstractEventLoop | None = None  # for the SIGHUP handler
        self.hangup = False
        self.last_export = None

    def on_mount(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.hangup:  # SIGHUP before the loop existed
            self.exit()
            return
        error = self._load()
        if error is None:
            from .alerts import JobAlerts
            from .screens.main import MainScreen

            self.push_screen(MainScreen())
            self._alerts = JobAlerts(self._job_groups)  # the jobs' statuses as last seen: toasts for what changes
            self._alerts.changes(self.queue.jobs)  # what has ended before the console opened is no news
            self.set_interval(1.0, self._tell_alerts)
        else:
            from .screens.manifest_error import ManifestErrorScreen

            self.push_screen(ManifestErrorScreen(error))

    def _load(self) -> ManifestError | None:
        try:
            manifest = load(self.manifest_path)
        except ManifestError as exc:
            return exc
        if self.queue is None or (not self.active_jobs() and manifest.runs_dir != self.manifest.runs_dir):
            self.queue = self.queue_factory(manifest)
        else:
            self.queue.manifest = manifest  # running jobs keep going; new ones use the new manifest
        self.manifest, self.store = manifest, self.queue.store
        return None

    def reload_manifest(self) -> None:
        from .screens.main import MainScreen
        from .screens.manifest_error import ManifestErrorScreen

        error = self._load()
        main = next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)
        if main is not None:
            main.show_manifest_problems(error)  # a banner; the last good manifest stays in use
        if error is not None:
            if isinstance(self.screen, ManifestErrorScreen):
                self.screen.show_error(error)
            elif main is None:
                self.push_screen(ManifestErrorScreen(error))
            self.notify(f"{self.manifest_path.name}: {len(error.problems)} problem(s)", severity="error")
            return
        if isinstance(self.screen, ManifestErrorScreen):
            if any(isinstance(s, MainScreen) for s in self.screen_stack):
                self.pop_screen()
            else:
                self.switch_screen(MainScreen())
                return
        if isinstance(self.screen, MainScreen):
            self.screen.refresh_all()
        self.notify(f"reloaded {self.manifest_path.name}: {len(self.manifest.experiments)} experiments")

    def _job_groups(self, job) -> list[tuple[str, str]]:
        """The sweep or the studies a job belongs to (for their "done" alerts)."""
        from engine.job.notify import studies_with

        manifest = self.manifest
        exp = manifest.get(job.experiment) if job.experiment in manifest.names else None
        if exp is not None and getattr(exp, "sweep", None) is not None:
            return [("sweep", job.experiment)]
        return [("study", s) for s in studies_with(manifest, job.experiment)]

    def _tell_alerts(self) -> None:
        """A toast (and ``settings.console_alerts``) for each job this console saw finish, fail or stall."""
        from .alerts import escapes

        for alert in self._alerts.changes(self.queue.jobs):
            self.notify(alert.text, title=alert.title, severity=alert.severity, timeout=10)  # type: ignore[arg-type]
            seq = escapes(self.manifest.settings.console_alerts, alert)
            if seq and not self.is_headless and self._driver is not None:
                self._driver.write(seq)

    def get_system_commands(self, screen):
        """Textual's palette commands, less its "Quit" (ours, q / ctrl+q, asks first while jobs run)."""
        for command in super().get_system_commands(screen):
            if command.title != "Quit":
                yield command

    def active_jobs(self) -> list:
        return [j for j in self.queue.jobs if not j.done] if self.queue is not None else []

    def action_help(self) -> None:
        from .screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def on_sweep_requested(self, msg) -> None:
        """``s`` in a trial's run view: back to its sweep's view when the run was opened from there,
        else that view on top (tui.screens.run.SweepRequested)."""
        from .screens.sweep import SweepScreen

        stack = self.screen_stack
        below = stack[-2] if len(stack) > 1 else None
        if isinstance(below, SweepScreen) and below.sweep == msg.sweep:
            self.pop_screen()
        else:
            self.push_screen(SweepScreen(msg.sweep))

    async def action_quit(self) -> None:
        """q / ctrl+q: quit at once; jobs run in their own processes and go on."""
        self.exit()


def build_app(manifest_path: str | Path, queue_factory=default_queue) -> LMConsole:
    return LMConsole(manifest_path, queue_factory=queue_factory)


def run_console(manifest_path: str | Path, queue_factory=default_queue, headless: bool = False) -> int:
    """Open the console; returns the process exit code once the UI and any kept jobs are done."""
    from .lifecycle import run

    # Progress bars of datasets / hub downloads would write over the UI from job threads.
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    app = build_app(manifest_path, queue_factory)
    app.freeze_heap = True  # a console process of its own: see screens.main.freeze_heap_once
    return run(app, headless=headless)
