"""The Slurm executor: ``executor = "slurm"`` submits a job with ``sbatch``.

The submitting side (the console's queue or ``lmconsole run``) creates the run
directory, writes ``<run>/slurm.sbatch``, submits it with the resources of the
manifest (``slurm_partition``, ``slurm_account``, ``slurm_time``, ``slurm_gpus``,
``slurm_cpus_per_task``, ``slurm_args``) and follows the run directory like any
other run (it must be on a filesystem that the compute node and this machine
share). Pause and cancel go through ``control.json`` as for local jobs; a cancel
while the job is still pending in Slurm's queue is an ``scancel``.

The job side is ``python -m engine.job.slurmjob`` (its own module: it runs the job
runner, which imports this one to submit): it runs the experiment into that
run directory. On SIGTERM (preemption, ``scontrol requeue``) or SIGUSR1 (sent
``_SIGNAL_BEFORE_S`` seconds before the time limit) it asks the job to stop at the
next optimizer step, which saves a checkpoint, and marks the run ``interrupted``.
With ``slurm_requeue`` (default on) the job is submitted ``--requeue``: Slurm
requeues a preempted job itself, and on SIGUSR1 the job requeues itself with
``scontrol requeue``. A requeued job (``SLURM_RESTART_COUNT`` > 0) or one that
finds a checkpoint resumes from it, so a preempted job resumes by itself.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from engine.job.commands import slurm_job_command
from engine.job.ending import failure_events, record_end
from engine.status import ENDED, RUN_FINAL
from engine.store.runs import request_seq

_SIGNAL_BEFORE_S = 120
TERMINAL = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
    "SPECIAL_EXIT",
    "REVOKED",
}


class SlurmError(Exception):
    """sbatch missing or refusing the job; the message says what to do."""


def executor_of(manifest, exp) -> str:
    """``slurm`` or ``local``: the experiment's ``executor``, ``auto`` meaning ``settings.executor``."""
    ex = getattr(exp, "executor", "auto")
    return manifest.settings.executor if ex == "auto" else ex


def in_slurm_job() -> bool:
    """True inside the job we submitted (it must run the experiment, not submit it again)."""
    return os.environ.get("LMCONSOLE_SLURM") == "1" and bool(os.environ.get("SLURM_JOB_ID"))


def sbatch_options(manifest, exp, run) -> list[str]:
    s = manifest.settings
    opts = [
        f"--job-name=lmc-{exp.name}",
        f"--output={run.path.resolve() / 'slurm-%j.log'}",
        "--open-mode=append",
        "--nodes=1",
        "--ntasks=1",
    ]
    partition = exp.slurm_partition or s.slurm_partition
    account = exp.slurm_account or s.slurm_account
    if partition:
        opts.append(f"--partition={partition}")
    if account:
        opts.append(f"--account={account}")
    if exp.slurm_time:
        opts.append(f"--time={exp.slurm_time}")
    if exp.slurm_gpus:
        opts.append(f"--gpus-per-node={exp.slurm_gpus}")
    if exp.slurm_cpus_per_task:
        opts.append(f"--cpus-per-task={exp.slurm_cpus_per_task}")
    if exp.slurm_requeue:
        opts += ["--requeue", f"--signal=B:USR1@{_SIGNAL_BEFORE_S}"]
    else:
        opts.append("--no-requeue")
    return opts + list(exp.slurm_args)


def sbatch_script(manifest, exp, run) -> str:
    """The batch script: ``#SBATCH`` lines from the manifest, then ``exec python -m engine.job.slurmjob``."""
    cmd = slurm_job_command(manifest, exp, run)
    lines = ["#!/bin/bash"] + [f"#SBATCH {shlex.quote(o)}" for o in sbatch_options(manifest, exp, run)]
    lines += [
        f"cd {shlex.quote(str(Path.cwd()))}",
        "export LMCONSOLE_SLURM=1",
        f"export PYTHONPATH={shlex.quote(str(Path(__file__).resolve().parents[2]))}${{PYTHONPATH:+:$PYTHONPATH}}",
        "# exec: SIGTERM/SIGUSR1 from Slurm reach Python, which checkpoints",
        "exec " + " ".join(shlex.quote(c) for c in cmd),
    ]
    return "\n".join(lines) + "\n"


def submit(manifest, exp, run) -> str:
    """Write ``<run>/slurm.sbatch`` and submit it; returns the Slurm job id."""
    exe = shutil.which("sbatch")
    if exe is None:
        raise SlurmError(
            'executor = "slurm" but the sbatch command is not on PATH; '
            'run where Slurm is installed, or set executor = "local"'
        )
    script = run.path / "slurm.sbatch"
    script.write_text(sbatch_script(manifest, exp, run))
    proc = subprocess.run([exe, "--parsable", str(script)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise SlurmError(
            f"sbatch refused the job: {msg[-1] if msg else 'exit code ' + str(proc.returncode)}; "
            f"check slurm_partition/slurm_account/slurm_time (script: {script})"
        )
    return proc.stdout.strip().split(";")[0]


LOST_ENDED_S = 60.0  # the run itself has ended: stop waiting for a silent Slurm after a minute
LOST_S = 900.0  # the run has not ended: a controller restart can take a while


def job_state(job_id: str) -> str | None:
    """Slurm's state of the job (``PENDING``, ``RUNNING``, ``COMPLETED``...), or None once Slurm forgot it.

    A job that was just requeued shows as ``CANCELLED`` (or ``PREEMPTED``) with reason
    ``BeginTime`` until it is eligible again (Slurm holds a requeued batch job back
    for a while): that is reported as ``REQUEUED``, not as the end.
    """
    try:
        proc = subprocess.run(
            ["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return "UNKNOWN"  # a slow controller is not a finished job
    if proc.returncode != 0:
        return None if "invalid job id" in proc.stderr.lower() else "UNKNOWN"
    fields = proc.stdout.strip().split()
    if not fields:
        return None
    state, reason = fields[0], (fields[1] if len(fields) > 1 else "")
    if state in TERMINAL and reason == "BeginTime":
        return "REQUEUED"
    return state


def follow(manifest, exp, run, sinks) -> None:
    """Submit, then pass the run's events to ``sinks`` until Slurm is done with the job.

    The end of a job that could not write it (sbatch refused it, it was cancelled while
    pending, it died before writing its end) is written here (:func:`engine.job.ending.record_end`).
    """
    from engine.files import atomic_write_json

    f = _Follower(run, sinks)
    try:
        job_id = submit(manifest, exp, run)
    except (SlurmError, OSError, subprocess.TimeoutExpired) as exc:
        f.fail(str(exc), "")
        return
    atomic_write_json(run.path / "slurm.json", {"job_id": job_id, "script": "slurm.sbatch"})
    f.say(f"submitted to Slurm as job {job_id}; its output goes to {run.path / f'slurm-{job_id}.log'}")
    try:
        state, scancelled = f.watch(job_id)
    except KeyboardInterrupt:
        f.say(
            f"stopped following Slurm job {job_id}; it keeps running "
            f"(cancel it with `lmconsole control {exp.name} cancel`)",
            "warning",
        )
        raise
    f.finish(job_id, state, scancelled)


class _Follower:
    """What :func:`follow` does while a job is in Slurm's hands: copy events, watch its state, end it."""

    def __init__(self, run, sinks):
        self.run, self.sinks = run, sinks
        self.offset = run.events_path.stat().st_size if run.events_path.exists() else 0

    def say(self, message: str, level: str = "info") -> None:
        from engine.events import LogEmitted

        for s in self.sinks:
            s.emit(LogEmitted(level=level, message=message))

    def record(self, events) -> None:
        """Write events into the run that the job itself could not write."""
        record_end(self.run, events, self.sinks)

    def fail(self, reason: str, hint: str) -> None:
        self.record(failure_events(reason, hint))

    def pump(self) -> None:
        events, self.offset = self.run.follow(self.offset)
        for ev in events:
            for s in self.sinks:
                s.emit(ev)

    def request_seq(self) -> int:
        return request_seq(self.run.pending_request())

    def watch(self, job_id: str) -> tuple[str | None, bool]:
        """Follow until Slurm is done with the job (or stops answering): (last state, scancelled)."""
        # A cancel asked while the job waits in Slurm's queue is an scancel; one asked before
        # (or while it ran: the job saw it, or its own SIGTERM handler wrote it) is not.
        state: str | None = "PENDING"
        next_check, seen_seq, scancelled = 0.0, self.request_seq(), False
        unknown_since = None  # Slurm not answering (controller down or gone): followed for a while, not forever
        while True:
            self.pump()
            now = time.monotonic()
            if now >= next_check:
                state = job_state(job_id)
                next_check = now + 1.0
                if state is None or state in TERMINAL:
                    break
                unknown_since = (unknown_since or now) if state == "UNKNOWN" else None
                ended = self.run.raw_status().get("status") in ENDED
                if unknown_since is not None and now - unknown_since > (LOST_ENDED_S if ended else LOST_S):
                    self.say(
                        f"Slurm has not answered about job {job_id} for {now - unknown_since:.0f} s: "
                        "stopped following it",
                        "warning",
                    )
                    break
                if state not in ("PENDING", "REQUEUED"):
                    seen_seq = self.request_seq()
                elif self.request_seq() > seen_seq and _cancel_is_newest(self.run):
                    seen_seq = self.request_seq()
                    scancelled = subprocess.run(["scancel", job_id], capture_output=True, timeout=30).returncode == 0
            time.sleep(0.2)
        time.sleep(0.2)
        self.pump()
        return state, scancelled

    def finish(self, job_id: str, state: str | None, scancelled: bool) -> None:
        """End a run the job could not end itself: cancelled in the queue, or died before its end."""
        from engine.events import RunFinished, StatusChanged

        status = self.run.raw_status().get("status")
        if scancelled and status not in ENDED:
            self.record(
                [
                    RunFinished(status="cancelled"),
                    StatusChanged(
                        status="cancelled",
                        reason=f"cancelled while waiting in the Slurm queue (job {job_id})"
                        + ("; resume to continue from the checkpoint" if self.run.last_checkpoint() else ""),
                    ),
                ]
            )
        elif status not in RUN_FINAL:
            self.fail(
                f"Slurm job {job_id} ended ({state or 'gone'}) before the run finished",
                f"see {self.run.path / f'slurm-{job_id}.log'}",
            )


def _cancel_is_newest(run) -> bool:
    """A cancel request written after the run's last status change (the job's own SIGTERM
    handler writes one too, but the job then records its status after it)."""
    if (run.pending_request() or {}).get("action") != "cancel":
        return False
    try:
        control = (run.path / "control.json").stat().st_mtime_ns
    except OSError:
        return False
    try:
        status = (run.path / "status.json").stat().st_mtime_ns
    except OSError:
        status = 0
    return control > status
