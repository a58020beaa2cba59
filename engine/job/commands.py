"""A job's command lines: the launcher's (torchrun / accelerate starting ``engine.job.worker`` once
per rank) and the one a Slurm batch script execs (``engine.job.slurmjob``).

Both hand one experiment and the run directory the submitting side created to a new process,
with the same options: :func:`job_args` writes them, :func:`add_job_options` parses them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from engine.errors import JobError
from engine.manifest import Experiment, Manifest
from engine.store.runs import Run

# How long the launcher waits for its ranks after a stop signal before it SIGKILLs them: the ranks stop at
# the next optimizer step after a checkpoint, which an evaluation or a large checkpoint write can delay
# by minutes (torch's default, 30 s, would lose the checkpoint). `launcher_args = ["--shutdown_timeout=N"]`
# overrides it for torchrun.
SHUTDOWN_TIMEOUT_S = 1800
WORKER = "engine.job.worker"  # one rank of a launched job
SLURM_JOB = "engine.job.slurmjob"  # the job side of the Slurm executor


def job_args(module: str, manifest: Manifest, exp: Experiment, run: Run, resume: bool = False) -> list[str]:
    """``-m <module> --lmc-manifest M --lmc-experiment E --lmc-run R [--lmc-resume]``, the paths absolute
    (the process may start in another directory, or on another node)."""
    return [
        "-m",
        module,
        "--lmc-manifest",
        str(Path(manifest.path).resolve()),
        "--lmc-experiment",
        exp.name,
        "--lmc-run",
        str(run.path.resolve()),
    ] + (["--lmc-resume"] if resume else [])


def add_job_options(parser: argparse.ArgumentParser, resume: bool) -> None:
    """The options of :func:`job_args` (``--lmc-resume`` where ``resume``): ``manifest``, ``experiment``, ``run``."""
    # Prefixed names: launchers parse their own options first and must not mistake ours for theirs.
    parser.add_argument("--lmc-manifest", dest="manifest", required=True)
    parser.add_argument("--lmc-experiment", dest="experiment", required=True)
    parser.add_argument("--lmc-run", dest="run", required=True)
    if resume:
        parser.add_argument("--lmc-resume", dest="resume", action="store_true")


def launcher_command(manifest: Manifest, exp: Experiment, run: Run, resume: bool) -> list[str]:
    """The torchrun / accelerate command line that runs ``engine.job.worker`` for this job."""
    worker = job_args(WORKER, manifest, exp, run, resume)
    if exp.launcher == "torchrun":
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={exp.nproc_per_node}",
            f"--nnodes={exp.nnodes}",
        ]
        if exp.rdzv_endpoint:
            cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={exp.rdzv_endpoint}"]
        elif exp.nnodes == 1:
            cmd += ["--standalone"]
        return cmd + list(exp.launcher_args) + worker
    exe = shutil.which("accelerate")
    if exe is None:
        raise JobError(
            'launcher = "accelerate" but the accelerate command is not installed',
            'pip install accelerate, or use launcher = "torchrun"',
        )
    return [exe, "launch", *accelerate_flags(exp), *exp.launcher_args, *worker]


def accelerate_flags(exp: Experiment) -> list[str]:
    """What ``accelerate launch`` must be told so that a user's accelerate default config cannot override it.

    The process count and kind (``--cpu``, or ``--multi_gpu`` with ``--gpu_ids=all``: every GPU this
    process sees, i.e. the scheduler's ``CUDA_VISIBLE_DEVICES``), and on several nodes this node's rank
    (``NODE_RANK``, else Slurm's ``SLURM_NODEID``) and the rendezvous address from ``rdzv_endpoint``.
    """
    world = exp.nproc_per_node * exp.nnodes
    flags = [f"--num_processes={world}", f"--num_machines={exp.nnodes}"]
    if exp.device == "cpu":
        flags.append("--cpu")
    elif world > 1:
        flags += ["--multi_gpu", "--gpu_ids=all"]
    if exp.nnodes > 1:
        flags.append(f"--machine_rank={os.environ.get('NODE_RANK') or os.environ.get('SLURM_NODEID') or 0}")
        if exp.rdzv_endpoint:
            host, _, port = exp.rdzv_endpoint.rpartition(":")
            flags += [f"--main_process_ip={host}", f"--main_process_port={port}"]
    return flags


def slurm_job_command(manifest: Manifest, exp: Experiment, run: Run) -> list[str]:
    """What the batch script execs on the compute node: this Python running ``engine.job.slurmjob``."""
    return [sys.executable, *job_args(SLURM_JOB, manifest, exp, run)]
