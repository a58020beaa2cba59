"""The console's alerts: a toast when a job finishes, fails, stops on NaN or stalls, and with
``settings.console_alerts`` a terminal bell and a desktop notification escape. No Textual here.

:class:`JobAlerts` compares each poll of the queue with the last one and turns the changes this
console saw into :class:`Alert` values (a job already ended when the console opened is no news).
:func:`escapes` writes the terminal side: ``bell`` is BEL; ``osc9`` is ``ESC ] 9 ; text BEL``
(iTerm2, WezTerm, kitty, Windows Terminal...); ``osc777`` is ``ESC ] 777 ; notify ; title ; body BEL``
(foot, Konsole, GNOME's VTE terminals...). Inside tmux an escape reaches the outer terminal only
wrapped in tmux's passthrough (``ESC P tmux; ...  ESC \\``, each ESC doubled), which tmux passes on
when ``allow-passthrough`` is on (``set -g allow-passthrough on``); the bell needs no wrapping.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from engine.job.notify import KINDS, run_kind

ALERT_CHOICES = ("bell", "osc9", "osc777")  # settings.console_alerts
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # control characters would end (or forge) an escape


@dataclass(frozen=True)
class Alert:
    """One change worth telling: its kind (a key of engine.job.notify.KINDS), a title and a line."""

    kind: str
    title: str
    text: str

    @property
    def severity(self) -> str:
        """Textual's toast severity for it."""
        return {"failure": "error", "warning": "warning"}.get(KINDS[self.kind][1], "information")


class JobAlerts:
    """What changed since the last poll, for the jobs of one console (see the module doc)."""

    def __init__(self) -> None:
        self._seen: dict[int, str] | None = None  # job id -> the kind last told (or "" for none)

    def changes(self, jobs: Iterable) -> list[Alert]:
        """Alerts for the jobs whose status became finished, failed (NaN) or stalled since the last call."""
        now: dict[int, str] = {}
        out: list[Alert] = []
        for job in jobs:
            if job.id < 0:  # a quarantined entry: no job
                continue
            kind = run_kind({"status": job.status, "reason": job.reason}) or ""
            now[job.id] = kind
            if self._seen is not None and kind and self._seen.get(job.id) != kind:
                words = KINDS[kind][0]
                reason = f": {job.reason}" if job.reason and kind != "finished" else ""
                out.append(Alert(kind, f"{job.experiment} {words}", f"#{job.id} {job.experiment} {words}{reason}"))
        self._seen = now
        return out


def _clean(text: str, limit: int = 200) -> str:
    return _UNSAFE.sub(" ", text)[:limit]


def escapes(alerts: Iterable[str], alert: Alert, in_tmux: bool | None = None) -> str:
    """The bytes (as text) to write to the terminal for ``alert`` under ``settings.console_alerts``."""
    in_tmux = bool(os.environ.get("TMUX")) if in_tmux is None else in_tmux
    out = []
    for what in alerts:
        if what == "bell":
            out.append("\a")
            continue
        if what == "osc9":
            seq = f"\x1b]9;{_clean(alert.text)}\x07"
        elif what == "osc777":
            seq = f"\x1b]777;notify;{_clean(alert.title).replace(';', ',')};{_clean(alert.text)}\x07"
        else:
            continue
        out.append("\x1bPtmux;" + seq.replace("\x1b", "\x1b\x1b") + "\x1b\\" if in_tmux else seq)
    return "".join(out)
