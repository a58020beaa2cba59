"""Jobs of the runs directory's queue (shared with the consoles): ``queue`` shows and changes it,
``attach`` follows a job's progress, ``control`` pauses, resumes or cancels a running run."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
import time

from engine.cli.output import ProgressPrinter
from engine.cli.refs import as_user_error, get_run
from engine.errors import NotFound, UserError
from engine.status import ACTIVE, STOPPED


def _find_job(queue, ref: str | None, prefer_running: bool = False):
    jobs = queue.refresh()
    if ref is None:
        if prefer_running:
            return next((j for j in jobs if j.active), None) or next((j for j in jobs if j.waiting), None)
        return None
    ref = ref.lstrip("#")
    jobs = [j for j in jobs if not j.quarantined]  # shown, never controlled
    if ref.isdigit():
        return next((j for j in jobs if j.id == int(ref)), None)
    return next((j for j in reversed(jobs) if j.experiment == ref), None)


def _job_row(job) -> dict:
    step = job.metrics.last_step
    return {
        "id": job.id,
        "quarantined": job.quarantined,
        "experiment": job.experiment,
        "status": str(job.status),
        "reason": job.reason,
        "run": f"{job.run.experiment}/{job.run.run_id}" if job.run else None,
        "depends_on": list(job.depends_on),
        "gpus": job.gpus,
        "devices": list(job.devices),
        "step": step.step if step else None,
        "total_steps": step.total_steps if step else None,
    }


def cmd_queue(args, manifest) -> int:
    from engine.queue.jobqueue import JobQueue, shell_commands

    queue = JobQueue(manifest)
    if args.action == "clean":
        print(f"dropped {queue.clean()} ended job(s) from the queue (their runs stay)")
        return 0
    if args.action != "list":
        if args.job is None:
            raise UserError(f"name the job: lmconsole queue {args.action} JOB (see `lmconsole queue`)")
        job = _find_job(queue, args.job)
        if job is None:
            raise NotFound(f"no job {args.job!r} in the queue (see `lmconsole queue`)")
        print(queue.control(job, args.action, shell_commands))
        return 0
    jobs = queue.refresh()
    if args.json:
        print(json.dumps([_job_row(j) for j in jobs], indent=1))
        return 0
    if not jobs:
        print(f"the queue of {manifest.runs_dir} is empty")
        return 0
    table = []
    for j in jobs:
        row = _job_row(j)
        progress = f"step {row['step']}/{row['total_steps']}" if row["step"] else ""
        where = f"gpu {','.join(map(str, j.devices))}" if j.devices and j.active else ""
        # a stopped or stalled job says why; a queued one why it waits, when the scheduler said (e.g. GPU memory)
        note = (
            j.reason
            if j.status in STOPPED | {"stalled"} or (j.status == "queued" and j.reason)
            else (j.run.run_id if j.run else "")
        )
        table.append(
            [
                "#--" if j.quarantined else f"#{j.id}",
                j.experiment,
                str(j.status),
                progress,
                where,
                " ".join(note.split()),
            ]
        )
    for line in _queue_lines(table, shutil.get_terminal_size().columns if sys.stdout.isatty() else None):
        print(line)
    return 0


def _queue_lines(table: list[list[str]], width: int | None) -> list[str]:
    """The queue's rows aligned; in a terminal ``width`` wide no line wraps: run ids shrink to their
    short form and the last cell (the run, or why the job stopped) wraps under its own column."""
    from engine.store.listing import align, short_ids

    cols = [i for i in range(len(table[0])) if i == len(table[0]) - 1 or any(r[i] for r in table)]
    rows = [[r[i] for i in cols] for r in table]  # a column no job fills (e.g. gpu) is left out
    lines = align([""] * len(cols), rows)[1:]
    if width is None or max(map(len, lines)) <= width:
        return lines
    ids = short_ids([r[-1] for r in rows if r[-1] and " " not in r[-1]])
    heads = align([""] * (len(cols) - 1), [r[:-1] for r in rows])[1:]
    start = max(map(len, heads)) + 2
    out: list[str] = []
    for head, r in zip(heads, rows):
        last = ids.get(r[-1], r[-1])
        if start <= width - 20:
            out += textwrap.wrap(last, width, initial_indent=head.ljust(start), subsequent_indent=" " * start) or [head]
        else:  # no room beside: the last cell on lines of its own
            out += [head[:width]] + textwrap.wrap(last, width, initial_indent="    ", subsequent_indent="    ")
    return out


def cmd_attach(args, manifest) -> int:
    from engine.queue.jobqueue import JobQueue
    from engine.status import FINAL
    from engine.store.follow import RunFollower

    queue = JobQueue(manifest)
    job = _find_job(queue, args.job, prefer_running=True)
    if job is None:
        raise NotFound("no such job in the queue" if args.job else "no job runs or waits; see `lmconsole queue`")
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


def cmd_control(args, manifest) -> int:
    from engine.store.runs import RunStore

    store = RunStore(manifest.runs_dir)
    with as_user_error():
        run = get_run(store, args.run)
        if "/" not in args.run and run.status().get("status") not in ACTIVE:
            # `control EXP`: the experiment's live run, even when a newer one is dead
            live = [r for r in store.runs(args.run.strip()) if r.status().get("status") in ACTIVE]
            run = live[-1] if live else run
    status = run.status().get("status")
    if status not in ACTIVE:
        raise UserError(f"{run.experiment}/{run.run_id} is {status}, not running")
    from engine.queue.jobqueue import JobQueue

    print(JobQueue(manifest).control_run(run, args.action))  # through its job when the queue has one
    return 0
