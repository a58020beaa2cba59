"""The jobs pane: the queue of the runs directory (every console's jobs), with progress
and the one-line reason of failures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from engine.status import PROBLEM

from ..data import progress_text, short_id, status_text
from .panes import Note, TablePane

if TYPE_CHECKING:
    from engine.queue.jobqueue import Job


class JobsPane(TablePane):
    COLUMNS = ("#", "experiment", "status", "progress", "run / note")
    EMPTY = "no jobs yet: press 1, pick an experiment and press r to run it"

    BINDINGS = [
        Binding(
            "p", "control('pause')", "Pause/resume", tooltip="a running job holds at its next step; p again resumes"
        ),
        Binding("c", "control('cancel')", "Cancel", tooltip="asks first; a running job saves a checkpoint"),
        Binding("R", "control('retry')", "Retry", tooltip="run an ended job again, from its last checkpoint if any"),
        Binding("K", "move(-1)", "Move up", tooltip="a waiting job starts earlier"),
        Binding("J", "move(1)", "Move down", tooltip="a waiting job starts later"),
        Binding("shift+up", "move(-1)", "Move up", show=False, tooltip="a waiting job starts earlier"),
        Binding("shift+down", "move(1)", "Move down", show=False, tooltip="a waiting job starts later"),
    ]

    @dataclass
    class ControlRequested(Message):
        action: str  # pause | cancel | retry (pause toggles pause/resume)
        job: Job

    @dataclass
    class MoveRequested(Message):
        job: Job
        delta: int

    @dataclass
    class OpenRequested(Message):
        job: Job

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.jobs: dict[str, Job] = {}

    def set_jobs(self, jobs) -> None:
        self.jobs = {str(j.id): j for j in jobs}
        rows = []
        for job in jobs:
            # why it stopped (or is stuck); an interrupted job shows its run; a queued one why it waits,
            # when the scheduler said (GPU memory)
            note = job.reason if job.status in PROBLEM | {"stalled"} or job.status == "queued" else ""
            if not note and job.run is not None:
                note = short_id(job.run.run_id)
            if job.status == "cancelled":  # the reason ("cancelled by request; resume to ...") is too long here
                note = f"{note} · R retries".strip(" ·") if job.run is not None else job.reason
            if job.resume is not None and job.status == "queued":
                note = f"resume {short_id(job.resume.run_id)}"
            if getattr(job, "devices", ()) and job.active:
                note = f"gpu {','.join(map(str, job.devices))} {note}".strip()
            # the phase of an ended job is stale, except where it failed
            phase = job.phase if job.active or job.status == "failed" else None
            progress = (
                progress_text(job.metrics.last_step, phase, job.status == "running") if job.status != "queued" else ""
            )
            # a quarantined entry's id is only its place among the set-apart entries: no job number to show
            shown_id = "--" if job.quarantined else str(job.id)
            rows.append(
                (
                    str(job.id),
                    [shown_id, job.experiment, status_text(job.status), progress, note],
                    f"{job.experiment} {job.status}",
                )
            )
        self.set_rows(rows)

    def current_job(self) -> Job | None:
        return self.jobs.get(self.cursor_key or "")

    def action_control(self, action: str) -> None:
        job = self._controllable()
        if job is not None:
            self.post_message(self.ControlRequested(action, job))

    def action_move(self, delta: int) -> None:
        job = self._controllable()
        if job is None:
            return
        self.post_message(self.MoveRequested(job, delta))

    def _controllable(self) -> Job | None:
        """The job under the cursor, unless it is a quarantined entry (shown, never run nor controlled)."""
        job = self.current_job()
        if job is not None and job.quarantined:
            self.post_message(Note(f"{job.experiment}: {job.reason}; it is never run", "error", source=self.id or ""))
            return None
        return job

    @on(DataTable.RowSelected)
    def _open(self, event: DataTable.RowSelected) -> None:
        event.stop()
        job = self.jobs.get(event.row_key.value or "")
        if job is not None:
            self.post_message(self.OpenRequested(job))

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        job = self.jobs.get(event.row_key.value or "")
        if job is None:
            return
        if job.quarantined:
            self.post_message(Note(f"{job.experiment}: {job.reason}", "error", source=self.id or ""))
        elif (job.status in PROBLEM or job.status == "cancelled") and job.reason:
            self.post_message(
                Note(
                    f"#{job.id} {job.experiment} {job.status}: {job.reason}",
                    "error" if job.status in PROBLEM else "info",
                    source=self.id or "",
                )
            )
        else:
            why = f": {job.reason}" if job.status == "queued" and job.reason else ""
            self.post_message(Note(f"#{job.id} {job.experiment}: {job.status}{why}", source=self.id or ""))
