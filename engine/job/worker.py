"""Entry point of one process of a launched job: ``python -m engine.job.worker`` under torchrun/accelerate.

The parent (``run_experiment`` with ``launcher`` set) created the run directory
and follows it; here every rank joins the process group, rank 0 runs the job as
the owner of the run directory, and the other ranks train their share without
writing anything.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Callable
from pathlib import Path

from engine.device import distributed_backend
from engine.job.commands import add_job_options
from engine.job.runner import JobContext, JobOptions, experiment_for, record_rank_failure, run_experiment
from engine.manifest import Experiment, Manifest, load
from engine.status import RUN_FINAL
from engine.store.runs import Run, RunStore
from engine.store.writer import NullWriter
from engine.tasks import task_function

# How long a rank waits in one collective before the job fails: bounds a real desync (a rank that died or
# took another branch). The longest wait by design is the other ranks' at rank 0's evaluation; a pause
# does not count (rank 0 sends the others a heartbeat while paused, engine.train.loop.control).
COLLECTIVE_TIMEOUT_S = 2 * 3600


class OtherRankContext(JobContext):
    """The context of a rank other than 0: it writes nothing (rank 0 owns the run) and reads no
    control requests (rank 0 decides; the loop broadcasts its decision to every rank)."""

    @classmethod
    def of(cls, manifest: Manifest, exp: Experiment, run: Run, store: RunStore, resume: bool) -> OtherRankContext:
        writer = NullWriter(run)
        return cls(manifest=manifest, exp=exp, run=run, writer=writer, sink=writer, store=store, resume=resume)

    def poll(self, heartbeat: Callable[[], object] | None = None) -> None:
        pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.job.worker")
    add_job_options(p, resume=True)
    args = p.parse_args(argv)

    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    manifest = load(args.manifest)
    run = Run(Path(args.run))
    store = RunStore(manifest.runs_dir)
    if world > 1:
        backend = distributed_backend(manifest.get(args.experiment).device)  # a cpu job on a GPU box: gloo
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    try:
        if rank == 0:
            run_experiment(
                manifest,
                args.experiment,
                store=store,
                options=JobOptions(run=run, resuming=args.resume, in_worker=True),
            )
            ok = run.raw_status().get("status") in RUN_FINAL - {"failed"}
        else:
            exp = experiment_for(manifest, args.experiment, run)  # the seed rank 0 runs with
            ctx = OtherRankContext.of(manifest, exp, run, store, args.resume)
            from engine.errors import Cancelled
            from engine.job.preempt import StopSignals

            # The launcher sends a stop signal to every rank: here it only waits for rank 0's decision
            # (it stops all ranks at one step boundary, after a checkpoint), so no rank dies mid-collective.
            with StopSignals():
                try:
                    task_function(exp.task)(ctx)
                except Cancelled:
                    pass
                except Exception as exc:
                    record_rank_failure(run, rank, exc)  # for rank 0 and the parent: this rank's reason and hint
                    raise
            ok = True
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
