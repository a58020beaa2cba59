"""The job side of the Slurm executor: ``python -m engine.job.slurmjob`` runs on the compute node.

The batch script that :func:`engine.job.slurm.sbatch_script` writes execs this module. It runs
the experiment into the run directory the submitting side created; on SIGTERM (preemption)
or SIGUSR1 (near the time limit) the job stops at its next optimizer step with a checkpoint,
the run ends ``interrupted`` and, with ``slurm_requeue``, the requeued job resumes from it
(see :mod:`engine.job.slurm`). It lives apart from :mod:`engine.job.slurm` because it calls the job
runner (:mod:`engine.job.runner`), which imports :mod:`engine.job.slurm` to submit.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.job.commands import add_job_options
from engine.status import CLEAN_EXIT


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.job.slurmjob")
    add_job_options(p, resume=False)
    args = p.parse_args(argv)

    from engine.events import StatusChanged
    from engine.job.ending import record_end
    from engine.job.runner import JobOptions, run_experiment
    from engine.manifest import load
    from engine.store.runs import Run, RunStore

    manifest = load(args.manifest)
    exp = manifest.get(args.experiment)
    run = Run(Path(args.run))
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    # Any earlier attempt (requeued, or `lmconsole run X --resume` submitting this run again):
    # resume, which continues from the last checkpoint or, without one, starts afresh and
    # drops the earlier attempt's events instead of appending to them.
    earlier = run.events_path.exists() and run.events_path.stat().st_size > 0
    resume = restarts > 0 or earlier or run.last_checkpoint() is not None
    caught: list[int] = []

    def on_signal(signum, _frame) -> None:
        # Before or after run_experiment's own stop handlers: a cancel request, which the
        # loop honours at its next step with a checkpoint (nothing is lost either way).
        if not caught:
            run.request("cancel")
        caught.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGUSR1, on_signal)
    run_experiment(manifest, exp.name, store=RunStore(manifest.runs_dir), options=JobOptions(run=run, resuming=resume))
    st = run.raw_status()
    status = st.get("status")
    # The job's own stop handlers (engine/job/preempt.py) take over while it runs and end the run
    # "interrupted" naming the signal; ours (above) cover the moments before and after.
    if status == "interrupted" or (caught and status == "cancelled"):
        import re

        found = re.search(r"\bSIG[A-Z0-9]+\b", st.get("reason", ""))
        name = signal.Signals(caught[0]).name if caught else (found.group(0) if found else "a signal")
        requeue = exp.slurm_requeue
        if requeue and name == "SIGUSR1":  # the time limit is near: Slurm does not requeue by itself
            job = os.environ.get("SLURM_JOB_ID", "")
            requeue = subprocess.run(["scontrol", "requeue", job], capture_output=True).returncode == 0
        why = f"stopped by Slurm ({name}) after a checkpoint; " + (
            "the requeued job resumes from it" if requeue else f"resume with: lmconsole run {exp.name} --resume"
        )
        record_end(run, [StatusChanged(status="interrupted", reason=why)])
        return 0
    return 0 if status in CLEAN_EXIT else 1


if __name__ == "__main__":
    sys.exit(main())
