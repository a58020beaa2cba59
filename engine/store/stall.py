"""The stall watchdog's facts: a job's heartbeat, and whether a running run has gone quiet too long.

A job that hangs (a dead NCCL peer, a stuck data loader, a process stopped with SIGSTOP) still
holds its owner lock, so it would read as ``running`` forever. The job process therefore keeps
``heartbeat.json`` in its run directory:

* its content, written when the job starts (and again when its threshold changes):
  ``{"stall_after_s": seconds, "median_step_s": seconds or null}``;
* its modification time, touched (``os.utime``: no write, no temporary file) between optimizer
  steps at most every :data:`BEAT_EVERY_S` seconds (a quarter of the threshold when that is
  shorter): the last sign of life.

A reader (``Run.status``) turns ``running`` into ``stalled`` when the newest of that time and the
modification times of ``events.jsonl`` and ``status.json`` (every step, evaluation or log line
counts as life) is older than ``stall_after_s``. Derived when read, never written: once the job
moves again it reads as running again. Without a heartbeat (a job of an older lmconsole) the
default threshold applies to the events alone.

The threshold: ``settings.stall_minutes`` when set (fractions allowed), else the larger of
:data:`DEFAULT_STALL_S` and :data:`STEP_FACTOR` times the median time between optimizer steps.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections import deque
from pathlib import Path

from engine.files import atomic_write_json, read_json_object
from engine.tables import fmt_duration

HEARTBEAT = "heartbeat.json"
DEFAULT_STALL_S = 15 * 60.0  # no sign of life for this long is a stall, unless steps are slower than ...
STEP_FACTOR = 20  # ... this many median steps (a job with 2-minute steps is not stalled after 15 minutes)
BEAT_EVERY_S = 5.0  # a touch of the heartbeat costs one syscall; more often would say nothing more


def stall_after(stall_minutes: float, median_step_s: float | None) -> float:
    """Seconds without a sign of life after which a running job reads as stalled.

    ``stall_minutes`` > 0: that, whatever the steps take (a test sets a fraction of a minute);
    0: the larger of 15 minutes and 20 median steps.
    """
    if stall_minutes > 0:
        return stall_minutes * 60.0
    return max(DEFAULT_STALL_S, STEP_FACTOR * (median_step_s or 0.0))


class Heartbeat:
    """The job's side: :meth:`start` once, then :meth:`beat` between optimizer steps (main thread only).

    A beat costs a ``time.monotonic()`` and, at most every few seconds, one ``os.utime``. The time
    between beats is the step time whose median sets the default threshold (a beat comes before
    every optimizer step; in a distributed job rank 0 beats every few steps, so the median is of
    those intervals and the threshold is, if anything, longer).
    """

    def __init__(self, run_path: Path, stall_minutes: float = 0.0):
        self.path = Path(run_path) / HEARTBEAT
        self.stall_minutes = stall_minutes
        self.intervals: deque[float] = deque(maxlen=256)
        self._last_beat: float | None = None  # monotonic time of the previous beat
        self._touched = 0.0
        self.written_after_s: float | None = None  # the threshold heartbeat.json says

    def median_step_s(self) -> float | None:
        return statistics.median(self.intervals) if self.intervals else None

    def start(self) -> None:
        """Write the threshold (the beat clock restarts: a resume's pause is no step)."""
        self._last_beat = None
        self._write()

    def _write(self) -> None:
        median = self.median_step_s()
        after = stall_after(self.stall_minutes, median)
        atomic_write_json(self.path, {"stall_after_s": after, "median_step_s": median})
        self.written_after_s = after
        self._touched = time.monotonic()

    def beat(self) -> None:
        """A sign of life between two optimizer steps."""
        now = time.monotonic()
        if self._last_beat is not None:
            self.intervals.append(now - self._last_beat)
        self._last_beat = now
        # a quarter of the threshold at most: a short one (set for a test) never reads a healthy job as stalled
        if now - self._touched < min(BEAT_EVERY_S, (self.written_after_s or DEFAULT_STALL_S) / 4):
            return
        try:
            after = stall_after(self.stall_minutes, self.median_step_s())
            if self.written_after_s is None or abs(after - self.written_after_s) > 0.1 * self.written_after_s:
                self._write()  # slow steps raised the default threshold (rare: steps over 45 s)
            else:
                os.utime(self.path)
                self._touched = now
        except OSError:
            self._touched = now  # a full disk or a removed file: the events still count as life

    def pause_gap(self) -> None:
        """The job held (paused) between two beats: that wait is not a step."""
        self._last_beat = None


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def last_sign_of_life(run_path: Path) -> float:
    """Wall-clock time of the run's newest heartbeat, event or status change (0 when none)."""
    run_path = Path(run_path)
    return max(_mtime(run_path / HEARTBEAT), _mtime(run_path / "events.jsonl"), _mtime(run_path / "status.json"))


def threshold_s(run_path: Path) -> float:
    """The stall threshold the job wrote in its heartbeat; the default for a job that wrote none."""
    data, _ = read_json_object(Path(run_path) / HEARTBEAT)
    after = data.get("stall_after_s")
    if isinstance(after, (int, float)) and not isinstance(after, bool) and math.isfinite(after) and after > 0:
        return float(after)
    return DEFAULT_STALL_S


def stall_reason(run_path: Path, now: float | None = None) -> str:
    """Why a running run reads as stalled (one line), or ``""`` when it shows life.

    Two stats on the common path; the heartbeat's content is read only once the run is quiet for
    longer than a threshold could be short (so ``lmconsole runs`` over many live runs stays cheap).
    """
    now = time.time() if now is None else now
    last = last_sign_of_life(run_path)
    if last <= 0:
        return ""
    quiet = now - last
    if quiet <= 1.0:  # nothing sets a threshold under a second: skip reading the file
        return ""
    after = threshold_s(run_path)
    if quiet <= after:
        return ""
    return (
        f"no step, evaluation or heartbeat for {fmt_duration(quiet)} (stalled after {fmt_duration(after)}): "
        "a hung process (a lost GPU peer, a stuck data loader, a stopped process); cancel it, or look at its log"
    )
