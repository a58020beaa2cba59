"""Which devices a job runs on: the torch device it picks, the GPUs ``CUDA_VISIBLE_DEVICES`` gives it."""

from __future__ import annotations

import os

from engine.errors import JobError


def pick_device(pref: str):
    """The torch device for the manifest's ``device`` (``auto`` = CUDA where present, else CPU)."""
    import torch

    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise JobError(f"device {pref!r} requested but CUDA is not available", 'set device = "auto" or "cpu"')
    return torch.device(pref)


def visible_gpus(env=None) -> list[int] | None:
    """The device indices in ``CUDA_VISIBLE_DEVICES`` (None when unset or not plain indices, e.g. UUIDs)."""
    value = (env if env is not None else os.environ).get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    value = value.strip()
    if not value:
        return []
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        return None
