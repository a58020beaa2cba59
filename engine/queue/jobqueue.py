"""The job queue of a runs directory, for its clients: plain data on disk, shared by every console and CLI.

State is data, processes own their parts (the split of pueue):

* a **job process** (``python -m engine.queue.jobproc``, its own session) owns its run
  directory exactly as a headless run does: events, status, checkpoints, control;
* the **scheduler** (``python -m engine.queue.scheduler``) is started on demand by any
  client that queues work, starts jobs when slots and GPUs are free, and exits
  when nothing is left waiting; a finishing job process starts it again if it
  died, so the queue advances with no console open;
* **clients** (:class:`JobQueue`: the console, ``lmconsole queue|run --detach|
  attach|control``) change ``queue.json`` (``engine.queue.queuefile``) under the lock and
  read run directories for state; none holds the queue only in its memory.

A client shows each entry as a :class:`Job`: plain data it refreshes from the queue file,
the derived status (``engine.queue.schedule``) and the run's events (one
:class:`~engine.store.follow.RunFeed` per job, kept here beside the jobs, not in them).

Tests inject ``runner=`` (a callable like :func:`engine.job.runner.run_experiment`): jobs
then run in threads of the client, which schedules them itself; the queue file,
the scheduling rules and the status words are the same.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import UserError
from engine.events import MetricStore, PhaseStarted, ProgressUpdated
from engine.files import SAFE_NAME
from engine.models.memory import experiment_estimate
from engine.queue.entry import EntryState, Quarantined, QueueEntry
from engine.queue.fit import fits_machine, gpu_rooms, too_big
from engine.queue.gpus import gpus_needed, scheduler_gpus
from engine.queue.launch import ThreadLauncher, ensure_scheduler, pid_alive, scheduler_running
from engine.queue.queuefile import QUEUE_DIR, QueueDirError, QueueFile
from engine.queue.schedule import advance, statuses
from engine.status import ACTIVE, FINAL, LIVE, RESUMABLE, RUN_FINAL, WAITING, Status
from engine.store.follow import RunFeed
from engine.store.runs import Run, RunStore
from engine.store.stall import last_sign_of_life

# How a message names the user's next step: the console's keys or the shell's commands, so
# `lmconsole queue cancel 2` never answers with a key that only the console knows.
NextStep = Callable[[str, int, str], str]


def console_keys(action: str, job_id: int, experiment: str) -> str:
    """The console's key for ``action`` (resume, retry, run) on job ``job_id``."""
    return {"resume": "p again", "retry": f"R on #{job_id}", "run": f"r on {experiment}"}[action]


def shell_commands(action: str, job_id: int, experiment: str) -> str:
    """The ``lmconsole`` command for ``action`` (resume, retry, run) on job ``job_id``."""
    return {
        "resume": f"`lmconsole queue resume {job_id}`",
        "retry": f"`lmconsole queue retry {job_id}`",
        "run": f"`lmconsole run {experiment}`",
    }[action]


@dataclass
class Job:
    """What clients show of one queue entry: its derived status, its run, its metrics so far.

    Plain data, changed in place by :meth:`JobQueue.refresh` (so a view that keeps a job sees
    it change); it holds no handle of the queue, of a process or of a file.
    """

    experiment: str
    id: int = 0
    status: str = "queued"
    reason: str = ""
    depends_on: tuple[int, ...] = ()
    resume: Run | None = None  # the run a queued resume will continue
    run: Run | None = None
    devices: tuple[int, ...] = ()
    gpus: int = 0
    metrics: MetricStore = field(default_factory=MetricStore)
    phase: PhaseStarted | ProgressUpdated | None = None  # what a job does before its first step
    seed: int | None = None  # one seed of an experiment with ``seeds``, run in ``group``
    group: str = ""

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def quarantined(self) -> bool:
        """An entry of the queue file set apart (malformed, unsafe, or damaged file): shown, never run.
        Its id is negative (its place among the quarantined), so it never stands for a real job."""
        return self.id < 0

    @property
    def done(self) -> bool:
        return self.status in RUN_FINAL

    @property
    def waiting(self) -> bool:
        return self.status in WAITING


def cancel_stalled(run: Run, name: str, pid: int | None, resume_step: str) -> str:
    """Cancel a stalled job: the first time ask it (and wake it with SIGCONT, in case it was stopped);
    again, while it has not answered, kill its process (group): it reads as interrupted and resumes
    from its last checkpoint. Returns the line that says which."""
    req = run.pending_request()
    asked = req.get("action") == "cancel" and _mtime(run.path / "control.json") > last_sign_of_life(run.path)
    if asked and pid is not None:
        _signal_job(pid, signal.SIGKILL)
        return (
            f"killed {name}: it stalled and did not answer the cancel; {resume_step} continues from its last checkpoint"
        )
    run.request("cancel")
    if pid is not None:
        _signal_job(pid, signal.SIGCONT)
    return (
        f"cancel requested: {name} is stalled; it was woken (SIGCONT) and asked to save a checkpoint and stop. "
        "If it stays stalled, cancel again to kill it"
    )


def _owner_pid(run: Run) -> int | None:
    """The pid of the process that owns ``run`` on this host: where ``owner.lock`` (written by the owner when it
    took the lock) and ``status.json`` agree and it lives; None otherwise (never a pid that may be someone else's)."""
    from engine.files import read_json

    owner, st = read_json(run.path / "owner.lock", {}), run.raw_status()
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname() or st.get("host") != owner.get("host"):
        return None
    pid = owner.get("pid")
    return pid if isinstance(pid, int) and pid == st.get("pid") and pid_alive(pid) else None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _signal_job(pid: int, sig: int) -> None:
    """``sig`` to a job's process, and to its group when it leads one (a job process and its launcher's ranks)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except OSError:
        pass  # it exited meanwhile


class JobQueue:
    """A client of the queue of ``manifest``'s runs directory (see the module doc).

    ``runner`` (tests): run jobs in threads of this process with that callable and
    schedule them here instead of in a scheduler process. Clients poll :attr:`jobs`
    (re-read from disk at most every ``REFRESH_S``); :attr:`version` goes up whenever a
    job's status, reason, run or metrics changed, so a console redraws only then.
    """

    REFRESH_S = 0.25

    def __init__(
        self, manifest, store: RunStore | None = None, max_parallel: int | None = None, runner: Callable | None = None
    ):
        self.manifest = manifest
        self.store = store or RunStore(manifest.runs_dir)
        self.file = QueueFile(self.store.root)
        self.max_parallel = max_parallel  # overrides settings.max_parallel_jobs (tests)
        self.runner = runner
        self.launcher = ThreadLauncher(runner, self._job_done) if runner is not None else None
        self._jobs: dict[int, Job] = {}
        self._feeds: dict[int, RunFeed] = {}  # each job's run events, read into its metrics
        self._read_final: set[int] = set()  # jobs whose events were read once after they ended
        self._order: list[int] = []
        self._refreshed = 0.0
        self._lock = threading.RLock()
        self._signature: tuple | None = None
        self.version = 0
        self.last_skipped: list[str] = []
        self._closed = False

    def _alive(self, entry: QueueEntry) -> bool:
        if self.launcher is not None and entry.id in self.launcher.threads:
            return self.launcher.alive(entry)
        return pid_alive(entry.pid, entry.started)

    def _manifest_for_scheduling(self):
        if self.max_parallel is None:
            return self.manifest
        return dataclasses.replace(
            self.manifest, settings=dataclasses.replace(self.manifest.settings, max_parallel_jobs=self.max_parallel)
        )

    def _manifest_path(self) -> str:
        return str(Path(self.manifest.path).resolve())

    # -- reading ----------------------------------------------------------------------------
    @property
    def jobs(self) -> list[Job]:
        if time.monotonic() - self._refreshed > self.REFRESH_S:
            self.refresh()
        return [self._jobs[i] for i in self._order]

    def refresh(self) -> list[Job]:
        """Re-read the queue and the state of its runs; advance it when this client schedules."""
        with self._lock:
            self._refreshed = time.monotonic()
            if self.launcher is not None and not self._closed:
                advance(self.file, self._manifest_for_scheduling(), self.launcher)
            state = self.file.read()
            st = statuses(state, self.store, self._alive, len(scheduler_gpus(self.manifest.settings)))
            order = []
            for e in state.jobs:
                job = self._jobs.get(e.id)
                if job is None or job.experiment != e.experiment:
                    job = self._jobs[e.id] = Job(experiment=e.experiment, id=e.id)
                    self._feeds.pop(e.id, None)
                self._update(job, e, st[e.id])
                self._follow(job)
                order.append(e.id)
            for n, q in enumerate(self.file.quarantined(state), 1):
                order.append(-n)
                self._jobs[-n] = self._quarantined_job(-n, q)
            self._order = order
            if (
                self.launcher is None
                and not self._closed
                and any(j.status == "queued" for j in self._jobs.values())
                and not scheduler_running(self.file)
            ):
                try:
                    ensure_scheduler(self.file, self.manifest.path)  # e.g. the last one was killed
                except QueueDirError:
                    pass  # said by the next change (submit, retry...); a console that only looks goes on
            sig = tuple(
                (j.id, j.status, j.reason, j.run.run_id if j.run else "", j.metrics.version)
                for j in (self._jobs[i] for i in order)
            )
            if sig != self._signature:
                self._signature = sig
                self.version += 1
            return [self._jobs[i] for i in order]

    def _quarantined_job(self, job_id: int, q: Quarantined) -> Job:
        name = q.data.get("experiment") if isinstance(q.data, dict) else None
        shown = name if isinstance(name, str) and SAFE_NAME.match(name) else ("queue.json" if q.data is None else "?")
        where = f"{QUEUE_DIR}/{self.file.quarantine_path.name}"
        return Job(experiment=shown, id=job_id, status="blocked", reason=f"quarantined: {q.reason} (kept in {where})")

    def _update(self, job: Job, e: QueueEntry, status: tuple[str, str]) -> None:
        """Bring ``job`` in line with its entry and its derived (status, reason)."""
        job.status, job.reason = status
        job.depends_on = e.depends_on
        job.seed, job.group = e.seed, e.group or ""
        job.gpus, job.devices = e.gpus, e.devices
        run = Run(self.store.root / e.run) if e.run else None
        job.resume = run if e.resume and e.state is EntryState.QUEUED else None
        job.run = run if e.state is EntryState.STARTED else (run if job.resume is None else None)

    def _follow(self, job: Job) -> None:
        """Read the new events of the job's run into its metrics; once more after it ended, then no more."""
        feed = self._feeds.get(job.id)
        if job.run is not None and (feed is None or feed.run is None or feed.run.path != job.run.path):
            feed = self._feeds[job.id] = RunFeed(run=job.run)
            self._read_final.discard(job.id)
        if feed is None or (job.id in self._read_final and job.status in FINAL):
            return
        feed.follow()
        job.metrics, job.phase = feed.metrics, feed.phase_event
        if job.status in FINAL:
            self._read_final.add(job.id)
        else:
            self._read_final.discard(job.id)

    def get(self, job_id: int) -> Job:
        self.refresh()
        return self._jobs[int(job_id)]

    def _after_change(self) -> None:
        if self.launcher is None:
            ensure_scheduler(self.file, self.manifest.path)
        self.refresh()

    # -- submitting ---------------------------------------------------------------------------
    def _has_gpus(self) -> bool:
        return bool(scheduler_gpus(self.manifest.settings))

    def submit(self, names: list[str], with_deps: bool = True, again: bool = False) -> list[Job]:
        """Queue experiments; missing dependencies (no finished run, not queued) go first.

        A study queues its steps like dependencies; an experiment with ``seeds`` queues one
        job per seed, a sweep one job per trial. An experiment that already has a waiting or running
        job (in any client) or a running run is not queued again unless ``again``: it lands in ``last_skipped``.
        """
        from engine.store.seeds import seed_jobs

        added: list[int] = []
        skipped: list[str] = []
        has_gpus = self._has_gpus()
        rooms = gpu_rooms(scheduler_gpus(self.manifest.settings)) if has_gpus else None  # NVML's memory per GPU
        with self._lock, self.file.change() as state:
            st = statuses(state, self.store, self._alive)
            plan = (
                self.manifest.job_plan(names)
                if with_deps
                else [n for n in names if self.manifest.get(n).task != "study"]
            )

            def live(name: str) -> list[QueueEntry]:
                """Entries of ``name`` that wait or run, in queue order."""
                return [e for e in state.jobs if e.experiment == name and st.get(e.id, ("",))[0] in ACTIVE | WAITING]

            for name in plan:
                exp = self.manifest.get(name)
                pending = live(name)
                if name not in names:
                    if pending or self.store.latest(name, status="finished") is not None:
                        continue
                elif not again and (pending or self._running_elsewhere(name)):
                    skipped.append(name)
                    continue
                deps = []
                for dep in exp.dependencies:
                    ids = [e.id for e in live(dep)]
                    if not ids:  # the latest job of it, if it finished (or its run did)
                        ids = [
                            e.id
                            for e in reversed(state.jobs)
                            if e.experiment == dep and st.get(e.id, ("",))[0] == "finished"
                        ][:1]
                    deps += ids  # every seed of a dependency with ``seeds``
                if rooms is not None:
                    self._refuse_if_too_big(exp, gpus_needed(exp, has_gpus), rooms)  # nothing is queued then
                if exp.sweep is not None:  # one job per trial; each asks the study for its parameters at start
                    from engine.store.runs import new_run_id
                    from engine.sweep.study import new_study_name

                    study = new_study_name(exp, new_run_id())
                    jobs: list[tuple[int | None, str, str | None]] = [(None, "", study)] * exp.sweep.trials
                else:
                    jobs = [(seed, group, None) for seed, group in seed_jobs(exp)]
                for seed, group, sweep in jobs:
                    entry = state.add(
                        name, self._manifest_path(), gpus_needed(exp, has_gpus), deps, seed, group, sweep=sweep
                    )
                    st[entry.id] = ("queued", "")
                    added.append(entry.id)
        self.last_skipped = skipped
        self._after_change()
        return [self._jobs[i] for i in added if i in self._jobs]

    def _refuse_if_too_big(self, exp, gpus: int, rooms: dict) -> None:
        """:class:`UserError` (one line: what it needs, what to lower) for a job that fits no GPU here even idle."""
        if not gpus:
            return
        est, _ = experiment_estimate(self.manifest, exp, on_gpu=True, store=self.store)
        if est is not None and not fits_machine(est.total, gpus, rooms):
            raise UserError(too_big(exp.name, est, rooms, exp))

    def _running_elsewhere(self, name: str) -> bool:
        return any(r.raw_status().get("status") in ACTIVE and r.owner_alive() for r in self.store.runs(name))

    def resume_run(self, run: Run) -> Job:
        """Queue a resume of ``run``: its own job goes back to the queue (one row per job), else a new job."""
        ref = f"{run.experiment}/{run.run_id}"
        with self._lock, self.file.change() as state:
            entry = next((e for e in reversed(state.jobs) if e.run == ref), None)
            if entry is None:
                gpus = gpus_needed(self.manifest.get(run.experiment), self._has_gpus())
                entry = state.add(run.experiment, self._manifest_path(), gpus, run=ref, resume=True)
            else:
                entry = state.put(entry.requeued(resume=True, run=ref, manifest=self._manifest_path()))
            job_id = entry.id
        self._after_change()
        return self._jobs[job_id]

    # -- control: one entry point for any job, whoever runs it ---------------------------------
    def dependants(self, job: Job) -> list[Job]:
        out, todo = [], [job.id]
        while todo:
            cur = todo.pop()
            for j in self.jobs:
                if cur in j.depends_on and j.waiting and j not in out:
                    out.append(j)
                    todo.append(j.id)
        return out

    def control(self, job: Job, action: str, how: NextStep = console_keys) -> str:
        """pause | resume | cancel | retry | up | down on a job; returns one line saying what happened,
        naming a next step the way ``how`` says (:func:`console_keys`, :func:`shell_commands`).

        Running jobs get a request in their run directory (``control.json``, polled between
        steps by whichever process owns the run); waiting jobs are changed in the queue file.
        """
        self.refresh()
        if job.quarantined:
            return f"{job.experiment}: {job.reason}; it never runs: queue it again if you want it"
        actions: dict[str, Callable[[Job, str, NextStep], str]] = {
            "pause": self._pause_job,
            "resume": self._resume_job,
            "cancel": self._cancel_job,
            "retry": self._retry_job,
            "up": lambda job, name, _: self._move_waiting(job, name, -1),
            "down": lambda job, name, _: self._move_waiting(job, name, 1),
        }
        if action not in actions:
            raise ValueError(f"unknown action {action!r}")
        return actions[action](job, f"#{job.id} {job.experiment}", how)

    def _move_waiting(self, job: Job, name: str, delta: int) -> str:
        if job.status not in WAITING:
            return f"{name} is {job.status}: only waiting jobs move"
        return self.move(job, delta)

    def _pause_job(self, job: Job, name: str, how: NextStep = console_keys) -> str:
        if job.status == "paused":
            return self._resume_job(job, name, how)  # p again resumes
        if job.waiting:  # not started yet: held in the queue until resumed
            self._set_held(job, True)
            return (
                f"{name} held in the queue: it does not start until resumed ({how('resume', job.id, job.experiment)})"
            )
        if job.status != "running" or job.run is None:
            return f"{name} is {job.status}: nothing to pause"
        job.run.request("pause")
        return f"pause requested: {name} holds at its next step"

    def _resume_job(self, job: Job, name: str, how: NextStep = console_keys) -> str:
        if job.status == "paused" and self._is_held(job):
            self._set_held(job, False)
            return f"{name} released: it starts when a slot (and its GPUs) are free"
        if job.status != "paused" or job.run is None:
            return f"{name} is {job.status}: nothing to resume"
        job.run.request("resume")
        return f"resume requested: {name}"

    def _cancel_job(self, job: Job, name: str, how: NextStep = console_keys) -> str:
        if job.waiting or (job.status == "paused" and self._is_held(job)):  # a held job has not started either
            deps = self.dependants(job)
            with self._lock, self.file.change() as state:
                if state.get(job.id) is not None:
                    state.change(job.id, state=EntryState.REMOVED, reason="removed from the queue")
            self.refresh()
            return f"removed {name} from the queue" + (
                f"; {', '.join(d.experiment for d in deps)} {'stays' if len(deps) == 1 else 'stay'} blocked "
                f"until it runs ({how('retry', job.id, job.experiment)})"
                if deps
                else ""
            )
        if job.status == "stalled" and job.run is not None:
            entry = self.file.read().get(job.id)
            pid = entry.pid if entry is not None and pid_alive(entry.pid, entry.started) else None
            return cancel_stalled(job.run, name, pid, how("retry", job.id, job.experiment))
        if job.active and job.run is not None:
            job.run.request("cancel")
            return f"cancel requested: {name} saves a checkpoint; {how('retry', job.id, job.experiment)} resumes it"
        return f"{name} is {job.status}: nothing to cancel"

    def _retry_job(self, job: Job, name: str, how: NextStep = console_keys) -> str:
        if job.status in LIVE:
            return f"{name} is {job.status}"
        if job.status == "blocked":
            return f"{name} is {job.reason}"
        if job.status == "finished":
            return f"{name} finished; {how('run', job.id, job.experiment)} runs it again"
        if job.experiment not in self.manifest.names:
            return f"{job.experiment} is no longer in the manifest"
        resume = held = False
        with self._lock, self.file.change() as state:
            entry = state.get(job.id)
            if entry is not None:
                resume, held = bool(entry.run), bool(entry.held)
                state.put(entry.requeued(resume=resume))
        self._after_change()
        said = f"resuming {name} from its last checkpoint" if resume else f"queued {name} again"
        # a hold outlives a cancel and a retry: say so, or "queued again" reads as "it will start"
        return f"{said}, still held: it starts once resumed (p)" if held else said

    def _is_held(self, job: Job) -> bool:
        entry = self.file.read().get(job.id)
        return bool(entry is not None and entry.held)

    def _set_held(self, job: Job, held: bool) -> None:
        with self._lock, self.file.change() as state:
            entry = state.get(job.id)
            if entry is not None and entry.state is EntryState.QUEUED:
                state.change(job.id, held=held)
        self._after_change()

    def job_for_run(self, run: Run) -> Job | None:
        """The job of the queue that runs (or will resume) ``run``, if any."""
        for job in reversed(self.jobs):
            target = job.run or job.resume
            if target is not None and Path(target.path).resolve() == Path(run.path).resolve():
                return job
        return None

    def control_run(self, run: Run, action: str, how: NextStep = console_keys) -> str:
        """:meth:`control` for a run: through its job when the queue has one, else straight to the run
        (e.g. a foreground ``lmconsole run`` in another terminal); retry queues a resume."""
        job = self.job_for_run(run)
        if job is not None and not (action == "retry" and job.status == "finished"):
            return self.control(job, action, how)
        name = f"{run.experiment}/{run.run_id}"
        status = run.status().get("status")
        if action == "retry":
            if status not in RESUMABLE:
                return f"{name} is {status}: only failed, cancelled or interrupted runs resume"
            if run.experiment not in self.manifest.names:
                return f"{run.experiment} is not in this manifest: cannot resume it here"
            job = self.resume_run(run)
            return f"resuming {run.experiment} from its last checkpoint (job #{job.id})"
        if action == "pause" and status == "paused":
            action = "resume"
        wanted = {"pause": (Status.RUNNING,), "resume": (Status.PAUSED,), "cancel": ACTIVE}[action]
        if status not in wanted:
            return f"{name} is {status}: nothing to {action}"
        if status == "stalled":  # a run outside the queue: the owner's process, on this host
            return cancel_stalled(run, name, _owner_pid(run), "resuming it (R)")
        run.request(action)
        return f"{action} requested: {name}"

    def pause(self, job: Job) -> str:
        """Ask a running job to pause, never toggling (:meth:`control` resumes a paused one):
        ``sent``, or ``""`` when it is not running."""
        if job.status != "running" or job.run is None:
            return ""
        job.run.request("pause")
        return "sent"

    def move(self, job: Job, delta: int) -> str:
        """Reorder a waiting job among the waiting jobs (never before its dependencies)."""
        name = f"#{job.id} {job.experiment}"
        with self._lock, self.file.change() as state:
            st = statuses(state, self.store, self._alive)
            waiting = [e for e in state.jobs if st[e.id][0] in WAITING and e.state is EntryState.QUEUED]
            ids = [e.id for e in waiting]
            if job.id not in ids:
                return f"{name} is {job.status}: only waiting jobs move"
            i = ids.index(job.id)
            k = max(0, min(len(ids) - 1, i + delta))
            if k == i:
                return f"{name} is already {'first' if delta < 0 else 'last'}"
            me, other = waiting[i], waiting[k]
            if (delta < 0 and other.id in me.depends_on) or (delta > 0 and me.id in other.depends_on):
                return f"{name} stays after its dependency"
            jobs = state.jobs
            a, b = jobs.index(me), jobs.index(other)
            jobs[a], jobs[b] = jobs[b], jobs[a]
        self.refresh()
        return f"moved {name} {'up' if delta < 0 else 'down'}"

    def clean(self) -> int:
        """Drop finished, failed, cancelled and interrupted jobs from the queue (their runs stay)."""
        with self._lock, self.file.change() as state:
            st = statuses(state, self.store, self._alive)
            keep = {e.id for e in state.jobs if st[e.id][0] not in RUN_FINAL}
            needed = {d for e in state.jobs if e.id in keep for d in e.depends_on}
            while True:  # keep what a remaining job waits on (a failed dependency keeps blocking it)
                more = [e for e in state.jobs if e.id in needed and e.id not in keep]
                if not more:
                    break
                keep |= {e.id for e in more}
                needed |= {d for e in more for d in e.depends_on}
            n = len(state.jobs) - len(keep)
            state.jobs = [e for e in state.jobs if e.id in keep]
        self.refresh()
        return n

    # -- threads of this process (tests) -------------------------------------------------------------
    def _job_done(self) -> None:
        threading.Thread(target=self.refresh, daemon=True).start()

    def shutdown(self, cancel_running: bool = False, timeout: float | None = None) -> None:
        """Stop scheduling from this client (jobs in processes carry on); optionally cancel running ones."""
        self._closed = True
        if cancel_running:
            for job in self.jobs:
                if job.active and job.run is not None:
                    job.run.request("cancel")
        self.wait(timeout)

    def wait(self, timeout: float | None = None) -> None:
        """Until this client's job threads end and nothing it could start waits (tests);
        with job processes, until no job of the queue waits or runs (:meth:`wait_idle`)."""
        if self.launcher is None:
            self.wait_idle(1e9 if timeout is None else timeout)
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.launcher is not None:
            self.refresh()
            live = [t for t in self.launcher.threads.values() if t.is_alive()]
            if not live and (self._closed or not any(j.status == "queued" for j in self.jobs)):
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            if live:
                live[0].join(0.1)
            else:
                time.sleep(0.05)

    def wait_idle(self, timeout: float = 60.0, poll_s: float = 0.2) -> bool:
        """Until no job waits or runs (any process); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.refresh()
            if not any(j.status in LIVE for j in self.jobs):
                return True
            time.sleep(poll_s)
        return False
