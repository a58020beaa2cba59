"""Run hygiene: tags, a note and an archive flag per run, and deleting a run.

They live in ``meta.json`` in the run directory, a small file of their own,
written atomically under an ``flock`` on the run directory (so the console and
the CLI editing the same run at once never lose an edit). ``events.jsonl`` and
``status.json`` are never touched, so editing a running job is safe.

Archived runs stay on disk and are hidden from listings by default; deleting
removes the directory and refuses while the run's owner is alive.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

from engine.files import atomic_write_json, read_json
from engine.status import ACTIVE
from engine.store.runs import OwnerLock

META = "meta.json"
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:=+-]{0,39}$")
NOTE_MAX = 2000


class MetaError(ValueError):
    """A one-line reason with what to do."""


def read_meta(run) -> dict:
    """``{"tags": [...], "note": str, "archived": bool}``; tolerant of a missing or hand-broken file."""
    raw = read_json(Path(run.path) / META, {})
    raw = raw if isinstance(raw, dict) else {}
    tags = raw.get("tags")
    tags = [t for t in tags if isinstance(t, str) and TAG.match(t)] if isinstance(tags, list) else []
    note = raw.get("note")
    return {
        "tags": sorted(dict.fromkeys(tags)),
        "note": note if isinstance(note, str) else "",
        "archived": raw.get("archived") is True,
    }


@contextmanager
def _locked(run):
    fd = os.open(run.path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # drops the lock


def _update(run, change) -> dict:
    if not (Path(run.path) / "config.json").exists():
        raise MetaError(f"{run.path} is not a run directory (no config.json)")
    with _locked(run):
        meta = read_meta(run)
        change(meta)
        meta["tags"] = sorted(dict.fromkeys(meta["tags"]))
        atomic_write_json(Path(run.path) / META, meta)
    return meta


def check_tag(tag: str) -> str:
    if not TAG.match(tag or ""):
        raise MetaError(
            f"tag {tag!r}: use letters, digits and . _ : = + - (at most 40, starting with a letter or digit)"
        )
    return tag


def parse_tag_changes(words: list[str]) -> tuple[list[str], list[str]]:
    """``["+baseline", "-old", "lr-sweep"]`` -> (add, remove); a bare word adds."""
    add, remove = [], []
    for w in words:
        w = w.strip()
        if w.startswith("-"):
            remove.append(check_tag(w[1:]))
        else:
            add.append(check_tag(w[1:] if w.startswith("+") else w))
    return add, remove


def change_tags(run, add=(), remove=()) -> dict:
    add = [check_tag(t) for t in add]
    remove = {check_tag(t) for t in remove}

    def change(meta):
        meta["tags"] = [t for t in meta["tags"] + add if t not in remove]

    return _update(run, change)


def set_tags(run, tags) -> dict:
    tags = [check_tag(t) for t in tags]
    return _update(run, lambda meta: meta.__setitem__("tags", tags))


def set_note(run, text: str) -> dict:
    text = "".join(ch for ch in str(text) if ch == "\n" or ch == "\t" or ch >= " ").strip()
    if len(text) > NOTE_MAX:
        raise MetaError(f"note is {len(text)} characters: keep it under {NOTE_MAX} (put long write-ups in a file)")
    return _update(run, lambda meta: meta.__setitem__("note", text))


def set_archived(run, archived: bool = True) -> dict:
    return _update(run, lambda meta: meta.__setitem__("archived", bool(archived)))


def is_archived(run) -> bool:
    return read_meta(run)["archived"]


def delete_run(run) -> None:
    """Remove the run directory. Refuses a run whose owner is alive (running, paused, starting).

    The owner lock is taken for the deletion, so a resume cannot start halfway;
    ``config.json`` goes first, so listings stop showing the run at once.
    """
    path = Path(run.path)
    if not (path / "config.json").exists():
        raise MetaError(f"{path} is not a run directory (no config.json)")
    status = run.status().get("status")
    lock = OwnerLock(path / "owner.lock")
    if status in ACTIVE or OwnerLock.is_held(path / "owner.lock") or not lock.acquire():
        raise MetaError(f"{run.experiment}/{run.run_id} is {status} in a live process: cancel it first, then delete")
    try:
        (path / "config.json").unlink()
    finally:
        lock.release()
    shutil.rmtree(path, ignore_errors=True)
    try:
        path.parent.rmdir()  # the experiment folder, when this was its last run
    except OSError:
        pass
