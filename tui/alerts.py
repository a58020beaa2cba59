"""The console's alerts: a toast when a job finishes (a sweep trial only when it fails or stalls),
fails, stops on NaN or stalls, when a sweep's or a study's last job ends, and with
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
from collections.abc import Callable, Iterable
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


Group = tuple[str, str]  # ("sweep", experiment) or ("study", study name): jobs that end together


class JobAlerts:
    """What changed since the last poll, for the jobs of one console (see the module doc).

    ``groups`` (optional) names the sweep or studies a job belongs to: when a job of a group ends and
    every job of that group in the queue has ended, the group's end is told too: ``sweep done`` (its
    trials ended, however) or ``study done`` (every one of its jobs finished).
    """

    def __init__(self, groups: Callable[[object], list[Group]] | None = None) -> None:
        self._seen: dict[int, str] | None = None  # job id -> the kind last told (or "" for none)
        self._done: set[int] = set()  # the jobs that had ended at the last poll
        self._groups = groups

    def changes(self, jobs: Iterable) -> list[Alert]:
        """Alerts for the jobs whose status became finished, failed (NaN) or stalled since the last call,
        then for the sweeps and studies those jobs completed."""
        jobs = [job for job in jobs if job.id >= 0]  # a quarantined entry: no job
        now: dict[int, str] = {}
        out: list[Alert] = []
        for job in jobs:
            kind = run_kind({"status": job.status, "reason": job.reason}) or ""
            now[job.id] = kind
            if self._seen is not None and kind and self._seen.get(job.id) != kind:
                if kind == "finished" and self._in_sweep(job):
                    continue  # a dozen trials would bury the screen in toasts: their sweep's end is told
                words = KINDS[kind][0]
                reason = f": {job.reason}" if job.reason and kind != "finished" else ""
                out.append(Alert(kind, f"{job.experiment} {words}", f"#{job.id} {job.experiment} {words}{reason}"))
        if self._groups is not None and self._seen is not None:  # a pruned trial ends with no alert of its own
            out += self._group_ends(jobs, [j for j in jobs if j.done and j.id not in self._done])
        self._seen = now
        self._done = {j.id for j in jobs if j.done}
        return out

    def _in_sweep(self, job) -> bool:
        return self._groups is not None and any(kind == "sweep" for kind, _ in self._groups(job))

    def _group_ends(self, jobs: list, ended: list) -> list[Alert]:
        assert self._groups is not None
        told: list[Alert] = []
        for group in dict.fromkeys(g for job in ended for g in self._groups(job)):
            members = [j for j in jobs if group in self._groups(j)]
            if not all(j.done for j in members):
                continue  # more of it is still to come
            kind, name = group
            finished = sum(j.status == "finished" for j in members)
            if kind == "sweep":
                text = f"{name} sweep done: {finished} of {len(members)} trials finished"
                told.append(Alert("sweep_done", f"{name} sweep done", text))
            elif finished == len(members):
                told.append(Alert("study_done", f"{name} study done", f"{name} study done: {finished} jobs finished"))
        return told


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
