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
import hashlib
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


def tell_studies_done(qf, manifest, experiment: str) -> list[str]:
    """After a job of ``experiment`` finished: tell ``settings.notify`` of each study it belongs to that is
    now done (every step's latest run finished, none of its steps waits or runs in the queue); returns them.

    Under the queue lock, so of two last steps ending together the later one tells (never neither).
    """
    from engine.job.notify import notify, studies_with, study_details, wait_sent
    from engine.queue.launch import pid_alive
    from engine.queue.schedule import statuses
    from engine.status import ACTIVE, WAITING
    from engine.store.runs import RunStore

    studies = studies_with(manifest, experiment)
    if not studies:
        return []
    store = RunStore(qf.dir.parent)
    told = []
    with qf.locked():
        state = qf.read()
        st = statuses(state, store, lambda e: pid_alive(e.pid, e.started))
        for study in studies:
            steps = set(manifest.job_plan([study]))
            if any(e.experiment in steps and st[e.id][0] in ACTIVE | WAITING for e in state.jobs):
                continue  # more of it is still to come
            details = study_details(manifest, store, study)
            if details is not None:
                notify(manifest.settings.notify, "study_done", study, details)
                told.append(study)
    if told:
        wait_sent()
    return told


def tell_sweep_done(qf, manifest, entry) -> bool:
    """After a trial of a sweep ended: tell ``settings.notify`` once no other trial of its study waits or
    runs (under the queue lock, so of two last trials ending together exactly one tells); True if told."""
    from engine.job.notify import notify, wait_sent
    from engine.queue.launch import pid_alive
    from engine.queue.schedule import statuses
    from engine.status import ACTIVE, WAITING
    from engine.store.runs import RunStore
    from engine.sweep.summary import sweep_summary

    store = RunStore(qf.dir.parent)
    with qf.locked():
        state = qf.read()
        st = statuses(state, store, lambda e: pid_alive(e.pid, e.started))
        if any(e.sweep == entry.sweep and st[e.id][0] in ACTIVE | WAITING for e in state.jobs if e.id != entry.id):
            return False  # more trials to come
        # two last trials ending together both see the other ended: the first to get here tells
        told = qf.dir / f"sweep-told-{hashlib.sha256(str(entry.sweep).encode()).hexdigest()[:16]}"
        if told.exists():
            return False
        summary = sweep_summary(store.root, entry.experiment, study=entry.sweep)
        if summary is None:
            return False
        best = summary.best
        lines = [summary.progress_text()]
        if best is not None:
            params = ", ".join(f"{k} = {v}" for k, v in best.parameters.items())
            lines.append(f"best: trial {best.trial} ({best.run}), {summary.objective} {best.objective}: {params}")
        notify(manifest.settings.notify, "sweep_done", entry.experiment, "\n".join(lines))
        told.touch()
    wait_sent()
    return True


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
        if run.raw_status().get("status") == "finished" and manifest.settings.notify:
            try:
                tell_studies_done(qf, manifest, entry.experiment)
            except Exception as exc:  # noqa: BLE001 - telling must never change how the job ended
                print(f"notify: study done not told: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        if entry.sweep is not None and manifest.settings.notify:  # a trial: finished, pruned or failed
            try:
                tell_sweep_done(qf, manifest, entry)
            except Exception as exc:  # noqa: BLE001 - telling must never change how the job ended
                print(f"notify: sweep done not told: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
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
