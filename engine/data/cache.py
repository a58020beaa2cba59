"""Integrity of lmconsole's caches: seal a folder when it is built, check it before use.

A sealed folder carries ``.lmconsole-seal.json``: every file's size and SHA-256
(of the whole file up to 64 MiB, else of its first and last MiB). :func:`check`
names the first file that differs; callers rebuild such an entry once and
otherwise fail with the folder to delete (:func:`corrupt_error`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

SEAL = ".lmconsole-seal.json"
WHOLE = 64 * 2**20


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if size <= WHOLE:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        else:
            h.update(fh.read(1 << 20))
            fh.seek(size - (1 << 20))
            h.update(fh.read())
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != SEAL)


def seal(folder: Path, to: Path | None = None) -> None:
    """Record ``folder``'s files in ``folder/SEAL`` (or in ``to``, for folders whose file list is fixed)."""
    folder = Path(folder)
    data = {str(p.relative_to(folder)): [p.stat().st_size, _digest(p)] for p in _files(folder)}
    Path(to or folder / SEAL).write_text(json.dumps(data, sort_keys=True))


def check(folder: Path, at: Path | None = None) -> str:
    """``""`` when ``folder`` matches its seal (or has none: built by an older version); else the problem."""
    folder = Path(folder)
    try:
        data = json.loads(Path(at or folder / SEAL).read_text())
    except FileNotFoundError:
        return ""
    except (OSError, ValueError) as exc:
        return f"{SEAL} unreadable ({exc})"
    if not isinstance(data, dict):
        return f"{SEAL} unreadable"
    for rel, want in data.items():
        p = folder / rel
        try:
            if not p.is_file():
                return f"{rel} is missing"
            if [p.stat().st_size, _digest(p)] != want:
                return f"{rel} changed since it was built"
        except OSError as exc:
            return f"{rel}: {exc.strerror or exc}"
    return ""


def corrupt_error(what: str, folder: Path, problem: str):
    from engine.errors import JobError

    return JobError(
        f"the cached {what} in {folder} is corrupt ({problem}) and rebuilding it did not help",
        f"delete that folder (rm -r {folder}) and run again",
    )


def remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    if os.path.lexists(folder):
        os.unlink(folder)
