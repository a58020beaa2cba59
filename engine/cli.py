"""Headless command line: ``lmconsole run|runs|params|export|check|control``.

Imports only the standard library at module level so ``lmconsole --help``
answers instantly; each command imports what it needs. With no command, the
entry point (``tui.entry``) opens the console instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

FORMAT_CHOICES = ("csv", "md", "latex", "json")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lmconsole",
        description="Pretrain and fine-tune BERT-style models from a terminal console. "
        "Without a command, opens the console on ./experiments.toml.",
    )
    p.add_argument("--manifest", "-m", default="experiments.toml", help="experiment manifest (default: ./experiments.toml)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="run experiments headless (dependencies first)")
    r.add_argument("experiments", nargs="+", metavar="EXPERIMENT")
    r.add_argument("--json", action="store_true", help="print events as JSON lines instead of progress lines")
    r.add_argument("--resume", action="store_true", help="continue the latest unfinished run of each experiment from its checkpoint")
    r.add_argument("--no-deps", action="store_true", help="do not run missing dependencies first")
    r.add_argument("--quiet", "-q", action="store_true", help="only print the summary")
    r.add_argument("--detach", "-d", action="store_true",
                   help="queue them (each job then runs in its own process) and return; see `lmconsole queue`")
    r.add_argument("--again", action="store_true", help="with --detach: queue another run even if one is queued or running")

    s = sub.add_parser("runs", help="list runs on disk")
    s.add_argument("experiment", nargs="?")
    s.add_argument("--json", action="store_true")

    pa = sub.add_parser("params", help="parameter table of a model (no weights loaded)")
    pa.add_argument("model", help="preset (bert-base, bert-tiny, bert-micro), Hub id, local folder, or run:<experiment>")
    pa.add_argument("--head", default="base", choices=("base", "pretraining", "mlm", "classification", "qa"))
    pa.add_argument("--diff-against", metavar="HEAD", choices=("base", "pretraining", "mlm", "classification", "qa"),
                    help="show the diff from this head to --head instead")
    pa.add_argument("--format", default="table", choices=("table",) + FORMAT_CHOICES)
    pa.add_argument("--full", action="store_true", help="every tensor instead of the grouped view")

    e = sub.add_parser("export", help="export the tables of runs")
    e.add_argument("runs", nargs="*", metavar="RUN", help="experiment (latest run), experiment/run-id, or a run-id prefix")
    e.add_argument("--all", action="store_true", help="every run on disk")
    e.add_argument("--format", action="append", choices=FORMAT_CHOICES, help="repeatable; default: all four")
    e.add_argument("--out", default="exports", help="output folder (default: ./exports)")

    c = sub.add_parser("check", help="validate the manifest and print the plan")
    c.add_argument("--reference", action="store_true", help="print the manifest key reference (Markdown)")

    pu = sub.add_parser("push", help="upload a finished run to the Hugging Face Hub with a model card")
    pu.add_argument("run", metavar="RUN")
    pu.add_argument("--repo", required=True, metavar="OWNER/NAME")
    pu.add_argument("--private", action="store_true")
    pu.add_argument("--revision", metavar="BRANCH", help="upload to this branch (created if missing)")
    pu.add_argument("--dry-run", action="store_true", help="write the exact folder that would be uploaded, upload nothing")
    pu.add_argument("--out", help="folder for --dry-run (default: ./push-<experiment>-<run-id>)")

    qu = sub.add_parser("queue", help="show or change the job queue of the runs directory (shared by consoles and CLI)")
    qu.add_argument("action", nargs="?", default="list",
                    choices=("list", "pause", "resume", "cancel", "retry", "up", "down", "clean"))
    qu.add_argument("job", nargs="?", metavar="JOB", help="job number (as listed), or an experiment (its latest job)")
    qu.add_argument("--json", action="store_true")

    at = sub.add_parser("attach", help="follow a queued or running job's progress (ctrl+c detaches; the job goes on)")
    at.add_argument("job", nargs="?", metavar="JOB", help="job number or experiment (default: the first running job)")
    at.add_argument("--json", action="store_true", help="print events as JSON lines")

    ct = sub.add_parser("control", help="pause, resume or cancel a running job (any process)")
    ct.add_argument("run", metavar="RUN")
    ct.add_argument("action", choices=("pause", "resume", "cancel"))
    return p


def _fail(msg: str, code: int = 2) -> int:
    print(f"lmconsole: {msg}", file=sys.stderr)
    return code


def _load_manifest(path: str):
    from .manifest import ManifestError, load

    try:
        return load(path), None
    except ManifestError as exc:
        return None, exc.format()


def main(argv=None, console=None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        if console is None:
            return _fail("the console is not available here; use a command (see --help)")
        return console(args.manifest)
    handler = {
        "run": cmd_run, "runs": cmd_runs, "params": cmd_params, "export": cmd_export,
        "check": cmd_check, "control": cmd_control, "push": cmd_push,
        "queue": cmd_queue, "attach": cmd_attach,
    }[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


# -- progress printing ----------------------------------------------------------

def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def fmt_metric(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class ProgressPrinter:
    """Turns events into short progress lines on stdout (or JSON lines with ``as_json``)."""

    def __init__(self, experiment: str, as_json: bool = False, quiet: bool = False, stream=None):
        self.exp = experiment
        self.as_json = as_json
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self._last_progress = 0.0

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def emit(self, event) -> None:
        from . import events as ev

        if self.as_json:
            self._print(ev.to_json(event))
            return
        if self.quiet and not isinstance(event, ev.JobFailed):
            return
        tag = f"[{self.exp}]"
        if isinstance(event, ev.StepLogged):
            parts = " ".join(f"{k} {v:.4f}" for k, v in event.parts.items())
            tps = f"{event.tokens_per_s / 1000:.1f}k tok/s" if event.tokens_per_s else ""
            self._print(
                f"{tag} step {event.step}/{event.total_steps} epoch {event.epoch:.2f} loss {event.loss:.4f} {parts} "
                f"lr {event.learning_rate:.2e} {tps} ETA {fmt_duration(event.eta_s)}"
            )
        elif isinstance(event, ev.EvalFinished):
            shown = ", ".join(f"{k} {fmt_metric(v)}" for k, v in event.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
            self._print(f"{tag} eval epoch {event.epoch} ({event.split}): {shown}")
        elif isinstance(event, ev.ProgressUpdated):
            now = time.monotonic()
            if event.done >= event.total or now - self._last_progress > 2:
                self._last_progress = now
                self._print(f"{tag} {event.phase}: {event.done}/{event.total}")
        elif isinstance(event, ev.PhaseStarted):
            self._print(f"{tag} {event.phase}{': ' + event.detail if event.detail else ''}")
        elif isinstance(event, ev.LogEmitted):
            self._print(f"{tag} {event.level}: {event.message}" if event.level != "info" else f"{tag} {event.message}")
        elif isinstance(event, ev.CheckpointSaved):
            self._print(f"{tag} checkpoint at step {event.step}: {event.path}")
        elif isinstance(event, ev.JobFailed):
            self._print(f"{tag} FAILED: {event.reason}" + (f"\n{tag} hint: {event.hint}" if event.hint else ""))
        elif isinstance(event, ev.StatusChanged) and event.status in ("paused", "cancelled"):
            self._print(f"{tag} {event.status}{': ' + event.reason if event.reason else ''}")


# -- commands -----------------------------------------------------------------------

def cmd_run(args) -> int:
    manifest, err = _load_manifest(args.manifest)
    if err:
        print(err, file=sys.stderr)
        return 2
    from .jobs import run_experiment
    from .runs import RunStore
    from .status import RESUMABLE

    unknown = [n for n in args.experiments if n not in manifest.names]
    if unknown:
        return _fail(f"unknown experiment {unknown[0]!r}; the manifest has: {', '.join(manifest.names)}")
    if args.detach:
        return _run_detached(manifest, args)
    store = RunStore(manifest.runs_dir)
    plan = args.experiments if args.no_deps else manifest.plan(args.experiments)
    requested = set(args.experiments)
    failed: dict[str, str] = {}
    for name in plan:
        exp = manifest.get(name)
        blocked = [d for d in exp.dependencies if d in failed]
        if blocked:
            failed[name] = f"blocked: dependency {blocked[0]!r} failed"
            print(f"[{name}] {failed[name]}", file=sys.stderr)
            continue
        if name not in requested and store.latest(name, status="finished") is not None:
            continue  # dependency already satisfied by a finished run
        resume = None
        if args.resume:
            last = store.latest(name)
            if last is not None and last.status().get("status") in RESUMABLE | {"paused"}:
                resume = last
            elif last is not None and last.status().get("status") == "running":
                return _fail(f"{name}: its latest run is running in another process; use `lmconsole control {name} ...`")
        printer = ProgressPrinter(name, as_json=args.json, quiet=args.quiet)
        if not args.json:
            print(f"[{name}] {'resuming ' + resume.run_id if resume else 'starting'} ({exp.task})", flush=True)
        run = run_experiment(manifest, name, sinks=[printer], resume=resume, store=store)
        st = run.status()
        if st.get("status") != "finished":
            failed[name] = st.get("reason") or st.get("status")
            if st.get("status") == "cancelled":
                print(f"[{name}] cancelled; resume with: lmconsole run {name} --resume", file=sys.stderr)
        elif not args.json:
            print(f"[{name}] finished: {run.path}", flush=True)
    if failed:
        first = next(iter(failed.items()))
        return _fail(f"{first[0]}: {first[1]}", 1)
    return 0


def cmd_runs(args) -> int:
    manifest, err = _load_manifest(args.manifest)
    if err:
        print(err, file=sys.stderr)
        return 2
    from .runs import RunStore

    runs = RunStore(manifest.runs_dir).runs(args.experiment)
    rows = []
    for run in runs:
        st = run.status()
        rows.append({"experiment": run.experiment, "run": run.run_id, "status": st.get("status"),
                     "reason": st.get("reason", ""), "path": str(run.path)})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no runs under {manifest.runs_dir}")
        return 0
    for r in rows:
        print(f"{r['experiment']:<20} {r['run']:<32} {r['status']:<12} {r['reason'][:60]}")
    return 0


def cmd_params(args) -> int:
    from .hub import ResolveError
    from .models import PRESETS, load_config, preset_config
    from .params import diff_table, full_table, grouped_table, rows_for

    try:
        if args.model.startswith("run:"):
            manifest, err = _load_manifest(args.manifest)
            if err:
                print(err, file=sys.stderr)
                return 2
            from .jobs import JobError, dependency_run
            from .runs import RunStore

            try:
                path = dependency_run(RunStore(manifest.runs_dir), args.model[4:]).final_model()
            except JobError as exc:
                return _fail(f"{exc.reason}; {exc.hint}")
            config = load_config(str(path))
        elif args.model in PRESETS:
            config = preset_config(args.model)
        else:
            config = load_config(args.model)
    except (ResolveError, OSError, ValueError) as exc:
        return _fail(str(exc).splitlines()[0])
    rows = rows_for(config, args.head)
    if args.diff_against:
        table = diff_table(rows_for(config, args.diff_against), rows, args.diff_against, args.head)
    else:
        table = full_table(rows, args.head) if args.full else grouped_table(rows, args.head)
    if args.format == "table":
        print(table.to_markdown())
    else:
        sys.stdout.write(table.render(args.format))
    return 0


def cmd_export(args) -> int:
    manifest, err = _load_manifest(args.manifest)
    if err:
        print(err, file=sys.stderr)
        return 2
    from .export import export_runs
    from .runs import RunStore

    store = RunStore(manifest.runs_dir)
    if args.all:
        runs = store.runs()
    elif args.runs:
        try:
            runs = [store.get(ref) for ref in args.runs]
        except (KeyError, ValueError) as exc:
            return _fail(str(exc).strip("'\""))
    else:
        return _fail("name runs to export, or pass --all")
    if not runs:
        return _fail(f"no runs under {manifest.runs_dir}")
    formats = tuple(args.format or FORMAT_CHOICES)
    written = export_runs(runs, Path(args.out), formats)
    print(f"exported {len(written)} files for {len(runs)} run(s) to {Path(args.out).resolve()}")
    return 0


def cmd_check(args) -> int:
    if args.reference:
        from .manifest import reference_markdown

        print(reference_markdown())
        return 0
    manifest, err = _load_manifest(args.manifest)
    if err:
        print(err, file=sys.stderr)
        return 2
    print(f"{manifest.path}: {len(manifest.experiments)} experiments, runs in {manifest.runs_dir}")
    for exp in manifest.experiments:
        deps = f" (after {', '.join(exp.dependencies)})" if exp.dependencies else ""
        print(f"  {exp.name:<20} {exp.task:<9} {exp.model}{deps}")
    return 0


def cmd_push(args) -> int:
    manifest, err = _load_manifest(args.manifest)
    if err:
        print(err, file=sys.stderr)
        return 2
    from .push import PushError, push
    from .runs import RunStore

    try:
        run = RunStore(manifest.runs_dir).get(args.run)
        result = push(run, args.repo, private=args.private, revision=args.revision, dry_run=args.dry_run,
                      out=Path(args.out) if args.out else None)
    except (KeyError, ValueError) as exc:
        return _fail(str(exc).strip("'\""))
    except PushError as exc:
        return _fail(str(exc), 1)
    if result["dry_run"]:
        print(f"dry run: {len(result['files'])} files in {Path(result['folder']).resolve()} "
              f"(would go to {result['repo_id']}, {'private' if result['private'] else 'public'}"
              f"{', branch ' + result['revision'] if result['revision'] else ''}):")
        for name in result["files"]:
            print(f"  {name}")
    else:
        print(f"pushed {run.experiment}/{run.run_id} to https://huggingface.co/{result['repo_id']}"
              f"{' (branch ' + result['revision'] + ')' if result['revision'] else ''}")
    return 0


def cmd_control(args) -> int:
    manifest, err = _load_manifest(args.manifest)
    if err:
        print(err, file=sys.stderr)
        return 2
    from .runs import RunStore

    from .queue import JobQueue

    try:
        run = RunStore(manifest.runs_dir).get(args.run)
    except (KeyError, ValueError) as exc:
        return _fail(str(exc).strip("'\""))
    status = run.status().get("status")
    if status not in ("running", "paused"):
        return _fail(f"{run.experiment}/{run.run_id} is {status}, not running")
    print(JobQueue(manifest).control_run(run, args.action))
    return 0


# -- the queue on disk (issue 12): run --detach, queue, attach --------------------------------------

def _run_detached(manifest, args) -> int:
    from .queue import JobQueue

    queue = JobQueue(manifest)
    added = queue.submit(args.experiments, with_deps=not args.no_deps, again=args.again)
    for job in added:
        print(f"queued #{job.id} {job.experiment}" + (f" (after #{', #'.join(map(str, job.depends_on))})" if job.depends_on else ""))
    for name in queue.last_skipped:
        print(f"{name}: already queued or running; add --again to queue another run", file=sys.stderr)
    if added:
        print(f"runs in {manifest.runs_dir}; follow with `lmconsole attach` or `lmconsole queue`")
    return 0 if added or not queue.last_skipped else 1


def _find_job(queue, ref: str | None, prefer_running: bool = False):
    jobs = queue.refresh()
    if ref is None:
        if prefer_running:
            return next((j for j in jobs if j.active), None) or next((j for j in jobs if j.waiting), None)
        return None
    ref = ref.lstrip("#")
    if ref.isdigit():
        return next((j for j in jobs if j.id == int(ref)), None)
    return next((j for j in reversed(jobs) if j.experiment == ref), None)


def _job_row(job) -> dict:
    step = job.metrics.last_step
    return {"id": job.id, "experiment": job.experiment, "status": str(job.status), "reason": job.reason,
            "run": f"{job.run.experiment}/{job.run.run_id}" if job.run else None, "depends_on": list(job.depends_on),
            "gpus": job.gpus, "devices": list(job.devices),
            "step": step.step if step else None, "total_steps": step.total_steps if step else None}


def cmd_queue(args) -> int:
    manifest, err = _load_manifest(args.manifest)
    if err:
        print(err, file=sys.stderr)
        return 2
    from .queue import JobQueue

    queue = JobQueue(manifest)
    if args.action == "clean":
        print(f"dropped {queue.clean()} ended job(s) from the queue (their runs stay)")
        return 0
    if args.action != "list":
        if args.job is None:
            return _fail(f"name the job: lmconsole queue {args.action} JOB (see `lmconsole queue`)")
        job = _find_job(queue, args.job)
        if job is None:
            return _fail(f"no job {args.job!r} in the queue (see `lmconsole queue`)")
        print(queue.control(job, args.action))
        return 0
    jobs = queue.refresh()
    if args.json:
        print(json.dumps([_job_row(j) for j in jobs], indent=1))
        return 0
    if not jobs:
        print(f"the queue of {manifest.runs_dir} is empty")
        return 0
    width = max(len(j.experiment) for j in jobs)
    for j in jobs:
        row = _job_row(j)
        progress = f"step {row['step']}/{row['total_steps']}" if row["step"] else ""
        where = f"gpu {','.join(map(str, j.devices))}" if j.devices and j.active else ""
        note = j.reason if j.status in ("failed", "blocked", "cancelled", "interrupted") else (row["run"] or "")
        print(f"#{j.id:<3} {j.experiment:<{width}} {str(j.status):<11} {progress:<14} {where:<8} {note}"[:200].rstrip())
    return 0


def cmd_attach(args) -> int:
    manifest, err = _load_manifest(args.manifest)
    if err:
        print(err, file=sys.stderr)
        return 2
    from .follow import RunFollower
    from .queue import JobQueue
    from .status import FINAL

    queue = JobQueue(manifest)
    job = _find_job(queue, args.job, prefer_running=True)
    if job is None:
        return _fail("no such job in the queue" if args.job else "no job runs or waits; see `lmconsole queue`")
    printer = ProgressPrinter(job.experiment, as_json=args.json)
    if not args.json:
        print(f"[{job.experiment}] job #{job.id} {job.status}; ctrl+c detaches (the job goes on)", flush=True)
    follower = None
    try:
        while True:
            job = queue.get(job.id)
            if job.run is not None and (follower is None or follower.run.path != job.run.path):
                follower = RunFollower(job.run)
            if follower is not None:
                for ev in follower.poll()[0]:
                    printer.emit(ev)
            if job.status in FINAL:
                if not args.json:
                    print(f"[{job.experiment}] {job.status}" + (f": {job.reason}" if job.reason else ""), flush=True)
                return 0 if job.status == "finished" else 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        if not args.json:
            print(f"[{job.experiment}] detached; job #{job.id} goes on", flush=True)
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
