"""Behaviour shared by the console's screens: job/run control, export, opening runs.

Everything goes through the engine's public API: ``JobQueue.control`` /
``control_run`` for any job or run, whoever runs it. Exports run in a worker thread.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.screen import Screen

from .dialogs import ConfirmDialog, ExportChoice, ExportDialog


def job_for_run(queue, run):
    """The latest job of the queue that runs (or will resume) ``run``, if any."""
    if queue is None or run is None:
        return None
    return queue.job_for_run(run)


class ConsoleScreen(Screen):
    """A screen with a way to say one line, confirm, control jobs and export."""

    def say(self, text: str, level: str = "info") -> None:
        severity = {"error": "error", "warning": "warning"}.get(level, "information")
        self.notify(text, severity=severity, timeout=6 if level != "error" else 10)

    # -- experiments and jobs ----------------------------------------------------------
    def run_experiments(self, names: list[str], again: bool = False) -> None:
        """Queue experiments (dependencies first); one already queued or running asks before a second run."""
        queue = self.app.queue
        manifest = self.app.manifest
        plan = manifest.plan(names)
        jobs = queue.submit(names, again=again)
        added = [j.experiment for j in jobs]
        deps = [n for n in added if n not in names]
        skipped = list(queue.last_skipped)
        if skipped:
            def done(yes: bool | None) -> None:
                if yes:
                    self.run_experiments(skipped, again=True)

            self.app.push_screen(ConfirmDialog(
                f"{', '.join(skipped)}: already queued or running (maybe from another console). "
                "Queue another run?", yes="Queue another"), done)
        if not jobs:
            return
        msg = f"queued {', '.join(n for n in added if n in names)}" if any(n in names for n in added) else "queued"
        if deps:
            msg += f" (dependencies first: {', '.join(deps)})"
        elif len(plan) > len(names):
            msg += " (dependencies already finished)"
        self.say(msg, "ok")

    def control(self, action: str, job=None, run=None) -> None:
        """pause (toggles resume), cancel (asks first), retry (resume a stopped run): one engine
        entry point (``JobQueue.control``) whoever runs the job."""
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
            job.refresh()
            if job.waiting:
                deps = queue.dependants(job)
                question = f"Remove {job.experiment} from the queue?" + (
                    f" Its dependants ({', '.join(d.experiment for d in deps)}) stay blocked until it runs again (R)."
                    if deps else "")
            elif job.active:
                question = f"Cancel {job.experiment}? It saves a checkpoint; resume it later with R."
            else:
                self.say(f"{job.experiment} is {job.status}: nothing to cancel")
                return

            def done(yes: bool | None) -> None:
                if yes:
                    self.say(queue.control(job, "cancel"))

            self.app.push_screen(ConfirmDialog(question, yes="Cancel job"), done)
            return
        if run is None:
            return
        status = run.status().get("status")
        if status not in ("running", "paused"):
            self.say(f"{run.experiment}/{run.run_id} is {status}: nothing to cancel")
            return

        def done_run(yes: bool | None) -> None:
            if yes:
                self.say(queue.control_run(run, "cancel"))

        self.app.push_screen(
            ConfirmDialog(f"Cancel {run.experiment} (running in another process)? It saves a checkpoint.", yes="Cancel job"),
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
        self.app.last_export = (folder, written)
        self.app.call_from_thread(self.say, f"exported {what}: {len(written)} files to {folder}", "ok")

    # -- navigation --------------------------------------------------------------------------
    def open_run(self, run=None, job=None) -> None:
        from .run import RunScreen

        if job is None and run is not None:
            job = job_for_run(self.app.queue, run)
        self.app.push_screen(RunScreen(run=run, job=job))
