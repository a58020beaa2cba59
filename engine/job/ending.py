"""Recording a job's end on a run that no live job is writing.

A job records its own end (:func:`engine.job.runner.run_experiment`). Where it could not
(a launcher's processes died before rank 0 wrote why, Slurm refused or lost the job, a queued
job's manifest no longer loads) or where its end needs a word more (the Slurm job side on a
preemption), the process that started or followed it writes the end: :func:`record_end` takes
the run's owner lock for the moment it writes, so it never writes beside a live job.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.events import Event, EventSink, JobFailed, StatusChanged
from engine.store.runs import Run, RunWriter


def failure_events(reason: str, hint: str = "", traceback: str = "") -> tuple[JobFailed, StatusChanged]:
    """A failed end: :class:`JobFailed`, then the status ``failed`` whose reason names the hint."""
    return (
        JobFailed(reason=reason, hint=hint, traceback=traceback),
        StatusChanged(status="failed", reason=reason + (f" (hint: {hint})" if hint else "")),
    )


def record_end(run: Run, events: Sequence[Event], sinks: Sequence[EventSink] = ()) -> None:
    """Write ``events`` into ``run``, each passed to ``sinks`` too.

    Opening the run's writer takes its owner lock: it raises ``RunUnavailable`` while a live job owns the run.
    """
    writer = RunWriter(run).open()
    try:
        for ev in events:
            writer.emit(ev)
            for s in sinks:
                s.emit(ev)
    finally:
        writer.close()
