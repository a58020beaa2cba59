"""The scheduler of one runs directory: ``python -m engine.queue.scheduler --runs-dir R --manifest M``.

Started on demand (detached, its own session) by any client that queues work;
at most one runs per runs directory (``scheduler.lock``). Every half second it
starts what may start (:func:`engine.queue.schedule.advance`: slots, GPUs, dependencies),
reaps its children and watches its running jobs for stalls (a stalled job cannot tell the
user itself: :mod:`engine.queue.watchdog` does, once per stall). It exits when no job waits
or runs; a client that queues more, or a job process that ends, starts it again. Job
processes do not depend on it: killing the scheduler stops only the starting of new jobs
(and the stall notifications) until the next start.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.queue.scheduler")
    p.add_argument("--runs-dir", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--poll", type=float, default=0.5)
    args = p.parse_args(argv)

    from engine.errors import ManifestError
    from engine.job.notify import wait_sent
    from engine.manifest import load
    from engine.queue.entry import EntryState
    from engine.queue.gpus import scheduler_gpus
    from engine.queue.launch import ProcessLauncher
    from engine.queue.queuefile import QueueDirError, QueueFile, flock, unlock
    from engine.queue.schedule import advance, statuses
    from engine.queue.watchdog import StallWatch
    from engine.status import ACTIVE
    from engine.store.runs import RunStore

    qf = QueueFile(args.runs_dir)
    try:
        qf.dir.mkdir(parents=True, exist_ok=True)
        me = flock(qf.scheduler_lock, blocking=False)
    except (QueueDirError, OSError) as exc:  # stop with a message, never start and die in a loop
        print(f"scheduler: cannot take {qf.scheduler_lock}: {exc}", file=sys.stderr, flush=True)
        return 2
    if me is None:
        return 0  # another scheduler has it
    os.ftruncate(me, 0)
    os.write(me, str(os.getpid()).encode())
    launcher = ProcessLauncher()
    store = RunStore(args.runs_dir)
    manifest, stamp = None, None
    told: list = []  # quarantine records already written to the log
    watch = StallWatch(qf)
    try:
        while True:
            try:
                now = os.stat(args.manifest).st_mtime_ns
                if now != stamp:
                    manifest, stamp = load(args.manifest), now  # edits apply to jobs started later
            except (OSError, ManifestError) as exc:
                if manifest is None:
                    print(f"scheduler: cannot load {args.manifest}: {exc}", file=sys.stderr, flush=True)
                    return 2
            assert manifest is not None  # loaded above, or the last good one is kept
            try:
                for job_id in advance(qf, manifest, launcher):
                    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} started job {job_id}", flush=True)
            except QueueDirError as exc:
                print(f"scheduler: {exc}", file=sys.stderr, flush=True)
                return 2
            for q in qf.quarantined()[len(told) :]:  # set apart by advance's change: never run
                told.append(q)
                print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} quarantined: {q.reason}", flush=True)
            launcher.reap()
            # Exit only under the queue lock: a client that queues meanwhile either is seen
            # here or finds the scheduler lock free afterwards and starts a new scheduler.
            with qf.locked():
                state = qf.read()
                st = statuses(state, store, launcher.alive, len(scheduler_gpus(manifest.settings)))
                waiting = any(e.state is EntryState.QUEUED and st[e.id][0] == "queued" for e in state.jobs)
                running = any(e.state is EntryState.STARTED and st[e.id][0] in ACTIVE for e in state.jobs)
                if not waiting and not running:  # running: stay to watch it for stalls
                    unlock(me)
                    me = None
                    return 0
            for line in watch.check(state, st, store, manifest.settings.notify):
                print(line, flush=True)
            time.sleep(args.poll)
    finally:
        if me is not None:
            unlock(me)
        wait_sent()  # a stall notice still on its way (its thread would die with this process)


if __name__ == "__main__":
    sys.exit(main())
