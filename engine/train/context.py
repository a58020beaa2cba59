"""The job context a task and the training loop are handed, as a protocol.

The job layer builds the real one (:class:`engine.job.runner.JobContext`) and sits above
this one, so the loop and the tasks name only :class:`TaskContext`: what they read and
call, nothing more. mypy checks that the job's context satisfies it where the runner
hands it to a task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from engine.events import Event
from engine.manifest import Experiment, Manifest
from engine.store.runs import Run, RunStore
from engine.store.writer import EventWriter


class TaskContext(Protocol):
    """One job as a task sees it: its experiment, the run it writes, and the control channel."""

    @property
    def manifest(self) -> Manifest:
        """The manifest the experiment comes from (its ``settings``: the data mirror)."""
        ...

    @property
    def exp(self) -> Experiment: ...

    @property
    def run(self) -> Run: ...

    @property
    def writer(self) -> EventWriter:
        """Tables, and the rewind of a resume; events go through :meth:`emit`."""
        ...

    @property
    def store(self) -> RunStore:
        """All runs: where a ``run:<experiment>`` model is found."""
        ...

    @property
    def resume(self) -> bool:
        """This attempt continues the run from its last checkpoint."""
        ...

    start_model: str  # a task that starts from another run's model names it ("experiment/run id")
    # Why training should stop at the next epoch boundary ("" = go on): a sweep's pruner sets it
    # when it hears an evaluation (the job layer's trial reporter); the loop raises ``Pruned``.
    prune_reason: str

    def emit(self, event: Event) -> None: ...

    def log(self, message: str, level: str = "info") -> None: ...

    def poll(self, heartbeat: Callable[[], object] | None = None) -> None:
        """Between optimizer steps: holds while paused (calling ``heartbeat`` about every second);
        raises ``Cancelled`` (or ``Interrupted``) to stop."""
        ...

    def announce_start(self) -> None:
        """Emit an attempt's first events (running, RunStarted): again after a resume's rewind cut them off."""
        ...
