"""Behaviour shared by the console's screens: job/run control and export.

Everything goes through the engine's public API: ``JobQueue.control`` /
``control_run`` for any job or run, whoever runs it. Exports run in a worker thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.binding import Binding
from textual.screen import Screen

from engine.errors import UserError
from engine.events import JobFailed
from engine.files import disk_full_message, is_disk_full
from engine.status import ACTIVE, LIVE
from engine.store.runs import read_events

from .dialogs import ConfirmDialog, ExportChoice, ExportDialog

if TYPE_CHECKING:
    from textual import getters
    from textual.notifications import SeverityLevel

    from ..appbase import ConsoleApp


def job_for_run(queue, run):
    """The latest job of the queue that runs (or will resume) ``run``, if any."""
    if queue is None or run is None:
        return None
    return queue.job_for_run(run)


def study_message(studies: list[str], added: list[str]) -> str:
    steps = list(dict.fromkeys(added))
    if not steps:
        return f"study {', '.join(studies)}: every step has a finished run (or is queued); run a step to redo it"
    return f"study {', '.join(studies)}: queued {len(steps)} steps in order: {', '.join(steps)}"


def queued_words(added: list[str], manifest) -> str:
    """``sst2-lr (12 trials), demo-sst2``: each experiment once, with its number of jobs (a sweep's trials,
    an experiment's seeds) when it has several."""
    words = []
    for name, n in Counter(added).items():  # in the order first queued
        exp = manifest.get(name) if name in manifest.names else None
        unit = "trials" if getattr(exp, "sweep", None) is not None else "jobs"
        words.append(f"{name} ({n} {unit})" if n > 1 else name)
    return ", ".join(words)


def last_failure(run) -> JobFailed | None:
    """The last JobFailed event of a run (reason, hint, traceback); None if it has none."""
    rows, _ = read_events(run.events_path, 0)
    for row in reversed(rows):
        if isinstance(row, dict) and row.get("event") == "JobFailed":
            return JobFailed(
                reason=str(row.get("reason", "")),
                hint=str(row.get("hint", "") or ""),
                traceback=str(row.get("traceback", "") or ""),
            )
    return None


class CurveViewKeys:
    """Log-y (`l`, on by default for perplexity) and EMA smoothing (`[` / `]`) of a screen's curves.

    The screen lists its plots in ``curve_plots()``; smoothing applies to per-step curves.
    """

    VIEW_BINDINGS = [
        Binding("l", "toggle_log", "Log y", tooltip="log scale on the y axes (on by default for perplexity)"),
        # in ? help, not the footer: the footer must keep ? at 80 columns
        Binding(
            "right_square_bracket", "smooth(1)", "Smooth more", show=False, tooltip="EMA smoothing of per-step curves"
        ),
        Binding(
            "left_square_bracket", "smooth(-1)", "Smooth less", show=False, tooltip="less EMA smoothing, down to none"
        ),
    ]
    log_override: bool | None = None  # None: log-y for perplexity only
    smoothing_index = 0

    def curve_plots(self) -> list:
        return []

    def auto_log(self, plot, metric: str) -> None:
        plot.set_view(log_y=self.log_override if self.log_override is not None else "perplexity" in metric)

    def action_toggle_log(self) -> None:
        from ..widgets.plots import CurvePlot

        plots: list[CurvePlot] = self.curve_plots()
        self.log_override = not (plots[-1].log_y if plots else False)
        for plot in plots:
            plot.set_view(log_y=self.log_override)  # the titles say "log"

    def action_smooth(self, delta: int) -> None:
        from ..widgets.plots import SMOOTHING

        self.smoothing_index = max(0, min(len(SMOOTHING) - 1, self.smoothing_index + delta))
        weight = SMOOTHING[self.smoothing_index]
        for plot in self.curve_plots():
            if plot.xlabel == "step":
                plot.set_view(smoothing=weight)  # the titles say "ema 0.9"; the raw curve stays, faint


class ConsoleScreen(Screen):
    """A screen with a way to say one line, confirm, control jobs and export."""

    if TYPE_CHECKING:  # self.app is this console (runtime: Textual's own property)
        app = getters.app(ConsoleApp)

    def say(self, text: str, level: str = "info") -> None:
        severity: SeverityLevel = "error" if level == "error" else "warning" if level == "warning" else "information"
        self.notify(text, severity=severity, timeout=6 if level != "error" else 10)

    @contextmanager
    def errors_said(self) -> Iterator[None]:
        """What the engine raises for the user to fix (a damaged ``runs/.queue``, a full disk) becomes
        one line on screen; the console stays up."""
        try:
            yield
        except UserError as exc:
            self.say(str(exc), "error")
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self.say(disk_full_message(exc), "error")

    def refresh_queue(self) -> None:
        """The queue's rate-limited re-read: a run feed's job stays current while this screen
        hides the main screen (which polls the queue otherwise)."""
        if self.app.queue is not None:
            _ = self.app.queue.jobs

    # -- experiments and jobs ----------------------------------------------------------
    def run_experiments(self, names: list[str], again: bool = False) -> None:
        """Queue experiments (dependencies first); one already queued or running asks before a second run."""
        with self.errors_said():
            self._run_experiments(names, again)

    def _run_experiments(self, names: list[str], again: bool) -> None:
        queue = self.app.queue
        manifest = self.app.manifest
        plan = manifest.plan(names)
        try:
            jobs = queue.submit(names, again=again)
        except UserError as exc:  # e.g. a job that fits no GPU of this machine: nothing was queued
            self.say(str(exc), "error")
            return
        added = [j.experiment for j in jobs]
        deps = [n for n in added if n not in names]
        studies = [n for n in names if manifest.get(n).task == "study"]
        if studies:  # a study queues its steps (those without a finished run), dependencies first
            self.say(study_message(studies, added), "ok" if jobs else "info")
            return
        skipped = list(queue.last_skipped)
        if skipped:

            def done(yes: bool | None) -> None:
                if yes:
                    self.run_experiments(skipped, again=True)

            self.app.push_screen(
                ConfirmDialog(
                    f"{', '.join(skipped)}: already queued or running (maybe from another console). Queue another run?",
                    yes="Queue another",
                ),
                done,
            )
        if not jobs:
            return
        msg = f"queued {queued_words([n for n in added if n in names], self.app.manifest)}".rstrip()
        if deps:
            msg += f" (dependencies first: {', '.join(deps)})"
        elif len(plan) > len(names):
            msg += " (dependencies already finished)"
        self.say(msg, "ok")

    def control(self, action: str, job=None, run=None) -> None:
        """pause (toggles resume), cancel (asks first), retry (resume a stopped run): one engine
        entry point (``JobQueue.control``) whoever runs the job."""
        with self.errors_said():
            self._control(action, job, run)

    def _control(self, action: str, job, run) -> None:
        queue = self.app.queue
        if job is None and run is not None:
            job = job_for_run(queue, run)
            if job is not None and job.status == "finished" and action == "retry":
                job = None
        if action == "cancel":
            self._cancel(job, run)
        elif action == "retry":
            self._retry(job, run)
        elif job is not None:
            self.say(queue.control(job, action))
        elif run is not None:
            self.say(queue.control_run(run, action))

    def _cancel(self, job, run) -> None:
        queue = self.app.queue
        if job is not None:
            queue.refresh()
            if job.waiting:
                deps = queue.dependants(job)
                question = f"Remove {job.experiment} from the queue?" + (
                    f" Its dependants ({', '.join(d.experiment for d in deps)}) stay blocked until it runs again (R)."
                    if deps
                    else ""
                )
            elif job.active:
                question = f"Cancel {job.experiment}? It saves a checkpoint; resume it later with R."
            else:
                self.say(f"{job.experiment} is {job.status}: nothing to cancel")
                return

            def done(yes: bool | None) -> None:
                if yes:
                    with self.errors_said():
                        self.say(queue.control(job, "cancel"))

            self.app.push_screen(ConfirmDialog(question, yes="Cancel job"), done)
            return
        if run is None:
            return
        status = run.status().get("status")
        if status not in ACTIVE:
            self.say(f"{run.experiment}/{run.run_id} is {status}: nothing to cancel")
            return

        def done_run(yes: bool | None) -> None:
            if yes:
                with self.errors_said():
                    self.say(queue.control_run(run, "cancel"))

        self.app.push_screen(
            ConfirmDialog(
                f"Cancel {run.experiment} (running in another process)? It saves a checkpoint.", yes="Cancel job"
            ),
            done_run,
        )

    def _retry(self, job, run):
        """R: a stopped job goes back to the queue as the same job (resuming its run); returns the job."""
        queue = self.app.queue
        if job is not None:
            message = queue.control(job, "retry")
            ok = message.startswith(("resuming", "queued"))
            self.say(message, "ok" if ok else ("error" if "no longer" in message else "info"))
            return job if ok else None
        if run is None:
            return None
        message = queue.control_run(run, "retry")
        ok = message.startswith("resuming")
        self.say(message, "ok" if ok else ("error" if "not in this manifest" in message else "info"))
        return job_for_run(queue, run) if ok else None

    # -- export ---------------------------------------------------------------------------
    def ask_export(self, what: str, export_fn) -> None:
        """Ask folder and formats, then run ``export_fn(folder: Path, formats) -> [paths]`` in a thread."""

        def done(choice: ExportChoice | None) -> None:
            if choice is not None:
                self._export(what, export_fn, choice)

        self.app.push_screen(ExportDialog(what), done)

    @work(thread=True, exit_on_error=False, group="export")
    def _export(self, what: str, export_fn, choice: ExportChoice) -> None:
        folder = Path(choice.folder).expanduser().resolve()
        try:
            written = export_fn(folder, choice.formats)
        except Exception as exc:  # noqa: BLE001 - show it, never crash the console
            self.app.call_from_thread(self.say, f"export failed: {exc}", "error")
            return
        from engine.study.export import export_folder

        folder = export_folder(written) or folder  # each export makes its own folder under the chosen one
        self.app.last_export = (folder, written)
        self.app.call_from_thread(self.say, f"exported {what}: {len(written)} files to {folder}", "ok")

    # -- run hygiene: tags, note, archive, delete (engine.store.meta) ------------------------------
    def edit_runs(self, action: str, rows, done=None) -> None:
        """``action`` tags | note | archive | delete on ``rows`` (listing ``RunRow``s); ``done()`` after a change."""
        from engine.store.meta import MetaError, delete_run, set_archived

        names = rows[0].key if len(rows) == 1 else f"{len(rows)} runs"

        def apply(fn, ok: str) -> None:
            try:
                for r in rows:
                    fn(r)
            except MetaError as exc:
                self.say(str(exc), "error")
            else:
                self.say(ok, "ok")
            if done:
                done()

        if action == "tags":
            self._ask_tags(rows, names, apply)
        elif action == "note":
            self._ask_note(rows, names, apply)
        elif action == "archive":
            restore = all(r.archived for r in rows)
            apply(
                lambda r: set_archived(r.run, not restore),
                f"{'restored' if restore else 'archived'} {names}" + ("" if restore else " (A shows archived runs)"),
            )
        elif action == "delete":
            busy = [r for r in rows if r.status in LIVE]
            if busy:
                self.say(f"{busy[0].key} is {busy[0].status}: cancel it before deleting", "error")
                return

            def confirmed(yes: bool | None) -> None:
                if yes:
                    apply(lambda r: delete_run(r.run), f"deleted {names}")

            self.app.push_screen(
                ConfirmDialog(
                    f"Delete {names} from disk, with checkpoints and model? This cannot be undone.", yes="Delete"
                ),
                confirmed,
            )

    def _ask_tags(self, rows, names: str, apply) -> None:
        """One run: the typed words replace its tags; several (or +tag/-tag): add and remove."""
        from engine.store.meta import MetaError, change_tags, parse_tag_changes, set_tags

        from .dialogs import InputDialog

        def got_tags(text):
            if text is None:
                return
            words = text.split()
            if len(rows) == 1 and not any(w[:1] in "+-" for w in words):
                apply(lambda r: set_tags(r.run, words), f"{names}: tags {' '.join(sorted(set(words))) or '(none)'}")
            else:
                try:
                    add, remove = parse_tag_changes(words)
                except MetaError as exc:
                    self.say(str(exc), "error")
                    return
                apply(lambda r: change_tags(r.run, add, remove), f"{names}: tags changed")

        current = " ".join(rows[0].tags) if len(rows) == 1 else ""
        hint = (
            "space-separated tags (this replaces them); +tag adds, -tag removes"
            if len(rows) == 1
            else "+tag adds, -tag removes (on every selected run)"
        )
        self.app.push_screen(InputDialog(f"Tags of {names}", current, hint), got_tags)

    def _ask_note(self, rows, names: str, apply) -> None:
        from engine.store.meta import set_note

        from .dialogs import InputDialog

        def got_note(text):
            if text is not None:
                apply(
                    lambda r: set_note(r.run, text),
                    f"{names}: " + ("note saved" if text.strip() else "note cleared"),
                )

        self.app.push_screen(
            InputDialog(f"Note on {names}", rows[0].note if len(rows) == 1 else "", "enter saves; empty clears"),
            got_note,
        )
