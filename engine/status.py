"""The one status vocabulary of runs and jobs, shared by engine, CLI and console.

A *run* (a directory under ``runs/``) is queued, running, paused, finished,
failed, cancelled, interrupted (its owner died) or pruned (a sweep's trial that its
pruner stopped at an epoch boundary: ended as the sweep asked, its results so far kept); a running
run whose process has shown no sign of life for too long reads as ``stalled`` (derived when read,
never written: :mod:`engine.store.stall`). A *job* (an entry of the queue on disk) adds
``blocked`` (a dependency did not finish). Every module
tests membership in the sets below instead of keeping its own tuple of words.
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    BLOCKED = "blocked"
    PRUNED = "pruned"
    STALLED = "stalled"

    def __str__(self) -> str:  # "running", not "Status.RUNNING", in messages and JSON
        return self.value


STATUSES = tuple(s.value for s in Status)
ACTIVE = frozenset({"running", "paused", "stalled"})  # a live process holds the run (a stalled one too)
# nothing more happens by itself
FINAL = frozenset({"finished", "failed", "cancelled", "interrupted", "blocked", "pruned"})
RESUMABLE = frozenset({"failed", "cancelled", "interrupted"})  # resume continues from the last checkpoint
STOPPED = frozenset({"failed", "cancelled", "interrupted", "blocked"})  # final but not finished: blocks dependants

# Sets that differ from the four above on purpose, each named for why:
RUN_FINAL = FINAL - {"blocked"}  # how a run directory ends; only a queue entry is ever blocked
LIVE = ACTIVE | {"queued"}  # a run not over yet: it may still change by itself (exports mark it)
WAITING = frozenset({"queued", "blocked"})  # a queue entry that has not started (and may still)
CLEAN_EXIT = frozenset({"finished", "cancelled", "pruned"})  # ended as asked: a job process exits 0
SATISFIED = frozenset({"finished", "pruned"})  # a dependency that lets its dependants start (a sweep's trials)
UNEXPECTED = STOPPED - {"cancelled"}  # stopped without being asked: the reason is news (a cancel's is not)
ENDED = RUN_FINAL - {"interrupted"}  # a run ended for good (an interrupted one is resumed)
PROBLEM = frozenset({"failed", "blocked"})
# the runs whose status reason is shown beside them: why they stopped (a finished run has one when
# training stopped before its end, as early stopping does)
REASON_SHOWN = STOPPED | {"finished"}  # needs the user: shown as errors, counted as failed steps
