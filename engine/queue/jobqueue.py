"""The job queue of a runs directory: plain data on disk, shared by every console and CLI.

Layout (beside the runs)::

    runs/.queue/queue.json      the jobs, their order, dependencies, GPUs (atomic rewrite)
    runs/.queue/queue.lock      flock held while anyone changes queue.json
    runs/.queue/scheduler.lock  flock held by the one scheduler process
    runs/.queue/logs/           stdout/stderr of the scheduler and of each job process

State is data, processes own their parts (the split of pueue):

* a **job process** (``python -m engine.queue.jobproc``, its own session) owns its run
  directory exactly as a headless run does: events, status, checkpoints, control;
* the **scheduler** (``python -m engine.queue.scheduler``) is started on demand by any
  client that queues work, starts jobs when slots and GPUs are free, and exits
  when nothing is left waiting; a finishing job process starts it again if it
  died, so the queue advances with no console open;
* **clients** (:class:`JobQueue`: the console, ``lmconsole queue|run --detach|
  attach|control``) change ``queue.json`` under the lock and read run
  directories for state; none holds the queue only in its memory.

A job's status is *derived*, never cached: a started job's status is its run's
(``Run.status``, with the owner-lock liveness check), a waiting job is
``queued``, or ``blocked`` while one of its dependencies stopped without
finishing. So a dependency that is resumed later and finishes unblocks its
dependants, and a console started after a crash sees the truth.

Tests inject ``runner=`` (a callable like :func:`engine.job.runner.run_experiment`): jobs
then run in threads of the client, which schedules them itself; the queue file,
the scheduling rules and the status words are the same.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from engine.events import MetricStore, PhaseStarted, ProgressUpdated
from engine.files import atomic_write_json, read_json
from engine.status import ACTIVE, FINAL, LIVE, RESUMABLE, RUN_FINAL, STOPPED, WAITING, Status
from engine.store.follow import RunFollower
from engine.store.runs import Run, RunStore

QUEUE_DIR = ".queue"
FORMAT = 1


# -- GPUs -----------------------------------------------------------------------------------------


def machine_gpus() -> tuple[int, ...]:
    """GPU indices this machine shows (no torch import): CUDA_VISIBLE_DEVICES, else the driver's list."""
    env = os.environ.get("LMCONSOLE_VISIBLE_GPUS")  # tests and odd setups: an explicit list
    if env is None:
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        try:
            return tuple(range(len([p for p in env.split(",") if p.strip() and int(p) >= 0])))
        except ValueError:
            return tuple(range(len([p for p in env.split(",") if p.strip()])))
    try:
        return tuple(range(len(os.listdir("/proc/driver/nvidia/gpus"))))
    except OSError:
        return ()


def scheduler_gpus(settings) -> tuple[int, ...]:
    """The devices the scheduler may hand out (``settings.gpus``)."""
    from engine.manifest import parse_gpu_list

    chosen = parse_gpu_list(getattr(settings, "gpus", "all"))
    return machine_gpus() if chosen in ("all", None) or isinstance(chosen, str) else tuple(chosen)


def gpus_needed(exp, has_gpus: bool) -> int:
    """GPUs one job of ``exp`` takes: ``nproc_per_node`` under a launcher, else ``gpus`` (auto: 1 or 0)."""
    if getattr(exp, "device", "auto") == "cpu":
        return 0
    if getattr(exp, "launcher", "none") != "none":
        return exp.nproc_per_node if has_gpus else 0
    n = getattr(exp, "gpus", -1)
    return (1 if has_gpus else 0) if n is None or n < 0 else n


def assign_gpus(waiting: list[tuple[int, int]], free: list[int], slots: int) -> dict[int, list[int]]:
    """Pick jobs to start: ``waiting`` is (job id, GPUs needed) in queue order.

    Goes down the queue and starts every job that fits the free GPUs and the free
    slots, skipping (not stopping at) one that does not fit, so no GPU idles
    while a job that fits it waits. Never hands out a GPU twice.
    """
    free = sorted(free)
    out: dict[int, list[int]] = {}
    for job_id, need in waiting:
        if slots <= 0:
            break
        if need > len(free):
            continue
        out[job_id], free = free[:need], free[need:]
        slots -= 1
    return out


# -- the file -------------------------------------------------------------------------------------


def _flock(path: Path, blocking: bool = True) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def _unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


class QueueFile:
    """``runs/.queue/queue.json``: read freely (atomic rewrites), changed only in :meth:`change`."""

    def __init__(self, runs_dir: Path | str):
        self.dir = Path(runs_dir) / QUEUE_DIR
        self.path = self.dir / "queue.json"
        self.lock_path = self.dir / "queue.lock"
        self.scheduler_lock = self.dir / "scheduler.lock"
        self.logs = self.dir / "logs"
        self._local = threading.RLock()  # threads of one process: flock is per open file, not per thread

    def read(self) -> dict:
        data = read_json(self.path, None)
        if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
            data = {"format": FORMAT, "next_id": 1, "jobs": []}
        return data

    def mtime(self):
        try:
            st = os.stat(self.path)
            return st.st_mtime_ns, st.st_size
        except OSError:
            return None

    @contextmanager
    def change(self):
        """Hold the lock, yield the state (a dict) to change in place, write it back atomically."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._local:
            fd = _flock(self.lock_path)
            assert fd is not None  # a blocking flock waits for the lock: it never comes back without it
            try:
                state = self.read()
                before = json.dumps(state, sort_keys=True)
                yield state
                if json.dumps(state, sort_keys=True) != before:
                    atomic_write_json(self.path, state)
            finally:
                _unlock(fd)


def _pid_alive(pid) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{int(pid)}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except (OSError, IndexError, ValueError):
        try:
            os.kill(int(pid), 0)
            return True
        except (OSError, ValueError):
            return False


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


# -- derived state ---------------------------------------------------------------------------------


def entry_status(
    entry: dict,
    by_id: dict,
    store: RunStore,
    alive: Callable[[dict], bool],
    gpu_count: int | None = None,
    _memo: dict | None = None,
) -> tuple[str, str]:
    """(status, reason) of one queue entry, from its run directory and its dependencies."""
    memo = {} if _memo is None else _memo
    key = entry["id"]
    if key in memo:
        return memo[key]
    memo[key] = ("queued", "")  # a cycle (hand-edited file) reads as waiting, never recurses forever
    state = entry.get("state", "queued")
    if state == "removed":
        out = ("cancelled", entry.get("reason") or "removed from the queue")
    elif state == "started" and entry.get("run"):
        run = Run(store.root / entry["run"])
        st = run.status()
        status, reason = st.get("status", "queued"), str(st.get("reason", "") or "")
        if status in FINAL and entry.get("resume") and _mtime(run.path / "status.json") < entry.get("started", 0):
            status = "queued"  # a resume whose process has not written yet: the status is the last attempt's
        if status == "queued":  # the process has not taken its run directory yet
            if alive(entry):
                status, reason = "running", "starting"
            else:
                status = "failed"
                reason = f"the job process exited before it started (see {QUEUE_DIR}/logs/job-{key}.log)"
        out = (status, reason)
    elif entry.get("held"):  # paused while waiting: the scheduler skips it (and so its dependants wait)
        out = ("paused", "held in the queue: resume (p) lets it start")
    else:
        out = ("queued", "")
        for dep_id in entry.get("depends_on", []):
            dep = by_id.get(dep_id)
            if dep is None:
                continue
            ds, _ = entry_status(dep, by_id, store, alive, gpu_count, memo)
            if ds in STOPPED:
                out = ("blocked", f"dependency {dep['experiment']} {ds}; it runs once that finishes (R on #{dep_id})")
                break
        if out[0] == "queued" and gpu_count is not None and entry.get("gpus", 0) > gpu_count:
            out = ("blocked", f"needs {entry['gpus']} GPU(s); settings.gpus offers {gpu_count}")
    memo[key] = out
    return out


def statuses(state: dict, store: RunStore, alive: Callable[[dict], bool], gpu_count: int | None = None) -> dict:
    by_id = {e["id"]: e for e in state["jobs"]}
    memo: dict = {}
    return {e["id"]: entry_status(e, by_id, store, alive, gpu_count, memo) for e in state["jobs"]}


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


# -- launching ---------------------------------------------------------------------------------------


class ProcessLauncher:
    """Starts each job as ``python -m engine.queue.jobproc`` in its own session (survives consoles and SSH)."""

    def __init__(self):
        self.children: list[subprocess.Popen] = []

    def alive(self, entry: dict) -> bool:
        self.reap()
        return _pid_alive(entry.get("pid"))

    def reap(self) -> None:
        self.children = [p for p in self.children if p.poll() is None]

    def start(self, queue_file: QueueFile, entry: dict, devices: list[int]) -> int:
        queue_file.logs.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        cuda = device_env(devices, entry.get("gpus", 0))
        if cuda is not None:
            env["CUDA_VISIBLE_DEVICES"] = cuda
        log = open(queue_file.logs / f"job-{entry['id']}.log", "ab")
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "engine.queue.jobproc",
                    "--runs-dir",
                    str(queue_file.dir.parent.resolve()),
                    "--job",
                    str(entry["id"]),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(Path(entry["manifest"]).resolve().parent),
                start_new_session=True,
                close_fds=True,
            )
        finally:
            log.close()
        self.children.append(proc)
        return proc.pid


def device_env(devices: list[int], needed: int) -> str | None:
    """``CUDA_VISIBLE_DEVICES`` for a job given scheduler indices; None = leave it alone (no GPUs here).

    Indices count the GPUs the scheduler sees: under ``CUDA_VISIBLE_DEVICES=2,3`` index 0 is device 2.
    A job that needs no GPU on a GPU machine gets an empty list, so it never takes GPU 0 by accident.
    """
    if not devices and (needed or not machine_gpus()):
        return None
    parent = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [p.strip() for p in parent.split(",") if p.strip()] if parent else None
    return ",".join(names[g] if names and g < len(names) else str(g) for g in devices)


class ThreadLauncher:
    """Runs jobs in threads of this process with an injected runner (tests, demos)."""

    def __init__(self, runner: Callable, on_done: Callable[[], None]):
        self.runner, self.on_done = runner, on_done
        self.threads: dict[int, threading.Thread] = {}

    def alive(self, entry: dict) -> bool:
        t = self.threads.get(entry["id"])
        return t is not None and t.is_alive()

    def start(self, queue_file: QueueFile, entry: dict, devices: list[int]) -> int:
        from engine.manifest import load

        store = RunStore(queue_file.dir.parent)
        run = Run(store.root / entry["run"])

        def body() -> None:
            try:
                self.runner(
                    load(entry["manifest"]),
                    entry["experiment"],
                    run=run,
                    resume_flag=entry.get("resume", False),
                    store=store,
                    seen_seq=entry.get("seen_seq", 0),
                    **seeded(entry),
                )
            finally:
                self.on_done()

        t = threading.Thread(target=body, name=f"job-{entry['id']}-{entry['experiment']}")
        self.threads[entry["id"]] = t
        t.start()
        return os.getpid()

    def join(self, timeout: float | None = None) -> None:
        for t in list(self.threads.values()):
            t.join(timeout)


def seeded(entry: dict) -> dict:
    """The runner's ``seed``/``group`` arguments of a job that is one seed of ``seeds``."""
    return {"seed": entry.get("seed"), "group": entry["group"]} if entry.get("group") else {}


def _entry_manifest(entry: dict, cache: dict):
    from engine.errors import ManifestError
    from engine.manifest import load

    path = str(Path(entry.get("manifest", "")).resolve())
    if path not in cache:
        try:
            cache[path] = load(path)
        except (ManifestError, OSError):
            cache[path] = None
    return cache[path]


def advance(queue_file: QueueFile, manifest, launcher) -> list[int]:
    """Start every waiting job that may start now (slots, GPUs, dependencies); returns their ids.

    Called by the scheduler in a loop (or by a test client). All under the queue lock:
    two schedulers, or a client submitting meanwhile, never start one job twice.
    """
    store = RunStore(queue_file.dir.parent)
    gpus = scheduler_gpus(manifest.settings)
    started: list[int] = []
    with queue_file.change() as state:
        st = statuses(state, store, launcher.alive, len(gpus))
        by_id = {e["id"]: e for e in state["jobs"]}
        busy: set[int] = set()
        active = 0
        for e in state["jobs"]:
            if e.get("state") == "started" and st[e["id"]][0] in ACTIVE:
                active += 1
                busy.update(e.get("devices", []))
        active += external_active(store, {e["run"] for e in state["jobs"] if e.get("run")})
        waiting = []
        for e in state["jobs"]:
            if e.get("state", "queued") != "queued" or st[e["id"]][0] != "queued":
                continue
            if any(st[d][0] != "finished" for d in e.get("depends_on", []) if d in by_id):
                continue  # a dependency still waits or runs
            waiting.append((e["id"], int(e.get("gpus", 0))))
        picks = assign_gpus(waiting, [g for g in gpus if g not in busy], manifest.settings.max_parallel_jobs - active)
        own = {str(Path(manifest.path).resolve()): manifest}
        for job_id, devices in picks.items():
            e = by_id[job_id]
            entry_manifest = _entry_manifest(e, own)  # the manifest it was queued from (several may share runs/)
            if entry_manifest is None or e["experiment"] not in entry_manifest.names:
                e["state"], e["reason"] = (
                    "removed",
                    f"{e['experiment']} is no longer in {Path(e.get('manifest', '?')).name}",
                )
                continue
            if not e.get("run"):
                from engine.job.runner import experiment_for

                exp = experiment_for(entry_manifest, e["experiment"], None, e.get("seed"))  # one seed of ``seeds``
                run = store.create(exp.name, exp.to_dict() | ({"group": e["group"]} if e.get("group") else {}))
                e["run"] = f"{run.experiment}/{run.run_id}"
                e["seen_seq"] = 0
            else:
                run = Run(store.root / e["run"])
                e["seen_seq"] = int(run.pending_request().get("seq", 0))  # an old cancel must not fire again
            e["state"], e["devices"], e["started"] = "started", devices, time.time()
            e["pid"] = launcher.start(queue_file, e, devices)
            started.append(job_id)
    return started


def waiting_count(queue_file: QueueFile, store: RunStore, alive, gpu_count: int | None = None) -> int:
    """Jobs that still wait to start (not blocked): the scheduler's reason to stay."""
    state = queue_file.read()
    st = statuses(state, store, alive, gpu_count)
    return sum(1 for e in state["jobs"] if e.get("state", "queued") == "queued" and st[e["id"]][0] == "queued")


def scheduler_running(queue_file: QueueFile) -> bool:
    from engine.store.runs import OwnerLock

    return OwnerLock.is_held(queue_file.scheduler_lock)


def ensure_scheduler(queue_file: QueueFile, manifest_path: Path | str) -> bool:
    """Start the scheduler (detached) unless one runs; True when this call started one."""
    if scheduler_running(queue_file):
        return False
    queue_file.logs.mkdir(parents=True, exist_ok=True)
    log = open(queue_file.logs / "scheduler.log", "ab")
    try:
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine.queue.scheduler",
                "--runs-dir",
                str(queue_file.dir.parent.resolve()),
                "--manifest",
                str(Path(manifest_path).resolve()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=str(Path(manifest_path).resolve().parent),
        )
    finally:
        log.close()
    return True


# -- the client --------------------------------------------------------------------------------------


@dataclass
class Job:
    """A view of one queue entry for clients; refreshed from disk by :class:`JobQueue`."""

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
    phase: object = None  # latest PhaseStarted/ProgressUpdated: what a job does before its first step
    _follower: RunFollower | None = field(default=None, repr=False)
    _read_final: bool = field(default=False, repr=False)  # events read once after it ended: nothing more comes
    _queue: JobQueue | None = field(default=None, repr=False, compare=False)

    def refresh(self) -> Job:
        """Bring this view up to date from disk (rate-limited; cheap to call on every poll)."""
        if self._queue is not None:
            _ = self._queue.jobs  # reading the property refreshes every job from disk
        return self

    seed: int | None = None  # one seed of an experiment with ``seeds``, run in ``group``
    group: str = ""

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def done(self) -> bool:
        return self.status in RUN_FINAL

    @property
    def waiting(self) -> bool:
        return self.status in WAITING


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
        self._order: list[int] = []
        self._refreshed = 0.0
        self._lock = threading.RLock()
        self._signature: tuple | None = None
        self.version = 0
        self.last_skipped: list[str] = []
        self._closed = False

    def _alive(self, entry: dict) -> bool:
        if self.launcher is not None and entry["id"] in self.launcher.threads:
            return self.launcher.alive(entry)
        return _pid_alive(entry.get("pid"))

    def _manifest_for_scheduling(self):
        if self.max_parallel is None:
            return self.manifest
        import dataclasses

        return dataclasses.replace(
            self.manifest, settings=dataclasses.replace(self.manifest.settings, max_parallel_jobs=self.max_parallel)
        )

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
            for e in state["jobs"]:
                job = self._jobs.get(e["id"])
                if job is None or job.experiment != e["experiment"]:
                    job = self._jobs[e["id"]] = Job(experiment=e["experiment"], id=e["id"], _queue=self)
                job.status, job.reason = st[e["id"]]
                job.depends_on = tuple(e.get("depends_on", []))
                job.seed, job.group = e.get("seed"), e.get("group", "")
                job.gpus, job.devices = int(e.get("gpus", 0)), tuple(e.get("devices", []))
                run = Run(self.store.root / e["run"]) if e.get("run") else None
                job.resume = run if e.get("resume") and e.get("state", "queued") == "queued" else None
                job.run = run if e.get("state") == "started" else (run if job.resume is None else None)
                if job.run is not None and (job._follower is None or job._follower.run.path != job.run.path):
                    job._follower, job.metrics, job.phase = RunFollower(job.run), MetricStore(), None
                    job._read_final = False
                if job._follower is not None and not (job._read_final and job.status in FINAL):
                    self._feed(job)
                    job._read_final = job.status in FINAL
                order.append(e["id"])
            self._order = order
            if (
                self.launcher is None
                and not self._closed
                and any(j.status == "queued" for j in self._jobs.values())
                and not scheduler_running(self.file)
            ):
                ensure_scheduler(self.file, self.manifest.path)  # e.g. the last one was killed
            sig = tuple(
                (j.id, j.status, j.reason, j.run.run_id if j.run else "", j.metrics.version)
                for j in (self._jobs[i] for i in order)
            )
            if sig != self._signature:
                self._signature = sig
                self.version += 1
            return [self._jobs[i] for i in order]

    @staticmethod
    def _feed(job: Job) -> None:
        assert job._follower is not None
        events, rewound = job._follower.poll()
        if rewound:
            job.metrics, job.phase = MetricStore(), None
        for ev in events:
            job.metrics.emit(ev)
            if isinstance(ev, (PhaseStarted, ProgressUpdated)):
                job.phase = ev

    def get(self, job_id: int) -> Job:
        self.refresh()
        return self._jobs[int(job_id)]

    def running(self) -> list[Job]:
        return [j for j in self.jobs if j.active]

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
        job per seed. An experiment that already has a waiting or running job (in any client) or a
        running run is not queued again unless ``again``: it lands in ``last_skipped``.
        """
        from engine.store.seeds import seed_jobs

        added: list[int] = []
        skipped: list[str] = []
        has_gpus = self._has_gpus()
        with self._lock, self.file.change() as state:
            st = statuses(state, self.store, self._alive)
            plan = (
                self.manifest.job_plan(names)
                if with_deps
                else [n for n in names if self.manifest.get(n).task != "study"]
            )

            def pending(name: str):
                for e in reversed(state["jobs"]):
                    if e["experiment"] == name and st.get(e["id"], ("",))[0] in ACTIVE | WAITING:
                        return e
                return None

            for name in plan:
                exp = self.manifest.get(name)
                live = pending(name)
                if name not in names:
                    if live is not None or self.store.latest(name, status="finished") is not None:
                        continue
                elif not again and (live is not None or self._running_elsewhere(name)):
                    skipped.append(name)
                    continue
                deps = []
                for dep in exp.dependencies:
                    live = [
                        e["id"]
                        for e in state["jobs"]
                        if e["experiment"] == dep and st.get(e["id"], ("",))[0] in ACTIVE | WAITING
                    ]
                    if not live:  # the latest job of it, if it finished (or its run did)
                        live = [
                            e["id"]
                            for e in reversed(state["jobs"])
                            if e["experiment"] == dep and st.get(e["id"], ("",))[0] == "finished"
                        ][:1]
                    deps += live  # every seed of a dependency with ``seeds``
                for seed, group in seed_jobs(exp):
                    entry = {
                        "id": state["next_id"],
                        "experiment": name,
                        "state": "queued",
                        "run": None,
                        "resume": False,
                        "depends_on": deps,
                        "gpus": gpus_needed(exp, has_gpus),
                        "devices": [],
                        "pid": None,
                        "reason": "",
                        "submitted": time.time(),
                        "manifest": str(Path(self.manifest.path).resolve()),
                    }
                    if group:
                        entry["seed"], entry["group"] = seed, group
                    state["next_id"] += 1
                    state["jobs"].append(entry)
                    st[entry["id"]] = ("queued", "")
                    added.append(entry["id"])
        self.last_skipped = skipped
        self._after_change()
        return [self._jobs[i] for i in added if i in self._jobs]

    def _running_elsewhere(self, name: str) -> bool:
        return any(r.raw_status().get("status") in ACTIVE and r.owner_alive() for r in self.store.runs(name))

    def resume_run(self, run: Run) -> Job:
        """Queue a resume of ``run``: its own job goes back to the queue (one row per job), else a new job."""
        ref = f"{run.experiment}/{run.run_id}"
        with self._lock, self.file.change() as state:
            entry = next((e for e in reversed(state["jobs"]) if e.get("run") == ref), None)
            if entry is None:
                exp = self.manifest.get(run.experiment)
                entry = {
                    "id": state["next_id"],
                    "experiment": run.experiment,
                    "depends_on": [],
                    "devices": [],
                    "gpus": gpus_needed(exp, self._has_gpus()),
                    "submitted": time.time(),
                    "manifest": str(Path(self.manifest.path).resolve()),
                }
                state["next_id"] += 1
                state["jobs"].append(entry)
            entry.update(
                state="queued",
                run=ref,
                resume=True,
                pid=None,
                reason="",
                devices=[],
                manifest=str(Path(self.manifest.path).resolve()),
            )
            job_id = entry["id"]
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

    def control(self, job: Job, action: str) -> str:
        """pause | resume | cancel | retry | up | down on a job; returns one line saying what happened.

        Running jobs get a request in their run directory (``control.json``, polled between
        steps by whichever process owns the run); waiting jobs are changed in the queue file.
        """
        self.refresh()
        name = f"#{job.id} {job.experiment}"
        if action in ("up", "down"):
            if job.status not in WAITING:
                return f"{name} is {job.status}: only waiting jobs move"
            return self.move(job, -1 if action == "up" else 1)
        if action == "pause":
            if job.status == "paused":
                action = "resume"
            elif job.waiting:  # not started yet: held in the queue until resumed
                self._set_held(job, True)
                return f"{name} held in the queue: it does not start until resumed (p again)"
            elif job.status != "running" or job.run is None:
                return f"{name} is {job.status}: nothing to pause"
            else:
                job.run.request("pause")
                return f"pause requested: {name} holds at its next step"
        if action == "resume":
            if job.status == "paused" and self._is_held(job):
                self._set_held(job, False)
                return f"{name} released: it starts when a slot (and its GPUs) are free"
            if job.status != "paused" or job.run is None:
                return f"{name} is {job.status}: nothing to resume"
            job.run.request("resume")
            return f"resume requested: {name}"
        if action == "cancel":
            if job.waiting:
                deps = self.dependants(job)
                with self._lock, self.file.change() as state:
                    for e in state["jobs"]:
                        if e["id"] == job.id:
                            e["state"], e["reason"] = "removed", "removed from the queue"
                self.refresh()
                return f"removed {name} from the queue" + (
                    f"; {', '.join(d.experiment for d in deps)} {'stays' if len(deps) == 1 else 'stay'} blocked "
                    f"until it runs (R on #{job.id})"
                    if deps
                    else ""
                )
            if job.active and job.run is not None:
                job.run.request("cancel")
                return f"cancel requested: {name} saves a checkpoint; R resumes it"
            return f"{name} is {job.status}: nothing to cancel"
        if action == "retry":
            if job.status in LIVE:
                return f"{name} is {job.status}"
            if job.status == "blocked":
                return f"{name} is {job.reason}"
            if job.status == "finished":
                return f"{name} finished; press r on the experiment to run it again"
            if job.experiment not in self.manifest.names:
                return f"{job.experiment} is no longer in the manifest"
            resume = False
            with self._lock, self.file.change() as state:
                for e in state["jobs"]:
                    if e["id"] == job.id:
                        resume = bool(e.get("run"))
                        e.update(state="queued", resume=resume, pid=None, reason="", devices=[])
            self._after_change()
            return f"resuming {name} from its last checkpoint" if resume else f"queued {name} again"
        raise ValueError(f"unknown action {action!r}")

    def _is_held(self, job: Job) -> bool:
        return any(e["id"] == job.id and e.get("held") for e in self.file.read()["jobs"])

    def _set_held(self, job: Job, held: bool) -> None:
        with self._lock, self.file.change() as state:
            for e in state["jobs"]:
                if e["id"] == job.id and e.get("state", "queued") == "queued":
                    e["held"] = held
        self._after_change()

    def job_for_run(self, run: Run) -> Job | None:
        """The job of the queue that runs (or will resume) ``run``, if any."""
        for job in reversed(self.jobs):
            target = job.run or job.resume
            if target is not None and Path(target.path).resolve() == Path(run.path).resolve():
                return job
        return None

    def control_run(self, run: Run, action: str) -> str:
        """:meth:`control` for a run: through its job when the queue has one, else straight to the run
        (e.g. a foreground ``lmconsole run`` in another terminal); retry queues a resume."""
        job = self.job_for_run(run)
        if job is not None and not (action == "retry" and job.status == "finished"):
            return self.control(job, action)
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
        run.request(action)
        return f"{action} requested: {name}"

    def pause(self, job: Job) -> str:
        """Ask a running job to pause; ``sent`` or ``""`` when it is not running."""
        if job.status != "running" or job.run is None:
            return ""
        job.run.request("pause")
        return "sent"

    def resume(self, job: Job) -> str:
        if job.status != "paused" or job.run is None:
            return ""
        job.run.request("resume")
        return "sent"

    def cancel(self, job: Job) -> str:
        return self.control(job, "cancel")

    def move(self, job: Job, delta: int) -> str:
        """Reorder a waiting job among the waiting jobs (never before its dependencies)."""
        name = f"#{job.id} {job.experiment}"
        with self._lock, self.file.change() as state:
            st = statuses(state, self.store, self._alive)
            waiting = [e for e in state["jobs"] if st[e["id"]][0] in WAITING and e.get("state") == "queued"]
            ids = [e["id"] for e in waiting]
            if job.id not in ids:
                return f"{name} is {job.status}: only waiting jobs move"
            i = ids.index(job.id)
            k = max(0, min(len(ids) - 1, i + delta))
            if k == i:
                return f"{name} is already {'first' if delta < 0 else 'last'}"
            me, other = waiting[i], waiting[k]
            if (delta < 0 and other["id"] in me.get("depends_on", [])) or (
                delta > 0 and me["id"] in other.get("depends_on", [])
            ):
                return f"{name} stays after its dependency"
            jobs = state["jobs"]
            a, b = jobs.index(me), jobs.index(other)
            jobs[a], jobs[b] = jobs[b], jobs[a]
        self.refresh()
        return f"moved {name} {'up' if delta < 0 else 'down'}"

    def clean(self) -> int:
        """Drop finished, failed, cancelled and interrupted jobs from the queue (their runs stay)."""
        with self._lock, self.file.change() as state:
            st = statuses(state, self.store, self._alive)
            keep = [e for e in state["jobs"] if st[e["id"]][0] not in RUN_FINAL]
            needed = {d for e in keep for d in e.get("depends_on", [])}
            while True:  # keep what a remaining job waits on (a failed dependency keeps blocking it)
                more = [e for e in state["jobs"] if e["id"] in needed and e not in keep]
                if not more:
                    break
                keep += more
                needed |= {d for e in more for d in e.get("depends_on", [])}
            keep.sort(key=state["jobs"].index)
            n = len(state["jobs"]) - len(keep)
            state["jobs"] = keep
        self.refresh()
        return n

    # -- threads of this process (tests) -------------------------------------------------------------
    def _job_done(self) -> None:
        threading.Thread(target=self.refresh, daemon=True).start()

    def shutdown(self, cancel_running: bool = False, timeout: float | None = None) -> None:
        """Stop scheduling from this client (jobs in processes carry on); optionally cancel running ones."""
        self._closed = True
        if cancel_running:
            for job in self.running():
                if job.run is not None:
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
