"""The scheduler's stall watchdog: a job that stalls is told about by the scheduler, once per stall.

A stalled job (:mod:`engine.store.stall`: no step, evaluation or heartbeat for longer than its
threshold) cannot tell anyone itself, so the scheduler, which polls the queue anyway, sends the
notification (``settings.notify``) and writes a line to its log. ``runs/.queue/stalls.json``
remembers which stall was told (``{run: the job's last sign of life}``), so a scheduler that
restarts does not tell it again, and a job that moves and stalls once more is told again.
The folder is shared: a damaged or foreign ``stalls.json`` reads as empty (at worst a stall is
told twice).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

from engine.files import atomic_write_json, read_json_object
from engine.job.notify import notify_run
from engine.queue.entry import EntryState, QueueState
from engine.queue.queuefile import QueueFile
from engine.store.runs import Run, RunStore
from engine.store.stall import last_sign_of_life

STALLS = "stalls.json"


class StallWatch:
    """What the scheduler has told about stalls (see the module doc); :meth:`check` once per pass."""

    def __init__(self, queue_file: QueueFile):
        self.path = queue_file.dir / STALLS
        data, _ = read_json_object(self.path)
        self.told: dict[str, float] = {
            k: float(v)
            for k, v in data.items()
            if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        }

    def check(self, state: QueueState, statuses: Mapping[int, tuple[str, str]], store: RunStore, urls=()) -> list[str]:
        """Tell ``urls`` about each job that stalled since the last pass; returns a log line per stall told."""
        lines = []
        stalled = {}
        for e in state.jobs:
            if e.state is not EntryState.STARTED or not e.run or statuses.get(e.id, ("",))[0] != "stalled":
                continue
            run = Run(store.root / e.run)
            life = last_sign_of_life(run.path)
            stalled[e.run] = life
            if self.told.get(e.run) == life:
                continue  # this stall was told already
            reason = statuses[e.id][1]
            notify_run(urls, run, {"status": "stalled", "reason": reason})
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            lines.append(f"{stamp} job {e.id} {e.experiment} stalled: {reason}")
        if stalled != self.told:  # forget stalls that ended, remember the new ones
            self.told = stalled
            try:
                atomic_write_json(self.path, self.told)
            except OSError:
                pass  # remembered in memory: told once while this scheduler lives
        return lines
