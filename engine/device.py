"""Which torch device a job runs on (imported by the job lifecycle and the training loop)."""

from __future__ import annotations

from .errors import JobError


def pick_device(pref: str):
    """The torch device for the manifest's ``device`` (``auto`` = CUDA where present, else CPU)."""
    import torch

    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise JobError(f"device {pref!r} requested but CUDA is not available", 'set device = "auto" or "cpu"')
    return torch.device(pref)
