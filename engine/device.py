"""Which devices a job runs on: the torch device it picks, the GPUs ``CUDA_VISIBLE_DEVICES`` gives it."""

from __future__ import annotations

import os
import re

from engine.errors import JobError

DEVICE_FORMS = re.compile(r"auto|cpu|cuda(:\d+)?")


def device_problem(device: str, launcher: str = "none") -> str:
    """Why the manifest's ``device`` cannot work, as far as the manifest tells ("" when it can).

    Under a launcher every rank takes the GPU of its local rank, so ``cuda:N`` would put all ranks on one GPU.
    """
    if not DEVICE_FORMS.fullmatch(device):
        return f'{device!r} is not a device: use "auto", "cpu", "cuda" or "cuda:N"'
    if launcher != "none" and device.startswith("cuda:"):
        return (
            f'{device!r} with launcher = "{launcher}": each rank takes the GPU of its local rank; '
            'use device = "cuda" or "auto" (and the scheduler\'s GPUs or CUDA_VISIBLE_DEVICES to pick them)'
        )
    return ""


def local_rank() -> int | None:
    """This process's rank on its node under torchrun/accelerate (``LOCAL_RANK``); None when not launched."""
    value = os.environ.get("LOCAL_RANK")
    try:
        return int(value) if value is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    except ValueError:
        return None


def pick_device(pref: str):
    """The torch device for the manifest's ``device`` (``auto`` = CUDA where present, else CPU).

    A launched rank gets ``cuda:LOCAL_RANK``. ``cuda:N`` must name a GPU this process sees:
    the queue shows a job only its own GPUs, numbered from 0.
    """
    import torch

    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise JobError(f"device {pref!r} requested but CUDA is not available", 'set device = "auto" or "cpu"')
    rank = local_rank()
    if pref == "cuda" and rank is not None:
        return torch.device("cuda", rank)
    device = torch.device(pref)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        shown = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise JobError(
            f"device {pref!r} but this process sees {torch.cuda.device_count()} GPU(s)"
            + (f" (CUDA_VISIBLE_DEVICES={shown})" if shown is not None else ""),
            'set device = "cuda": a queued job sees only the GPUs the scheduler gave it, the first as cuda:0',
        )
    return device


def distributed_backend(pref: str) -> str:
    """The process-group backend for a launched job with the manifest's ``device``: NCCL for GPUs, else gloo."""
    import torch

    if pref == "cpu" or not torch.cuda.is_available():
        return "gloo"
    return "nccl"


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
