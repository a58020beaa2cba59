"""Write hooks: count writes into a folder and SIGKILL before the k-th, or fill the disk there.

``WriteHooks(root, kill_at=k)`` kills the process at the k-th write under ``root``;
``WriteHooks(root, full_at=k)`` makes the k-th write and every later one run out of space
half way through its data (``ENOSPC``), the way a disk that fills up mid-file does: what
the code under test leaves behind is then exactly what a full disk would leave.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import shutil
import signal
from pathlib import Path

FAULT_CHILD = Path(__file__).with_name("fault_child.py")  # runs one job and dies at a chosen write


class WriteHooks:
    """Counts (and optionally dies at) writes whose path lies under ``root``."""

    def __init__(self, root: Path, kill_at: int | None = None, full_at: int | None = None):
        self.root = str(Path(root).resolve())
        self.kill_at = kill_at
        self.full_at = full_at
        self.ops: list[str] = []
        self._saved = []

    def _hit(self, kind: str, path) -> bool:
        """Record a write to ``path``; True when it lies under the root."""
        try:
            if isinstance(path, int):  # os.fdopen: the file behind the descriptor
                path = os.readlink(f"/proc/self/fd/{path}")
            p = str(Path(os.fspath(path)).resolve())
        except (TypeError, OSError):
            return False
        if not p.startswith(self.root):
            return False
        self.ops.append(f"{kind} {p[len(self.root) :]}")
        if self.kill_at is not None and len(self.ops) >= self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return True

    @property
    def full(self) -> bool:
        return self.full_at is not None and len(self.ops) >= self.full_at

    def _wrap_open(self, owner, attr: str):
        """``owner.attr`` (an ``open``) handing back files whose writes fail half way once the disk is full."""
        real = getattr(owner, attr)

        def hooked(*a, **k):
            mode = a[1] if len(a) > 1 else k.get("mode", "r")
            fh = real(*a, **k)
            if any(c in mode for c in "wax+") and self._hit("open", a[0]):
                return _FillingFile(fh, self)
            return fh

        self._saved.append((owner, attr, real))
        setattr(owner, attr, hooked)

    def _wrap(self, owner, attr: str, kind: str, path_of):
        real = getattr(owner, attr)

        def hooked(*a, **k):
            path = path_of(a, k)
            if path is not None:
                self._hit(kind, path)
            return real(*a, **k)

        self._saved.append((owner, attr, real))
        setattr(owner, attr, hooked)

    def install(self) -> WriteHooks:
        if self.full_at is not None:  # every way a file is opened for writing (pathlib and os.fdopen use io.open)
            for owner, attr in ((builtins, "open"), (io, "open")):
                self._wrap_open(owner, attr)
            return self
        import safetensors.torch
        import torch

        def open_path(a, k):
            mode = a[1] if len(a) > 1 else k.get("mode", "r")
            return a[0] if isinstance(a[0], (str, os.PathLike)) and any(c in mode for c in "wax+") else None

        self._wrap(builtins, "open", "open", open_path)
        self._wrap(os, "replace", "replace", lambda a, k: a[0])
        self._wrap(shutil, "rmtree", "rmtree", lambda a, k: a[0])
        self._wrap(torch, "save", "torch.save", lambda a, k: a[1] if isinstance(a[1], (str, os.PathLike)) else None)
        self._wrap(safetensors.torch, "save_model", "save_model", lambda a, k: a[1])
        self._wrap(safetensors.torch, "save_file", "save_file", lambda a, k: a[1] if len(a) > 1 else k.get("filename"))
        return self

    def remove(self) -> None:
        for owner, attr, real in reversed(self._saved):
            setattr(owner, attr, real)
        self._saved.clear()


class _FillingFile:
    """A file opened under the hooks' root: once the disk is full, a write stores half its data and
    raises ``ENOSPC`` (as ``write(2)`` does when the space runs out mid-call)."""

    def __init__(self, fh, hooks: WriteHooks):
        self._fh, self._hooks = fh, hooks

    def write(self, data):
        if self._hooks.full:
            self._fh.write(data[: len(data) // 2])
            self._fh.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._fh.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()

    def __iter__(self):
        return iter(self._fh)

    def __getattr__(self, name):
        return getattr(self._fh, name)
