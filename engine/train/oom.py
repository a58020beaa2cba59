"""``auto_find_batch_size``: out-of-memory errors, and micro-batches split into smaller pieces.

HF halves the per-device batch and retries; here a job whose step runs out of memory
splits every micro-batch into ``split`` pieces along its rows and accumulates their
gradients: per device ``ceil(batch_size / split)`` sequences, ``split`` times the gradient
accumulation. The data, its order and the optimizer steps stay those of ``batch_size``, so
the effective batch, the schedule, checkpoints and exact resume are unchanged, and a rerun on
a larger GPU without the split computes the same steps. The split is recorded in the run's
``config.json`` under :data:`CONFIG_KEY` (a resume starts with it) and as a ``BatchReduced`` event.
"""

from __future__ import annotations

import math
import time

from engine.files import atomic_write_json

CONFIG_KEY = "_auto_find_batch_size"  # in config.json; "_" keys are bookkeeping, never a changed setting


def is_out_of_memory(exc: BaseException) -> bool:
    """``torch.OutOfMemoryError``, or a RuntimeError that says "out of memory" (CUDA, MPS, older torch)."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def per_device_batch(batch_size: int, split: int) -> int:
    """Sequences per forward pass when every micro-batch of ``batch_size`` is split ``split`` ways."""
    return math.ceil(batch_size / split)


def next_split(batch_size: int, split: int) -> int | None:
    """The split that halves the per-device batch (rounded down); None below a batch of 1."""
    now = per_device_batch(batch_size, split)
    if now <= 1:
        return None
    return math.ceil(batch_size / (now // 2))


def split_batch(batch: dict, rows: int, split: int) -> list[dict]:
    """``batch`` (``rows`` sequences) as up to ``split`` pieces of nearly equal size, in row order.

    Tensors whose first dimension is the row count are cut; anything else goes whole into every piece.
    """
    parts = min(split, rows)
    if parts <= 1:
        return [batch]
    pieces: list[dict] = [{} for _ in range(parts)]
    for key, value in batch.items():
        if getattr(value, "ndim", 0) and value.shape[0] == rows:
            for piece, chunk in zip(pieces, value.tensor_split(parts)):
                piece[key] = chunk
        else:
            for piece in pieces:
                piece[key] = value
    return pieces


def saved_split(config: dict) -> int:
    """The split a run's ``config.json`` recorded (1 when it has none)."""
    record = config.get(CONFIG_KEY)
    split = record.get("split") if isinstance(record, dict) else None
    return split if isinstance(split, int) and split >= 1 else 1


def record_split(run, exp, split: int, step: int, error: str) -> dict:
    """Write the new split into ``config.json`` (with when and why); returns the record."""
    config = run.config()
    old = config.get(CONFIG_KEY) if isinstance(config.get(CONFIG_KEY), dict) else {}
    record = {
        "batch_size": per_device_batch(exp.batch_size, split),
        "gradient_accumulation_steps": exp.gradient_accumulation_steps * split,
        "split": split,
        "changes": list(old.get("changes", [])) + [{"time": time.time(), "step": step, "split": split, "error": error}],
    }
    atomic_write_json(run.path / "config.json", {**config, CONFIG_KEY: record})
    return record
