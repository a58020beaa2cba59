"""What the commands print with: output that survives a reader going away, and progress lines.

:func:`safe_print` never raises when stdout or stderr is closed under it (``| head``, a
closed terminal); :class:`ProgressPrinter` is the event sink that ``run`` and ``attach``
turn a run's events into lines with; :func:`printable` (applied to everything a command writes,
through :class:`PrintableStream`) keeps text read from run directories and the queue from
driving the user's terminal.
"""

from __future__ import annotations

import os
import re
import sys
import time

from engine.status import Status
from engine.store.follow import progress_extra
from engine.tables import fmt_duration, fmt_num

# C0 controls but tab and newline, DEL and C1: ESC/CSI/OSC sequences retitle, clear or link the
# terminal, a carriage return overwrites what a line said. Log messages, failure reasons and notes
# come from run directories and the queue folder, which anyone sharing the box can write.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` without control characters (tab and newline kept): safe to show on a terminal."""
    return _CONTROL.sub("", text)


class PrintableStream:
    """A text stream that writes :func:`printable` text to ``stream`` (everything else is ``stream``'s).

    JSON output is unchanged by it: ``json.dumps`` escapes control characters itself."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(printable(text))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def safe_print(text: str, stream=None) -> bool:
    """Print and flush; False (and nothing raised) when the reader went away (``| head``, a closed terminal).

    A job never dies from its own output: once a stream fails it is pointed at
    /dev/null, so the interpreter's final flush stays quiet too.
    """
    stream = stream or sys.stdout
    try:
        print(text, file=stream, flush=True)
        return True
    except (BrokenPipeError, OSError, ValueError):  # ValueError: the stream was closed
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
        return False


class ProgressPrinter:
    """Turns events into short progress lines on stdout (or JSON lines with ``as_json``)."""

    def __init__(self, experiment: str, as_json: bool = False, quiet: bool = False, stream=None):
        self.exp = experiment
        self.as_json = as_json
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self._last_progress = 0.0

    def _print(self, text: str) -> None:
        if not getattr(self, "_closed", False):
            self._closed = not safe_print(text, self.stream)

    def emit(self, event) -> None:
        from engine import events as ev

        if self.as_json:
            self._print(ev.to_json(event))
            return
        if self.quiet and not isinstance(event, ev.JobFailed):
            return
        tag = f"[{self.exp}]"
        if isinstance(event, ev.StepLogged):
            parts = " ".join(f"{k} {v:.4f}" for k, v in event.parts.items())
            tps = f"{event.tokens_per_s / 1000:.1f}k tok/s" if event.tokens_per_s else ""
            self._print(
                f"{tag} step {event.step}/{event.total_steps} epoch {event.epoch:.2f} loss {event.loss:.4f} {parts} "
                f"lr {event.learning_rate:.2e} {tps} ETA {fmt_duration(event.eta_s)}"
            )
        elif isinstance(event, ev.EvalFinished):
            shown = ", ".join(
                f"{k} {fmt_num(v) if isinstance(v, float) else v}"  # ints as they are: step and example counts
                for k, v in event.metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            )
            self._print(f"{tag} eval epoch {event.epoch} ({event.split}): {shown}")
        elif isinstance(event, ev.ProgressUpdated):
            now = time.monotonic()
            if event.done >= event.total or now - self._last_progress > 2:
                self._last_progress = now
                self._print(f"{tag} {event.phase}: {event.done}/{event.total}{progress_extra(event)}")
        elif isinstance(event, ev.PhaseStarted):
            self._print(f"{tag} {event.phase}{': ' + event.detail if event.detail else ''}")
        elif isinstance(event, ev.LogEmitted):
            self._print(f"{tag} {event.level}: {event.message}" if event.level != "info" else f"{tag} {event.message}")
        elif isinstance(event, ev.CheckpointSaved):
            self._print(f"{tag} checkpoint at step {event.step}: {event.path}")
        elif isinstance(event, ev.JobFailed):
            self._print(f"{tag} FAILED: {event.reason}" + (f"\n{tag} hint: {event.hint}" if event.hint else ""))
        elif isinstance(event, ev.StatusChanged) and event.status in (Status.PAUSED, Status.CANCELLED):
            self._print(f"{tag} {event.status}{': ' + event.reason if event.reason else ''}")


def print_flags(prefix: str, run) -> None:
    """Flags on degenerate results (engine.metrics.flags), one line each."""
    from engine.metrics.flags import run_flags

    for f in run_flags(run):
        safe_print(f"{prefix}FLAG {f.metric}: {f.message}")
