"""File primitives shared by the run store, tables, exports and the training loop.

Atomic writes (a reader sees the old file or the new one, never half of one) with the
mode a plain ``open`` would give, tolerant JSON reads, reading a regular file without
following symlinks, and the two ways a full disk shows up. Nothing here knows about
runs: this is a leaf module that imports nothing of the engine at import time.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from pathlib import Path

# A name that becomes one directory name (an experiment, a run id): no separators, no leading dot,
# short enough for any filesystem. The manifest checks experiment names with it, the store every
# directory it creates, exports every folder they copy.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def read_regular_file(path: Path, inside: Path) -> bytes:
    """Bytes of ``path`` if it is a regular file (not a symlink) under folder ``inside``; else OSError."""
    path, inside = Path(path), Path(inside)
    rel = path.relative_to(inside)
    cur = inside
    for part in rel.parts[:-1]:
        cur = cur / part
        if cur.is_symlink():
            raise OSError(errno.ELOOP, f"{cur.name} is a symlink")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        import stat as _stat

        if not _stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


MAX_READ = 64 << 20  # bytes: more than any queue file or run record we write; a bigger one is damage


def read_plain(path: Path | str, limit: int = MAX_READ) -> bytes:
    """The bytes of ``path`` if it is a regular file: never through a symlink (``O_NOFOLLOW``), never
    a FIFO or a device (no hang, no endless read), never more than ``limit`` bytes.

    ``FileNotFoundError`` when it is missing; another ``OSError`` naming the problem otherwise.
    """
    import stat as _stat

    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # a FIFO opens without a writer
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "a symbolic link, not a file", str(path)) from None
        raise
    try:
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit >> 20} MiB", str(path))
        chunks, size = [], 0
        while size <= limit:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
            size += len(b)
        if size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit >> 20} MiB", str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def open_plain(path: Path | str):
    """``path`` opened for binary reading if it is a regular file, never through a symlink: a FIFO,
    a device or a link is an ``OSError`` (``FileNotFoundError`` when it is missing). For files in
    run directories, which anyone sharing the runs directory could replace."""
    import stat as _stat

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    if not _stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def open_append(path: Path | str) -> int:
    """A file descriptor appending to ``path`` (created 0644 under umask 022), never through a symlink
    and only to a regular file; ``OSError`` otherwise. For logs in folders others can write to."""
    import stat as _stat

    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK, 0o666)
    if not _stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    os.set_blocking(fd, True)
    return fd


def current_umask() -> int:
    """This process's umask, read without changing it (``os.umask`` can only set it, racing other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)  # no /proc (not Linux): the set-and-restore fallback
    os.umask(old)
    return old


def follow_umask(folder: Path) -> None:
    """Give every file and folder under ``folder`` the mode the umask asks for (0644/0755 under 022).

    For folders written by libraries that create private files (safetensors writes 0600).
    """
    mask = current_umask()
    for dirpath, _dirnames, filenames in os.walk(folder):
        os.chmod(dirpath, 0o777 & ~mask)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o666 & ~mask)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder, fsync, then rename over ``path``.

    A reader sees the old file or the new one, never a half-written one. The
    file gets the mode a plain ``open`` would give it (0644 under umask 022),
    not mkstemp's private 0600, so others on a shared box can read runs and exports.
    """
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """:func:`atomic_write_text` for bytes (a plot, an archive)."""
    atomic_write_many([(Path(path), data)])


def atomic_write_many(files: list[tuple[Path, bytes]]) -> None:
    """Write several files all or nothing, as far as a filesystem allows: every one goes to a synced
    temp file beside its target first, and only when all are written are they renamed into place.

    A full disk part way leaves every target as it was and no temp file behind; the ``OSError``
    then names the file being written (for :func:`disk_full_message`).
    """
    staged: list[tuple[str, Path]] = []
    current = Path(files[0][0]) if files else Path()
    try:
        for path, data in files:
            current = Path(path)
            current.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=current.parent, prefix=f".{current.name}.", suffix=".tmp")
            staged.append((tmp, current))
            os.fchmod(fd, 0o666 & ~current_umask())
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        for tmp, path in staged:
            current = path
            os.replace(tmp, path)
    except BaseException as exc:
        for tmp, _ in staged:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(exc, OSError) and is_disk_full(exc) and not exc.filename:
            # name the file: "disk full" alone does not say what was lost (the old file is intact)
            raise OSError(exc.errno or errno.ENOSPC, exc.strerror or "No space left on device", str(current)) from exc
        raise


def atomic_write_json(path: Path, data) -> None:
    from engine.events import json_safe  # NaN/inf become "nan"/"inf" strings: strict JSON for every reader

    atomic_write_text(path, json.dumps(json_safe(data), indent=2, sort_keys=True, allow_nan=False) + "\n")


def is_disk_full(exc: BaseException) -> bool:
    """True for the ways a full disk (or quota) shows up: ENOSPC/EDQUOT, and torch's and safetensors' wrappers of it."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return any(
        s in text for s in ("no space left", "disk quota", "unexpected pos", "file write failed", "failed writing")
    )


def disk_full_message(exc: OSError) -> str:
    """One line for a full disk: what was being written and how much space is left there."""
    where = exc.filename or ""
    free = f"; {free_gib(Path(where)):.1f} GiB free there" if where else ""
    return f"disk full while writing {where or 'a file'}{free}; free some space and try again"


def free_gib(path: Path) -> float:
    import shutil

    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free / 2**30
    except OSError:
        return 0.0


def read_json(path: Path, default=None):
    """The JSON in ``path`` (a regular file, not a link, of bounded size), or ``default``."""
    try:
        return json.loads(read_plain(path).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return default


def read_json_object(path: Path | str) -> tuple[dict, str]:
    """A JSON object from ``path`` as ``(data, problem)``; never raises.

    ``problem`` is ``""`` when the file is fine or missing, else
    ``"unreadable: <file>: <reason>"`` and ``data`` is ``{}``: a reader shows the
    problem for this run and goes on with the others.
    """
    try:  # a regular file only: a link to a file outside the run is never read (nor published)
        text = read_plain(path).decode("utf-8")
    except FileNotFoundError:
        return {}, ""
    except (OSError, UnicodeDecodeError) as exc:
        return {}, f"unreadable: {os.path.basename(path)}: {getattr(exc, 'strerror', None) or exc}"
    name = os.path.basename(path)
    try:
        data = json.loads(text)
    except RecursionError:
        return {}, f"unreadable: {name}: nested too deeply"
    except ValueError as exc:
        return {}, f"unreadable: {name}: not JSON ({exc})"
    if not isinstance(data, dict):
        return {}, f"unreadable: {name}: expected a JSON object, got {type(data).__name__}"
    return data, ""
