"""One job in its own process: ``python -m engine.queue.jobproc --runs-dir R --job ID``.

Started by the scheduler in a new session (``setsid``), so no console, terminal
or SSH connection takes it down. It reads its entry from the queue file, runs
the experiment into the run directory the scheduler created (owning it with the
owner lock, like a headless run), and on the way out makes sure a scheduler is
alive to start what waits. ``LMCONSOLE_JOB_RUNNER=module:callable`` replaces
:func:`engine.job.runner.run_experiment` (tests run fake jobs this way).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from engine.status import CLEAN_EXIT


def _runner():
    spec = os.environ.get("LMCONSOLE_JOB_RUNNER")
    if not spec:
        from engine.job.runner import run_experiment

        return run_experiment
    mod, _, attr = spec.partition(":")
    return getattr(importlib.import_module(mod), attr)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.queue.jobproc")
    p.add_argument("--runs-dir", required=True)
    p.add_argument("--job", type=int, required=True)
    args = p.parse_args(argv)

    from engine.errors import ManifestError
    from engine.queue.launch import ensure_scheduler
    from engine.queue.queuefile import QueueFile
    from engine.queue.schedule import entry_manifest
    from engine.store.runs import RunStore

    qf = QueueFile(args.runs_dir)
    entry = qf.read().get(args.job)
    if entry is None or not entry.run:
        # The scheduler starts jobs before it writes the queue back (its lock held): one started early in
        # a long pass (a sweep's trials ask their study meanwhile) waits for that write.
        with qf.locked():
            entry = qf.read().get(args.job)
    if entry is None or not entry.run:  # a quarantined entry (escaping run, bad types...) is never run
        print(f"job {args.job}: not a runnable entry of {qf.path} (see `lmconsole queue`)", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    kwargs = entry.runner_kwargs(RunStore(args.runs_dir))
    run = kwargs["options"].run
    code = 1
    try:
        manifest, why = entry_manifest(entry, qf.dir.parent)  # checked again: the entry may have changed since
        if manifest is None:
            raise ManifestError(Path(entry.manifest or "?"), [why])
        _runner()(manifest, entry.experiment, **kwargs)
        code = 0 if run.raw_status().get("status") in CLEAN_EXIT else 1
    except ManifestError as exc:
        from engine.events import JobFailed, StatusChanged
        from engine.job.ending import record_end

        reason = f"the manifest no longer loads: {exc.problems[0] if exc.problems else exc}"
        hint = f"fix {entry.manifest} and resume the job (R)"
        record_end(run, [JobFailed(reason=reason, hint=hint), StatusChanged(status="failed", reason=reason)])
    finally:
        try:  # the scheduler may have died (OOM, kill): the queue must not stall
            ensure_scheduler(qf, entry.manifest or "")
        except OSError:
            pass
    return code


if __name__ == "__main__":
    sys.exit(main())
