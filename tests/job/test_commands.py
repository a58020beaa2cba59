"""A job's command lines: the launcher's and the Slurm batch script's, and the parsers on the other end."""

import argparse
import dataclasses
import shlex
import sys

import pytest
from support.manifests import PRETRAIN, experiment, manifest_text, write_manifest

from engine.job import commands
from engine.job.commands import add_job_options, job_args, launcher_command, slurm_job_command
from engine.job.runner import run_experiment
from engine.job.slurm import sbatch_script
from engine.manifest import load
from engine.store.runs import Run


@pytest.fixture
def job(tmp_path):
    path = write_manifest(tmp_path, manifest_text(tmp_path / "runs", experiment(PRETRAIN, launcher="torchrun")))
    manifest = load(path)
    return manifest, manifest.get("pre"), Run(tmp_path / "runs" / "pre" / "r1")


def _tail(manifest, exp, run) -> list[str]:
    return [
        "--lmc-manifest",
        str(manifest.path.resolve()),
        "--lmc-experiment",
        exp.name,
        "--lmc-run",
        str(run.path.resolve()),
    ]


def test_torchrun_command(job):
    manifest, exp, run = job
    exp = dataclasses.replace(exp, nproc_per_node=2, launcher_args=("--max-restarts=1",))
    assert launcher_command(manifest, exp, run, resume=True) == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=2",
        "--nnodes=1",
        "--standalone",
        "--max-restarts=1",
        "-m",
        "engine.job.worker",
        *_tail(manifest, exp, run),
        "--lmc-resume",
    ]
    two_nodes = dataclasses.replace(exp, nnodes=2, rdzv_endpoint="head:29500", launcher_args=())
    assert launcher_command(manifest, two_nodes, run, resume=False)[3:7] == [
        "--nproc-per-node=2",
        "--nnodes=2",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=head:29500",
    ]


def test_accelerate_command(job, monkeypatch):
    manifest, exp, run = job
    monkeypatch.setattr(commands.shutil, "which", lambda name: f"/bin/{name}")
    monkeypatch.setenv("SLURM_NODEID", "1")
    exp = dataclasses.replace(exp, launcher="accelerate", nproc_per_node=2, nnodes=2, rdzv_endpoint="node0:29500")
    # everything a user's accelerate default config could otherwise decide: the GPUs, the kind, this node's rank
    assert launcher_command(manifest, exp, run, resume=False) == [
        "/bin/accelerate",
        "launch",
        "--num_processes=4",
        "--num_machines=2",
        "--multi_gpu",
        "--gpu_ids=all",
        "--machine_rank=1",
        "--main_process_ip=node0",
        "--main_process_port=29500",
        "-m",
        "engine.job.worker",
        *_tail(manifest, exp, run),
    ]


def test_accelerate_cpu_job(job, monkeypatch):
    manifest, exp, run = job
    monkeypatch.setattr(commands.shutil, "which", lambda name: f"/bin/{name}")
    exp = dataclasses.replace(exp, launcher="accelerate", nproc_per_node=2, device="cpu")
    assert launcher_command(manifest, exp, run, resume=False)[2:5] == ["--num_processes=2", "--num_machines=1", "--cpu"]


def test_missing_accelerate_fails_the_run(job, monkeypatch):
    manifest, _, _ = job
    monkeypatch.setattr(commands.shutil, "which", lambda name: None)
    exp = dataclasses.replace(manifest.get("pre"), launcher="accelerate")
    manifest = dataclasses.replace(manifest, experiments=(exp,))
    st = run_experiment(manifest, "pre").status()
    assert st["status"] == "failed"
    assert st["reason"] == (
        'launcher = "accelerate" but the accelerate command is not installed '
        '(hint: pip install accelerate, or use launcher = "torchrun")'
    )


def test_slurm_script_execs_the_job_command(job):
    manifest, exp, run = job
    cmd = slurm_job_command(manifest, exp, run)
    assert cmd == [sys.executable, "-m", "engine.job.slurmjob", *_tail(manifest, exp, run)]
    last = sbatch_script(manifest, exp, run).splitlines()[-1]
    assert shlex.split(last) == ["exec", *cmd]


@pytest.mark.parametrize(
    ("module", "resume"), [(commands.WORKER, False), (commands.WORKER, True), (commands.SLURM_JOB, False)]
)
def test_the_entry_points_parse_what_the_commands_pass(job, module, resume):
    manifest, exp, run = job
    argv = job_args(module, manifest, exp, run, resume=resume)
    assert argv[:2] == ["-m", module]
    parser = argparse.ArgumentParser()
    add_job_options(parser, resume=module == commands.WORKER)  # a Slurm job finds out itself whether it resumes
    args = parser.parse_args(argv[2:])
    assert (args.manifest, args.experiment, args.run) == (str(manifest.path.resolve()), "pre", str(run.path.resolve()))
    assert getattr(args, "resume", False) == resume
