"""``lmconsole run``: experiments in the foreground (dependencies first, once per seed), or queued with ``--detach``."""

from __future__ import annotations

import sys

from engine.cli.output import ProgressPrinter, print_flags, safe_print
from engine.errors import NotFound, UserError
from engine.job.preempt import late_stop
from engine.status import ACTIVE, RESUMABLE


def cmd_run(args, manifest) -> int:
    from engine.store.runs import RunStore

    unknown = [n for n in args.experiments if n not in manifest.names]
    if unknown:
        raise NotFound(f"unknown experiment {unknown[0]!r}; the manifest has: {', '.join(manifest.names)}")
    if args.detach:
        return _run_detached(manifest, args)
    sweeps = [n for n in args.experiments if manifest.get(n).sweep is not None]
    if sweeps:  # a sweep's trials are queue jobs (on free GPUs, `parallel` at once): it is always queued
        if args.resume:
            raise UserError(
                f"{sweeps[0]} is a sweep: its trials are queue jobs, each resumed on its own",
                "lmconsole queue retry JOB for a trial (see `lmconsole queue`)",
            )
        if len(sweeps) != len(args.experiments):
            raise UserError(
                f"{sweeps[0]} is a sweep, which is queued; run it on its own",
                f"lmconsole run {' '.join(sweeps)}, then the others",
            )
        queued = _run_detached(manifest, args)
        safe_print(f"the trials so far: lmconsole sweep {sweeps[0]}")
        return queued
    store = RunStore(manifest.runs_dir)
    # A study is its steps: they run like dependencies (those with a finished run are skipped).
    plan = _without_deps(manifest, args.experiments) if args.no_deps else manifest.job_plan(args.experiments)
    requested = set(args.experiments)
    failed: dict[str, str | None] = {}
    ran = 0
    for name in plan:
        exp = manifest.get(name)
        blocked = [d for d in exp.dependencies if d in failed]
        if blocked:
            failed[name] = f"blocked: dependency {blocked[0]!r} failed"
            safe_print(f"[{name}] {failed[name]}", sys.stderr)
            continue
        if name not in requested and store.latest(name, status="finished") is not None:
            continue  # dependency already satisfied by a finished run
        ran += 1
        resume = _resume_target(manifest, store, name, args) if args.resume else None
        code = _run_seeds(manifest, store, name, resume, args, failed)
        if code is not None:
            return code
        if late_stop():  # a stop signal during the last evaluation: that run finished, nothing more starts
            left = plan[plan.index(name) + 1 :]
            if left:
                safe_print(f"stopped by {late_stop()}; not started: {', '.join(left)}", sys.stderr)
                return 130
            break
    studies = [n for n in args.experiments if manifest.get(n).task == "study"]
    if studies and not ran and not failed:
        safe_print(f"[{', '.join(studies)}] every step has a finished run; run a step by name to redo it")
    if studies and ran and not failed and manifest.settings.notify:  # a failed step has told already
        _tell_studies_done(manifest, store, studies)
    if failed:
        first = next(iter(failed.items()))
        raise UserError(
            f"{first[0]}: {first[1]}" + (f" ({len(failed)} steps did not finish)" if len(failed) > 1 else ""), code=1
        )
    return 0


def _tell_studies_done(manifest, store, studies: list[str]) -> None:
    """``settings.notify`` hears of each study this command completed (its steps' headlines)."""
    from engine.job.notify import notify, study_details, wait_sent

    for study in studies:
        details = study_details(manifest, store, study)
        if details is not None:
            notify(manifest.settings.notify, "study_done", study, details)
    wait_sent()


def _resume_target(manifest, store, name: str, args):
    """``run --resume``: the run to continue, or None for a new one; a UserError when it cannot be resumed."""
    from engine.job.runner import changed_run_error, config_changes, experiment_for

    last = store.latest(name)
    status = last.status().get("status") if last is not None else None
    if status in ACTIVE:
        raise UserError(
            f"{name}: its latest run is {status} in another process; use `lmconsole control {name} resume|pause|cancel`"
        )
    resume = last if status in RESUMABLE else None
    if resume is not None and not args.accept_changes:
        changes = config_changes(experiment_for(manifest, name, resume), resume)
        if changes:
            err = changed_run_error(name, changes)
            raise UserError(f"{name}: {err.reason}", err.hint)
    return resume


def _run_seeds(manifest, store, name: str, resume, args, failed: dict) -> int | None:
    """Run (or resume) one experiment, once per seed; records what did not finish in ``failed``.

    Returns an exit code when ``cmd_run`` must stop here after a stop signal; a UserError
    when the runs directory cannot hold the run.
    """
    from engine.job.runner import JobOptions, run_experiment
    from engine.store.runs import RunUnavailable
    from engine.store.seeds import seed_jobs

    exp = manifest.get(name)
    runs = []
    for seed, group in [(None, "")] if resume else seed_jobs(exp):
        printer = ProgressPrinter(name, as_json=args.json, quiet=args.quiet)
        if not args.json:
            what = f"seed {seed}, " if seed is not None else ""
            safe_print(f"[{name}] {'resuming ' + resume.run_id if resume else 'starting'} ({what}{exp.task})")
        try:
            run = run_experiment(
                manifest,
                name,
                sinks=[printer],
                resume=resume,
                store=store,
                options=JobOptions(seed=seed, group=group, accept_changes=args.accept_changes),
            )
        except RunUnavailable as exc:
            raise UserError(f"{name}: {exc}") from None
        except (OSError, ValueError) as exc:  # the run directory itself cannot be created
            reason = getattr(exc, "strerror", None) or str(exc)
            raise UserError(
                f"{name}: cannot create a run under {manifest.runs_dir!s:.200}: {reason}; "
                "set settings.runs_dir to a writable folder",
                code=1,
            ) from None
        runs.append(run)
        st = run.status()
        if st.get("status") == "interrupted":
            # A stop signal (Slurm preemption, systemctl stop, kill, Ctrl-C): stop here, start nothing else.
            safe_print(f"[{name}] {st.get('reason')}: lmconsole run {name} --resume", sys.stderr)
            return 130
        if st.get("status") != "finished":
            failed[name] = st.get("reason") or st.get("status")
            if st.get("status") == "cancelled":
                safe_print(f"[{name}] cancelled; resume with: lmconsole run {name} --resume", sys.stderr)
                break
        elif not args.json:
            safe_print(f"[{name}] finished: {run.path}")
            print_flags(f"[{name}] ", run)
        if late_stop():
            safe_print(f"[{name}] {late_stop()} arrived after the last step: this run finished", sys.stderr)
            break
    if len(runs) > 1 and not args.json:
        _print_group(name, runs)
    return None


def _without_deps(manifest, names: list[str]) -> list[str]:
    """``--no-deps``: the named experiments; a study's own steps in plan order, without what lies outside it."""
    out = []
    for n in names:
        exp = manifest.get(n)
        out += [s for s in manifest.job_plan([n]) if s in exp.steps] if exp.task == "study" else [n]
    return list(dict.fromkeys(out))


def _print_group(name: str, runs) -> None:
    """Mean ± sample std and n of the seed runs just made, for the metrics worth a headline."""
    from engine.store.seeds import fmt_stat, group_stats

    stats = group_stats(runs)
    shown = [
        k for k in ("final.mlm_perplexity", "final.accuracy", "final.f1", "final.exact", "final.best_f1") if k in stats
    ]
    seeds = ", ".join(str(r.config().get("seed")) for r in runs)
    body = "; ".join(f"{k.removeprefix('final.')} {fmt_stat(stats[k])}" for k in shown) or "no metrics"
    safe_print(f"[{name}] seeds {seeds}: {body} (sample std)")


def _run_detached(manifest, args) -> int:
    """``run --detach``: queue the experiments (dependencies first unless ``--no-deps``) and return."""
    from engine.queue.jobqueue import JobQueue

    queue = JobQueue(manifest)
    added = queue.submit(args.experiments, with_deps=not args.no_deps, again=args.again)
    for job in added:
        print(
            f"queued #{job.id} {job.experiment}"
            + (f" (after #{', #'.join(map(str, job.depends_on))})" if job.depends_on else "")
        )
    for name in queue.last_skipped:
        print(f"{name}: already queued or running; add --again to queue another run", file=sys.stderr)
    if added:
        print(f"runs in {manifest.runs_dir}; follow with `lmconsole attach` or `lmconsole queue`")
    return 0 if added or not queue.last_skipped else 1
