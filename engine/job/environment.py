"""The software and hardware a run ran on (``environment.json`` in each run; the study report)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

PACKAGES = ("lmconsole", "torch", "transformers", "datasets", "huggingface_hub", "tokenizers", "sacrebleu", "nltk")


def environment(device: str = "") -> dict:
    """Versions, platform and the device (``device`` as the job resolved it, e.g. ``cuda:0``)."""
    out = {"python": platform.python_version(), "platform": platform.platform(), "executable": sys.executable}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = ""
    out["device"] = device
    try:
        import torch

        if torch.cuda.is_available():
            out["cuda"] = torch.version.cuda or ""
            out["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - the environment note must never fail a job
        pass
    return out
