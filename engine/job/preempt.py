"""Stop signals: SIGTERM, SIGINT and SIGUSR1 end a job cleanly at the next optimizer step.

Slurm preemption, ``systemctl stop``, ``kill`` and Ctrl-C send these. The
handler only records the signal; the training loop sees it at its next step
boundary (:meth:`engine.job.runner.JobContext.poll`), saves a checkpoint and the run
ends as ``interrupted``, resumable with ``lmconsole run X --resume``. A second
signal while the first is being handled ends the process at once (the default
action of that signal), for the user who really means "now". A signal after the
last step lets the job finish (its results are written) and is kept for the
caller (:func:`late_stop`), which then starts nothing more and exits normally.

Python delivers signals to the main thread only: a job run in a thread (the
console's in-process jobs) installs nothing and is stopped by the console.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")

# A stop signal that came after a job's last step boundary (during its final evaluation or model
# save): the job finished anyway, and whatever ran it starts nothing more. Process-wide, like the
# signal itself.
_late: list[int] = []


def record_late_stop(signum: int) -> None:
    """Remember a stop signal that arrived too late to stop a job that then finished."""
    _late.append(signum)


def late_stop() -> str:
    """The name of a stop signal :func:`record_late_stop` kept (``""`` when none): stop after this job."""
    return signal.Signals(_late[-1]).name if _late else ""


class StopSignals:
    """Installs the stop handlers for the duration of one job (a context manager)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}  # what signal.signal returned: a handler, SIG_DFL/SIG_IGN or None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def install(self) -> bool:
        """Install the handlers; False (and nothing installed) outside the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:  # ignored on purpose (nohup, `&`): keep
                self._previous[sig] = signal.signal(sig, self._handle)
        return True

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum  # the loop checks this at its next step boundary
            return
        # The second signal: stop now, the way this signal stops a process by default.
        self.restore()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def __enter__(self) -> StopSignals:
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        self.restore()


class ForwardSignals(StopSignals):
    """For a launcher's parent (torchrun/accelerate): pass a stop signal on to the launcher as SIGTERM.

    The launcher hands SIGTERM to every rank; rank 0 checkpoints at the next step
    boundary and all ranks stop there. The parent keeps following the run
    directory until the launcher exits. A second signal ends the parent at once.
    """

    def __init__(self, proc):
        super().__init__()
        self.proc = proc

    def _handle(self, signum, frame) -> None:
        first = self.signum is None
        super()._handle(signum, frame)
        if first and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
