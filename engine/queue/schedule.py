"""What each queue entry's status is, and which waiting jobs start now.

A job's status is *derived*, never saved: a started job's status is its run's
(``Run.status``, with the owner-lock liveness check), a waiting job is ``queued``,
``paused`` while held, or ``blocked`` while one of its dependencies stopped without
finishing. So a dependency that is resumed later and finishes unblocks its dependants,
and a console started after a crash sees the truth.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.queue.entry import EntryState, QueueEntry, QueueState
from engine.queue.fit import Candidate, candidate, gpu_rooms, place
from engine.queue.gpus import scheduler_gpus
from engine.queue.queuefile import QUEUE_DIR, QueueFile
from engine.status import ACTIVE, FINAL, SATISFIED, STOPPED
from engine.store.runs import Run, RunStore

Alive = Callable[[QueueEntry], bool]  # whether an entry's job process (or thread) still runs


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def entry_status(
    entry: QueueEntry,
    by_id: dict[int, QueueEntry],
    store: RunStore,
    alive: Alive,
    gpu_count: int | None = None,
    _memo: dict | None = None,
) -> tuple[str, str]:
    """(status, reason) of one queue entry, from its run directory and its dependencies."""
    memo = {} if _memo is None else _memo
    key = entry.id
    if key in memo:
        return memo[key]
    memo[key] = ("queued", "")  # a cycle (hand-edited file) reads as waiting, never recurses forever
    if entry.state is EntryState.REMOVED:
        out = ("cancelled", entry.reason or "removed from the queue")
    elif entry.state is EntryState.STARTED and entry.run:
        run = Run(store.root / entry.run)
        st = run.status()
        status, reason = st.get("status", "queued"), str(st.get("reason", "") or "")
        if status in FINAL and entry.resume and _mtime(run.path / "status.json") < (entry.started or 0):
            status = "queued"  # a resume whose process has not written yet: the status is the last attempt's
        if status == "queued":  # the process has not taken its run directory yet
            if alive(entry):
                status, reason = "running", "starting"
            else:
                status = "failed"
                reason = f"the job process exited before it started (see {QUEUE_DIR}/logs/job-{key}.log)"
        out = (status, reason)
    elif entry.held:  # paused while waiting: the scheduler skips it (and so its dependants wait)
        # reasons name the next step as an action, not a console key: `lmconsole queue` shows them too
        out = ("paused", "held in the queue: it starts once resumed")
    elif entry.blocked:  # the scheduler found it fits no GPU of this machine
        out = ("blocked", entry.blocked)
    else:
        out = ("queued", "")
        for dep_id in entry.depends_on:
            dep = by_id.get(dep_id)
            if dep is None:
                continue
            ds, _ = entry_status(dep, by_id, store, alive, gpu_count, memo)
            if ds in STOPPED:
                out = ("blocked", f"dependency {dep.experiment} {ds}; it runs once #{dep_id} is retried and finishes")
                break
        if out[0] == "queued" and gpu_count is not None and entry.gpus > gpu_count:
            out = ("blocked", f"needs {entry.gpus} GPU(s); settings.gpus offers {gpu_count}")
        elif out[0] == "queued" and entry.waiting:
            out = ("queued", entry.waiting)  # e.g. waiting for GPU memory, as the scheduler last saw it
    memo[key] = out
    return out


def statuses(
    state: QueueState, store: RunStore, alive: Alive, gpu_count: int | None = None
) -> dict[int, tuple[str, str]]:
    """(status, reason) of every entry of the queue, by job id."""
    by_id = {e.id: e for e in state.jobs}
    memo: dict = {}
    return {e.id: entry_status(e, by_id, store, alive, gpu_count, memo) for e in state.jobs}


def external_active(store: RunStore, known: set[str]) -> int:
    """Runs of this directory running outside the queue (e.g. a foreground ``lmconsole run``)."""
    n = 0
    for run in store.runs():
        ref = f"{run.experiment}/{run.run_id}"
        if ref in known:
            continue
        if run.raw_status().get("status") in ACTIVE and run.owner_alive():
            n += 1
    return n


def entry_manifest(entry: QueueEntry, runs_dir: Path, cache: dict | None = None) -> tuple[Any, str]:
    """``(manifest, "")`` for the manifest ``entry`` was queued from, or ``(None, why not)``.

    The queue folder is shared, so the path in an entry is not trusted: the file must belong to
    this process's user (nobody else can make us run their experiments, e.g. with remote code) and
    its ``runs_dir`` must be this runs directory (the queue belongs to it). ``cache``: path ->
    answer, for the scheduler's pass.
    """
    from engine.errors import ManifestError
    from engine.manifest import load

    path = str(Path(entry.manifest or "").resolve())
    cache = {} if cache is None else cache
    if path not in cache:
        name = Path(path).name
        try:
            owner = os.stat(path).st_uid
            m = load(path)
        except (ManifestError, OSError):
            cache[path] = (None, f"{entry.experiment}: {name} no longer loads")
        else:
            if owner != os.getuid():
                cache[path] = (None, f"{entry.experiment}: {path} belongs to another user; queue it from your own")
            elif Path(m.runs_dir).resolve() != Path(runs_dir).resolve():
                cache[path] = (None, f"{entry.experiment}: {name} keeps its runs elsewhere, not in this runs directory")
            else:
                cache[path] = (m, "")
    m, why = cache[path]
    if m is not None and entry.experiment not in m.names:
        return None, f"{entry.experiment} is no longer in {Path(path).name}"
    return m, why


def advance(queue_file: QueueFile, manifest, launcher) -> list[int]:
    """Start every waiting job that may start now (slots, GPUs, dependencies); returns their ids.

    Called by the scheduler in a loop (or by a test client). All under the queue lock:
    two schedulers, or a client submitting meanwhile, never start one job twice.
    ``launcher`` has ``alive(entry)`` and ``start(queue_file, entry, devices) -> pid``.
    """
    store = RunStore(queue_file.dir.parent)
    gpus = scheduler_gpus(manifest.settings)
    started: list[int] = []
    with queue_file.change() as state:
        st = statuses(state, store, launcher.alive, len(gpus))
        own = {str(Path(manifest.path).resolve()): (manifest, "")}
        rooms = gpu_rooms(gpus)  # NVML's free memory per GPU; None: count whole GPUs only
        estimates: dict = {}

        def as_candidate(e: QueueEntry) -> Candidate:
            queued_from = entry_manifest(e, store.root, own)[0] if rooms is not None else None
            if queued_from is None:
                return Candidate(e.id, e.gpus, name=e.experiment)
            return candidate(e, queued_from, store, estimates)

        on_gpu: dict[int, list[tuple[float | None, int | None]]] = {g: [] for g in gpus}
        active = 0
        for e in state.jobs:
            # A job's process holds its slot and GPUs until it exits, not only while its run is
            # active: one that wrote "finished" may still free GPU memory for a second or so.
            if e.state is EntryState.STARTED and (st[e.id][0] in ACTIVE or launcher.alive(e)):
                active += 1
                need = as_candidate(e).need if e.devices else None
                for g in e.devices:
                    on_gpu.setdefault(g, []).append((need, e.pid))
        active += external_active(store, {e.run for e in state.jobs if e.run})
        waiting = []
        slots = _sweep_slots(state, st, launcher, manifest)
        for e in state.jobs:
            if e.state is not EntryState.QUEUED or st[e.id][0] != "queued":
                continue
            if any(st[d][0] not in SATISFIED for d in e.depends_on if d in st):
                continue  # a dependency still waits or runs
            if e.sweep is not None:  # a sweep runs at most `parallel` trials at once
                if slots.get(e.sweep, 1) <= 0:
                    continue
                slots[e.sweep] = slots.get(e.sweep, 1) - 1
            waiting.append(as_candidate(e))
        placed = place(
            waiting,
            list(gpus),
            on_gpu,
            rooms,
            manifest.settings.max_parallel_jobs - active,
            manifest.settings.gpu_sharing,
        )
        picks = placed.picks
        for c in waiting:  # why each job still waits, or never starts, as this pass saw it (shown as its reason)
            entry = state.get(c.id)
            why = (placed.waiting.get(c.id) if rooms is not None else None, placed.blocked.get(c.id))
            if entry is not None and c.id not in picks and (entry.waiting, entry.blocked) != why:
                state.change(c.id, waiting=why[0], blocked=why[1])
        own = {str(Path(manifest.path).resolve()): (manifest, "")}
        for job_id, devices in picks.items():
            entry = state.get(job_id)
            assert entry is not None  # picked from this state's entries
            # the manifest it was queued from (several may share runs/), if it may be used
            queued_from, reason = entry_manifest(entry, store.root, own)
            if queued_from is None:
                state.change(job_id, state=EntryState.REMOVED, reason=reason)
                continue
            if not entry.run and entry.sweep is not None:
                trial = _start_trial(queued_from, entry, store, launcher)
                if isinstance(trial, str):  # the sweep has all its trials, or its study cannot be reached
                    state.change(job_id, state=EntryState.REMOVED, reason=trial)
                    continue
                run, ref, seen = trial, f"{trial.experiment}/{trial.run_id}", 0
            elif not entry.run:
                from engine.job.runner import experiment_for

                exp = experiment_for(queued_from, entry.experiment, None, entry.seed)  # one seed of ``seeds``
                run = store.create(exp.name, exp.to_dict() | ({"group": entry.group} if entry.group else {}))
                ref, seen = f"{run.experiment}/{run.run_id}", 0
            else:
                run = Run(store.root / entry.run)
                ref, seen = entry.run, int(run.pending_request().get("seq", 0))  # an old cancel must not fire again
            entry = state.change(
                job_id,
                run=ref,
                seen_seq=seen,
                state=EntryState.STARTED,
                devices=tuple(devices),
                started=time.time(),
                waiting=None,
            )
            state.change(job_id, pid=launcher.start(queue_file, entry, devices))
            started.append(job_id)
    return started


def _sweep_slots(state: QueueState, st: dict, launcher, manifest) -> dict[str, int]:
    """Per sweep (study name): how many more of its trials may start now (``parallel`` less those running)."""
    slots: dict[str, int] = {}
    for e in state.jobs:
        if e.sweep is None or e.sweep in slots:
            continue
        exp = manifest.get(e.experiment) if e.experiment in manifest.names else None
        slots[e.sweep] = exp.sweep.parallel if exp is not None and exp.sweep is not None else 1
    for e in state.jobs:
        if e.sweep is not None and e.state is EntryState.STARTED and (st[e.id][0] in ACTIVE or launcher.alive(e)):
            slots[e.sweep] -= 1
    return slots


def _start_trial(manifest, entry: QueueEntry, store: RunStore, launcher) -> Run | str:
    """Ask the sweep's study for this job's trial and create its run; a sentence when none may run."""
    from engine.errors import UserError
    from engine.job.runner import trial_experiment

    exp = manifest.get(entry.experiment)
    if exp.sweep is None or entry.sweep is None:
        return f"{entry.experiment} is no longer a sweep in {Path(manifest.path).name}"
    from engine.sweep.study import SweepStudy

    try:
        study = SweepStudy(exp, store.root, entry.sweep)
        study.reconcile(store)
        asked = study.ask(f"{Path(manifest.path).resolve()}#{entry.id}")
        if asked is None:
            return f"sweep {exp.name} has all its {exp.sweep.trials} trials"
        number, params = asked
        record = {
            "name": exp.name,
            "study": entry.sweep,
            "trial": number,
            "parameters": params,
            "objective": exp.sweep.objective,
            "direction": exp.sweep.direction,
        }
        run = store.create(exp.name, exp.to_dict() | {"sweep": record})
        trial_exp = trial_experiment(exp, run)  # the parameters applied: the run's config is the trial's
        from engine.files import atomic_write_json

        atomic_write_json(run.path / "config.json", trial_exp.to_dict() | {"sweep": record})
        study.set_run(number, f"{run.experiment}/{run.run_id}")
        return run
    except UserError as exc:
        return f"{exc}"
    except Exception as exc:  # noqa: BLE001 - the queue goes on; the entry says why this trial did not
        return f"sweep {exp.name}: its study failed: {type(exc).__name__}: {str(exc)[:200]}"


def waiting_count(queue_file: QueueFile, store: RunStore, alive: Alive, gpu_count: int | None = None) -> int:
    """Jobs that still wait to start (not blocked): the scheduler's reason to stay."""
    state = queue_file.read()
    st = statuses(state, store, alive, gpu_count)
    return sum(1 for e in state.jobs if e.state is EntryState.QUEUED and st[e.id][0] == "queued")
