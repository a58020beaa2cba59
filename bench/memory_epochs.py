"""Leak check: one experiment in this process; at every evaluation, what is alive and what RSS is.

    python bench/memory_epochs.py --manifest M --experiment demo-pretrain --json out.json

At each ``EvalFinished`` (after ``gc.collect()``): RSS, the number and total bytes of
live torch tensors, the number of Python objects tracked by the GC, and (Linux/glibc)
RSS again after ``malloc_trim(0)``, which hands the allocator's free pages back to the
OS. A leak (logits, events or plot data kept per step or per epoch) shows as growing
tensors, objects or post-trim RSS; glibc heap retention shows as RSS growth that the
trim removes. The trim changes what later epochs see, so this is a diagnostic run,
separate from the timed ones.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402,F401  (puts the repository on sys.path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--json", required=True)
    a = p.parse_args(argv)

    import torch

    from engine.events import CallbackSink
    from engine.job.runner import run_experiment
    from engine.manifest import load
    from engine.train.loop import memory_mb  # current RSS on CPU

    def rss_mb() -> float:
        return memory_mb(torch.device("cpu"))

    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        trim = None
    rows = []

    def on_event(ev) -> None:
        if type(ev).__name__ != "EvalFinished":
            return
        gc.collect()
        tensors = [o for o in gc.get_objects() if torch.is_tensor(o)]
        row = {
            "epoch": ev.epoch,
            "rss_mb": rss_mb(),
            "live_tensors": len(tensors),
            "tensor_mb": sum(t.untyped_storage().nbytes() for t in tensors if t.device.type == "cpu") / 2**20,
            "gc_objects": len(gc.get_objects()),
        }
        del tensors
        if trim is not None:
            trim(0)
            row["rss_after_trim_mb"] = rss_mb()
        rows.append(row)
        print(json.dumps(row), flush=True)

    t0 = time.perf_counter()
    run = run_experiment(load(a.manifest), a.experiment, sinks=[CallbackSink(on_event)])
    Path(a.json).write_text(
        json.dumps({"status": run.status().get("status"), "epochs": rows, "wall_s": time.perf_counter() - t0})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
