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
from pathlib import Path

from engine.job.commands import add_job_options
from engine.job.runner import JobContext, experiment_for, run_experiment
from engine.manifest import Experiment, Manifest, load
from engine.status import RUN_FINAL
from engine.store.runs import Run, RunStore
from engine.store.writer import NullWriter
from engine.tasks import task_function


class OtherRankContext(JobContext):
    """The context of a rank other than 0: it writes nothing (rank 0 owns the run) and reads no
    control requests (rank 0 decides; the loop broadcasts its decision to every rank)."""

    @classmethod
    def of(cls, manifest: Manifest, exp: Experiment, run: Run, store: RunStore, resume: bool) -> OtherRankContext:
        writer = NullWriter(run)
        return cls(manifest=manifest, exp=exp, run=run, writer=writer, sink=writer, store=store, resume=resume)

    def poll(self) -> None:
        pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.job.worker")
    add_job_options(p, resume=True)
    args = p.parse_args(argv)

    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # A paused job holds the others in a collective: allow long pauses.
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(days=7))
    manifest = load(args.manifest)
    run = Run(Path(args.run))
    store = RunStore(manifest.runs_dir)
    try:
        if rank == 0:
            run_experiment(manifest, args.experiment, run=run, resume_flag=args.resume, store=store, in_worker=True)
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
            ok = True
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
