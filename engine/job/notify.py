"""Notifications that reach the user away from the screen: ``settings.notify``, through Apprise.

Sent by the process that sees the event, so no console has to be open: a job process when its
job finishes, fails or stops on a NaN loss (:func:`notify_run_end`, called by
``engine.job.runner.run_experiment``), and when it finished the last step of a study (the queue's
job process, or ``lmconsole run <study>``: :func:`study_details`); the scheduler when a job stalls
(the job itself is stuck); a sweep when it is done (:func:`notify`, the one entry point for any
other sender).

Each message goes out in a background thread with Apprise's short socket timeouts (4 s to
connect, 4 s to read, per URL): a dead server never blocks or fails a job. A job process waits
at most :data:`WAIT_S` for its messages before it exits (:func:`wait_sent`). Every title and body
is scrubbed of Hugging Face tokens (the environment's, the stored login's, anything token-like)
before it leaves. Apprise is an optional dependency (``pip install 'lmconsole[notify]'``): without
it a job says so once in its log and carries on.
"""

from __future__ import annotations

import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from engine.secrets import hf_token, redact
from engine.store.listing import primary_result
from engine.tables import fmt_num

EXTRA_HINT = "pip install 'lmconsole[notify]'"
WAIT_S = 10.0  # how long an ending job process waits for its messages (two slow URLs at Apprise's 4 + 4 s)

# event kind -> (the words after the experiment's name in the title, Apprise's notify type)
KINDS: dict[str, tuple[str, str]] = {
    "finished": ("finished", "success"),
    "failed": ("failed", "failure"),
    "nan": ("stopped: the loss became NaN/inf", "failure"),
    "stalled": ("stalled", "warning"),
    "sweep_done": ("sweep done", "success"),
    "study_done": ("study done", "success"),
    "test": ("test notification", "info"),
}
NAN_MARK = "loss became NaN/inf"  # how the training loop's NaN stop begins its reason (engine/train/loop.py)

_pending: list[threading.Thread] = []
_lock = threading.Lock()


@dataclass(frozen=True)
class Notice:
    """One message: its kind (a key of :data:`KINDS`), title and body, already scrubbed."""

    kind: str
    title: str
    body: str


def scrub(text: str) -> str:
    """``text`` without any Hugging Face token: the environment's and the stored login's, and token-like words."""
    text = redact(text)
    try:
        token = hf_token()
    except Exception:  # noqa: BLE001 - a broken huggingface_hub install must not stop a message
        token = None
    if token and len(token) >= 8:
        text = text.replace(token, "<redacted>")
    return text


def make_notice(kind: str, subject: str, details: str = "") -> Notice:
    """A scrubbed :class:`Notice`: ``"<subject> <what happened>"`` and ``details`` as its body."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}; one of {', '.join(KINDS)}")
    words, _ = KINDS[kind]
    host = socket.gethostname()
    body = (details.rstrip() + "\n" if details.strip() else "") + f"host {host}"
    return Notice(kind=kind, title=scrub(f"lmconsole: {subject} {words}"), body=scrub(body))


def send(urls, notice: Notice) -> list[str]:
    """Send ``notice`` to every URL now (in this thread); returns one line per URL that failed.

    A line names the URL by its scheme only: the rest of an Apprise URL often holds a secret.
    """
    urls = [u for u in urls if u]
    if not urls:
        return []
    try:
        import apprise
    except ImportError:
        return [f"notifications need Apprise: {EXTRA_HINT}"]
    problems = []
    for url in urls:
        scheme = url.split("://", 1)[0] + "://" if "://" in url else "(no scheme)"
        box = apprise.Apprise()
        try:
            if not box.add(url):
                problems.append(f"{scheme} is not a URL Apprise understands (see its wiki for the services)")
                continue
            ok = box.notify(title=notice.title, body=notice.body, notify_type=KINDS[notice.kind][1])
        except Exception as exc:  # noqa: BLE001 - a plugin's bug must not end the sender
            problems.append(f"{scheme} failed: {type(exc).__name__}")
            continue
        if not ok:
            problems.append(f"{scheme} was not reached (the service refused it or did not answer in time)")
    return problems


def send_later(urls, notice: Notice) -> threading.Thread | None:
    """Send in a background thread (daemon: it never keeps a process alive); None when there is nothing to send.

    Failures go to this process's stderr (a job's log), one line each, never raised.
    """
    urls = tuple(u for u in urls if u)
    if not urls:
        return None

    def work() -> None:
        for line in send(urls, notice):
            print(f"notify ({notice.kind}): {line}", file=sys.stderr, flush=True)

    thread = threading.Thread(target=work, name=f"notify-{notice.kind}", daemon=True)
    with _lock:
        _pending[:] = [t for t in _pending if t.is_alive()]
        _pending.append(thread)
    thread.start()
    return thread


def notify(urls, kind: str, subject: str, details: str = "") -> threading.Thread | None:
    """Tell the user about ``kind`` (``finished``, ``failed``, ``nan``, ``stalled``, ``sweep_done``,
    ``study_done``, ``test``) of ``subject`` (an experiment, a sweep, a study) through ``urls``
    (``settings.notify``), in the background. Never raises for a delivery problem.

    ``details``: the body (what a sweep found, the best trial...); scrubbed like the title.
    """
    return send_later(urls, make_notice(kind, subject, details))


def wait_sent(timeout: float = WAIT_S) -> bool:
    """Wait for this process's messages still on their way, at most ``timeout`` seconds in all; True when all left."""
    import time

    deadline = time.monotonic() + timeout
    with _lock:
        threads = list(_pending)
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)


def run_kind(status: dict) -> str | None:
    """The notification kind of a run's (derived) status, or None when its end is no news (cancelled, running)."""
    word = status.get("status")
    if word == "finished":
        return "finished"
    if word == "failed":
        return "nan" if NAN_MARK in str(status.get("reason", "")) else "failed"
    if word == "stalled":
        return "stalled"
    return None


def run_details(run, status: dict) -> str:
    """The body of a run's notice: the run, its reason (and hint) or its headline result."""
    lines = [f"run {run.experiment}/{run.run_id}"]
    reason = str(status.get("reason", "") or "")
    if status.get("status") == "finished":
        head = primary_result(run.results())
        if head is not None:
            lines.append(f"{head[0]} {fmt_num(head[1])}")
    elif reason:
        lines.append(reason)
    hint = str(status.get("hint", "") or "")
    if hint:
        lines.append(hint)
    lines.append(f"folder {Path(run.path).resolve()}")
    return "\n".join(lines)


def notify_run(urls, run, status: dict | None = None) -> threading.Thread | None:
    """Tell ``urls`` how ``run`` stands (finished, failed, NaN stop, stalled); None when that is no news."""
    status = run.status() if status is None else status
    kind = run_kind(status)
    if kind is None:
        return None
    return notify(urls, kind, run.experiment, run_details(run, status))


def studies_with(manifest, experiment: str) -> list[str]:
    """The studies of ``manifest`` that ``experiment`` is a step of (or a dependency of a step)."""
    return [e.name for e in manifest.experiments if e.task == "study" and experiment in manifest.job_plan([e.name])]


def study_details(manifest, store, study: str) -> str | None:
    """The body of a "study done" notice, a line per step with its headline result; None while the
    latest run of any step has not finished (the study is not done)."""
    lines = []
    for name in manifest.job_plan([study]):
        run = store.latest(name)
        if run is None or run.status().get("status") != "finished":
            return None
        head = primary_result(run.results())
        lines.append(f"{name}: " + (f"{head[0]} {fmt_num(head[1])}" if head is not None else "finished"))
    return "\n".join(lines)


def notify_run_end(settings, run) -> None:
    """A job's end, sent by its own process, which then waits (at most :data:`WAIT_S`) for the message to leave."""
    urls = getattr(settings, "notify", ())
    if not urls:
        return
    try:
        if notify_run(urls, run, run.raw_status()) is not None:
            wait_sent()
    except Exception as exc:  # noqa: BLE001 - telling the user must never fail the job it tells about
        print(f"notify: not sent: {type(exc).__name__}: {redact(str(exc))[:200]}", file=sys.stderr, flush=True)
