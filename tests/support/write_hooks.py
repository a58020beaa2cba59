"""Kill-at-write hooks: count writes into the runs directory and SIGKILL before the k-th."""

from __future__ import annotations

import builtins
import os
import shutil
import signal
from pathlib import Path

FAULT_CHILD = Path(__file__).with_name("fault_child.py")  # runs one job and dies at a chosen write


class WriteHooks:
    """Counts (and optionally dies at) writes whose path lies under ``root``."""

    def __init__(self, root: Path, kill_at: int | None = None):
        self.root = str(Path(root).resolve())
        self.kill_at = kill_at
        self.ops: list[str] = []
        self._saved = []

    def _hit(self, kind: str, path) -> None:
        try:
            p = str(Path(os.fspath(path)).resolve())
        except (TypeError, OSError):
            return
        if not p.startswith(self.root):
            return
        self.ops.append(f"{kind} {p[len(self.root) :]}")
        if self.kill_at is not None and len(self.ops) >= self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

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
