"""A job queue for the console (or any long-lived process): dependencies, order, control.

Jobs run in background threads (one at a time by default), each writing its
own run directory through :func:`engine.jobs.run_experiment`; the queue itself
holds only scheduling state. Threads are non-daemon, so a UI that goes away
(quit with "keep running", or SIGHUP) leaves jobs to finish and checkpoint.
Listeners are called from worker threads: they must be cheap and thread-safe
(the console only sets a flag that its timer reads).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Callable

from .events import Event, MetricStore, RunStarted
from .runs import Run, RunStore

_ids = itertools.count(1)


@dataclass
class Job:
    experiment: str
    id: int = field(default_factory=lambda: next(_ids))
    status: str = "queued"  # queued | running | paused | finished | failed | cancelled | blocked
    reason: str = ""
    depends_on: tuple[int, ...] = ()
    resume: Run | None = None
    run: Run | None = None
    metrics: MetricStore = field(default_factory=MetricStore)
    thread: threading.Thread | None = None
    phase: Event | None = None  # latest PhaseStarted/ProgressUpdated: what a job does before its first step
    pending: str = ""  # "pause" or "cancel" asked before the job had its run: sent once it has one
    seed: int | None = None  # one seed of an experiment with ``seeds`` (issue 14), run in ``group``
    group: str = ""

    @property
    def active(self) -> bool:
        return self.status in ("running", "paused")

    @property
    def done(self) -> bool:
        return self.status in ("finished", "failed", "cancelled", "blocked")


class _JobSink:
    """Feeds a job's events to its metric store and notes its run and status."""

    def __init__(self, queue: "JobQueue", job: Job):
        self.queue, self.job = queue, job

    def emit(self, event: Event) -> None:
        self.job.metrics.emit(event)
        name = type(event).__name__
        if name == "StatusChanged" and event.status in ("running", "paused"):
            self.job.status = event.status
        if name in ("PhaseStarted", "ProgressUpdated"):
            self.job.phase = event
        if isinstance(event, RunStarted) and self.job.run is None:
            with self.queue._lock:  # a request pressed meanwhile waits, so the two never interleave
                self.job.run = self.queue.store.get(f"{event.experiment}/{event.run_id}")
                pending, self.job.pending = self.job.pending, ""
                if pending:
                    self.job.run.request(pending)
        self.queue._notify()


class JobQueue:
    def __init__(self, manifest, store: RunStore | None = None, max_parallel: int | None = None,
                 runner: Callable | None = None):
        from .jobs import run_experiment

        self.manifest = manifest
        self.store = store or RunStore(manifest.runs_dir)
        self.max_parallel = max_parallel or manifest.settings.max_parallel_jobs
        self.runner = runner or run_experiment  # tests inject a fake runner
        self.jobs: list[Job] = []
        self._lock = threading.RLock()
        self._listeners: list[Callable[[], None]] = []
        self.version = 0
        self._closed = False

    # -- observers --------------------------------------------------------------
    def subscribe(self, fn: Callable[[], None]) -> None:
        self._listeners.append(fn)

    def _notify(self) -> None:
        self.version += 1
        for fn in list(self._listeners):
            try:
                fn()
            except Exception:  # noqa: BLE001 - a broken listener must not kill a job
                pass

    # -- submitting ---------------------------------------------------------------
    def submit(self, names: list[str], with_deps: bool = True) -> list[Job]:
        """Queue experiments; missing dependencies (no finished run, not queued) go first.

        A study queues its steps like dependencies; an experiment with ``seeds`` queues one job per seed.
        """
        from .seeds import seed_jobs

        added: list[Job] = []
        with self._lock:
            plan = self.manifest.job_plan(names) if with_deps else [n for n in names if self.manifest.get(n).task != "study"]
            for name in plan:
                pending = self._pending_job(name)
                if name not in names:
                    if pending is not None or self.store.latest(name, status="finished") is not None:
                        continue
                deps = []
                for dep in self.manifest.get(name).dependencies:
                    dj = self._pending_job(dep)
                    if dj is not None:
                        deps.append(dj.id)
                for seed, group in seed_jobs(self.manifest.get(name)):
                    job = Job(experiment=name, depends_on=tuple(deps), seed=seed, group=group)
                    self.jobs.append(job)
                    added.append(job)
        self._notify()
        self._pump()
        return added

    def resume_run(self, run: Run) -> Job:
        with self._lock:
            job = Job(experiment=run.experiment, resume=run)
            self.jobs.append(job)
        self._notify()
        self._pump()
        return job

    def _pending_job(self, name: str) -> Job | None:
        for job in reversed(self.jobs):
            if job.experiment == name and job.status in ("queued", "running", "paused", "finished"):
                return job
        return None

    # -- control ------------------------------------------------------------------
    def get(self, job_id: int) -> Job:
        return next(j for j in self.jobs if j.id == job_id)

    def _request(self, job: Job, action: str) -> str:
        """Send a control request to the job's run; a job still starting (no run directory
        known yet, e.g. under a launcher) gets it as soon as its run starts.

        Returns what happened: ``sent``, ``held`` (until the run starts), ``withdrawn``
        (a second pause before the start) or ``cancel held`` (a cancel is never downgraded).
        """
        with self._lock:  # the RunStarted handler delivers held requests under this lock too
            if job.run is not None:
                job.run.request(action)
                return "sent"
            if job.pending == "cancel":
                return "cancel held"
            if action == "pause" and job.pending == "pause":
                job.pending = ""  # pressed again before the run started: never mind
                return "withdrawn"
            job.pending = action
            return "held"

    def pause(self, job: Job) -> str:
        """Ask a running job to pause; returns what happened (see :meth:`_request`), or ``""``."""
        return self._request(job, "pause") if job.status == "running" else ""

    def resume(self, job: Job) -> str:
        return self._request(job, "resume") if job.status == "paused" else ""

    def cancel(self, job: Job) -> None:
        with self._lock:
            if job.status == "queued":
                job.status, job.reason = "cancelled", "removed from the queue"
                self._block_dependants(job)
            elif job.active:
                self._request(job, "cancel")
        self._notify()

    def move(self, job: Job, delta: int) -> None:
        """Reorder a queued job among the queued jobs (never before its dependencies)."""
        with self._lock:
            if job.status != "queued":
                return
            queued = [j for j in self.jobs if j.status == "queued"]
            i = queued.index(job)
            k = max(0, min(len(queued) - 1, i + delta))
            if k == i:
                return
            other = queued[k]
            if delta < 0 and other.id in job.depends_on:
                return
            if delta > 0 and job.id in other.depends_on:
                return
            a, b = self.jobs.index(job), self.jobs.index(other)
            self.jobs[a], self.jobs[b] = self.jobs[b], self.jobs[a]
        self._notify()

    def running(self) -> list[Job]:
        return [j for j in self.jobs if j.active]

    def shutdown(self, cancel_running: bool = False, timeout: float | None = None) -> None:
        """Stop starting jobs; optionally cancel running ones; wait for threads."""
        with self._lock:
            self._closed = True
            for job in self.jobs:
                if job.status == "queued":
                    job.status, job.reason = "cancelled", "console closed before it started"
        if cancel_running:
            for job in self.running():
                if job.run is not None:
                    job.run.request("cancel")
        self.wait(timeout)

    def wait(self, timeout: float | None = None) -> None:
        for job in list(self.jobs):
            if job.thread is not None:
                job.thread.join(timeout)

    # -- scheduling ---------------------------------------------------------------
    def _deps_state(self, job: Job) -> str:
        for dep_id in job.depends_on:
            dep = self.get(dep_id)
            if dep.status in ("failed", "cancelled", "blocked"):
                return f"dependency {dep.experiment} {dep.status}"
            if dep.status != "finished":
                return "wait"
        return "ok"

    def _block_dependants(self, failed: Job) -> None:
        for job in self.jobs:
            if job.status == "queued" and failed.id in job.depends_on:
                job.status = "blocked"
                job.reason = f"blocked: dependency {failed.experiment} {failed.status}" + (f" ({failed.reason})" if failed.reason else "")
                self._block_dependants(job)

    def _pump(self) -> None:
        with self._lock:
            if self._closed:
                return
            for job in self.jobs:
                if len(self.running()) >= self.max_parallel:
                    break
                if job.status != "queued":
                    continue
                state = self._deps_state(job)
                if state == "wait":
                    continue
                if state != "ok":
                    job.status, job.reason = "blocked", f"blocked: {state}"
                    self._block_dependants(job)
                    continue
                job.status = "running"
                job.thread = threading.Thread(target=self._run, args=(job,), name=f"job-{job.id}-{job.experiment}")
                job.thread.start()
        self._notify()

    def _run(self, job: Job) -> None:
        try:
            seeded = {"seed": job.seed, "group": job.group} if job.group else {}
            run = self.runner(self.manifest, job.experiment, sinks=[_JobSink(self, job)], resume=job.resume, store=self.store,
                              **seeded)
            job.run = run
            st = run.status()
            job.status, job.reason = st.get("status", "failed"), st.get("reason", "")
        except Exception as exc:  # noqa: BLE001 - e.g. the run is owned by another process
            job.status, job.reason = "failed", str(exc)
        if job.status not in ("finished",):
            with self._lock:
                self._block_dependants(job)
        self._notify()
        self._pump()
