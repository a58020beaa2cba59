"""Running one experiment as a job: run directory, status, control and failure handling.

:func:`run_experiment` runs a job in the calling thread (a job process of the
queue, ``engine.queue.jobproc``, calls it; so do a foreground ``lmconsole run`` and a
launcher's rank 0). Control requests (pause/resume/cancel) reach a job the same way from
any process: :meth:`Run.request` writes ``control.json``; the job polls it
between optimizer steps (one ``os.stat``, microseconds).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.device import pick_device
from engine.errors import Cancelled, Interrupted, JobError, Pruned, ResolveError
from engine.events import (
    EventSink,
    FanoutSink,
    LogEmitted,
    PhaseStarted,
    RunFinished,
    RunStarted,
    StatusChanged,
    SystemSampled,
    TableWritten,
    json_safe,
)
from engine.files import atomic_write_json, read_json
from engine.hub.resolve import resolve_dataset
from engine.job.commands import SHUTDOWN_TIMEOUT_S, launcher_command
from engine.job.ending import failure_events, record_end
from engine.job.environment import record as record_environment
from engine.job.notify import notify_run_end
from engine.job.preempt import ForwardSignals, StopSignals, record_late_stop
from engine.job.preflight import preflight_line, run_preflight
from engine.job.slurm import executor_of, follow, in_slurm_job
from engine.job.system import JobSampler, system_table
from engine.job.trackers import make_trackers
from engine.manifest import ALL_TRAIN, EXPERIMENT_KEYS, Experiment, Manifest
from engine.secrets import redact, redact_values
from engine.status import RUN_FINAL
from engine.store.follow import RunFollower
from engine.store.runs import Run, RunStore, RunWriter, request_seq
from engine.store.stall import Heartbeat
from engine.store.writer import EventWriter
from engine.tasks import task_function


@dataclass
class JobContext:
    """What a task gets: its experiment, the run it writes, and the control channel.

    The train and task layers name it as :class:`engine.train.context.TaskContext`, which it satisfies.
    """

    manifest: Manifest
    exp: Experiment
    run: Run
    writer: EventWriter
    sink: EventSink
    store: RunStore
    resume: bool = False
    start_model: str = ""  # the run a fine-tuning started from, for results and model cards
    prune_reason: str = ""  # set by a sweep trial's reporter when its pruner stops the trial (train/context.py)
    stop: StopSignals | None = None  # engine/job/preempt.py: when this job runs in a process's main thread
    sampler: JobSampler | None = None  # engine/job/system.py: SystemSampled events every 30 s
    heartbeat: Heartbeat | None = None  # engine/store/stall.py: the stall watchdog's sign of life, between steps
    _control_mtime: float = field(default=0.0, repr=False)
    _seq_seen: int = field(default=0, repr=False)

    def emit(self, event) -> None:
        self.sink.emit(event)

    def announce_start(self) -> None:
        """An attempt's first events: running, and RunStarted (again after a resume's rewind cut them off)."""
        self.emit(StatusChanged(status="running", reason="resumed" if self.resume else ""))
        self.emit(RunStarted(run_id=self.run.run_id, experiment=self.exp.name, task=self.exp.task, resumed=self.resume))
        self._beat()

    def _beat(self) -> None:
        """A sign of life for the stall watchdog (the first one writes the job's threshold); never fails a job."""
        try:
            stall_minutes = getattr(getattr(self.manifest, "settings", None), "stall_minutes", 0.0)
            if self.heartbeat is None:
                self.heartbeat = Heartbeat(self.run.path, stall_minutes)
                self.heartbeat.start()
            else:
                self.heartbeat.beat()
        except OSError as exc:
            # e.g. a full disk: the events still count as life; a new heartbeat tries again at a later beat
            self.heartbeat = Heartbeat(self.run.path, stall_minutes)
            self.log(f"heartbeat not written ({exc.strerror or exc}): the stall watchdog goes by the events", "warning")

    def log(self, message: str, level: str = "info") -> None:
        self.sink.emit(LogEmitted(level=level, message=message))

    def _read_request(self) -> str | None:
        path = self.run.path / "control.json"
        try:
            mtime = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            return None
        if mtime == self._control_mtime:
            return None
        self._control_mtime = mtime
        req = read_json(path, {})
        seq = request_seq(req)
        if seq <= self._seq_seen:
            return None
        self._seq_seen = seq
        return req.get("action")

    def check_stop(self) -> None:
        """Raise :class:`Interrupted` once a stop signal arrived."""
        if self.stop is not None and self.stop.requested:
            raise Interrupted(self.stop.name)

    def sample_system(self) -> None:
        if self.sampler is None:
            return

        try:
            if self.sampler.maybe(self.emit, lambda: [e for e in self.run.events() if isinstance(e, SystemSampled)]):
                # the samples as a table (tables/system.json), live: exported and shown like the other tables
                path = self.writer.write_table(system_table(self.sampler.samples))
                self.emit(TableWritten(name="system", path=str(path)))
        except Exception as exc:  # noqa: BLE001 - monitoring must never end a job
            self.sampler = None
            self.log(f"system sampling stopped: {type(exc).__name__}: {exc}", "warning")

    def poll(self, heartbeat: Callable[[], object] | None = None) -> None:
        """Call between steps: holds while paused, calling ``heartbeat`` about every second meanwhile
        (a distributed job's rank 0 tells the other ranks it is still paused).

        Raises :class:`Cancelled` on cancel, :class:`Interrupted` on a signal.
        """
        self.check_stop()
        self.sample_system()
        self._beat()
        action = self._read_request()
        if action == "cancel":
            raise Cancelled()
        if action != "pause":
            return
        self.emit(StatusChanged(status="paused", reason="paused by request"))
        beat = time.monotonic()
        while True:
            time.sleep(0.1)
            if heartbeat is not None and time.monotonic() - beat >= 1.0:
                heartbeat()
                beat = time.monotonic()
            self.check_stop()
            action = self._read_request()
            if action == "resume":
                self.emit(StatusChanged(status="running", reason="resumed"))
                if self.heartbeat is not None:
                    self.heartbeat.pause_gap()  # the pause is no step time
                return
            if action == "cancel":
                raise Cancelled()


def _hint_for(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, KeyboardInterrupt):
        return (
            "interrupted (ctrl+c)",
            "resume it to continue from its last checkpoint (lmconsole run <experiment> --resume)",
        )
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = str(exc).lower()
    if "out of memory" in low:
        return (
            f"out of memory: {text[:200]}",
            "lower batch_size (and raise gradient_accumulation_steps to keep the effective batch), "
            "or shorten max_seq_length",
        )
    if isinstance(exc, JobError):
        return exc.reason, exc.hint
    if isinstance(exc, ResolveError):
        return text, ""
    return f"{type(exc).__name__}: {text[:300]}", "see the traceback in the log"


RANK_FAILURE = "rank-{rank}.failure.json"  # a rank other than 0 that failed: {"reason", "hint"} (worker.py writes it)


def record_rank_failure(run: Run, rank: int, exc: BaseException) -> None:
    """A rank other than 0 failed: its reason and hint (an out-of-memory hint, say), redacted, in the run
    directory, where rank 0 (whose next collective fails) and the launcher's parent find them."""
    reason, hint = _hint_for(exc)
    atomic_write_json(
        run.path / RANK_FAILURE.format(rank=rank), {"reason": f"rank {rank}: {redact(reason)}", "hint": hint}
    )


def rank_failure(run: Run) -> tuple[str, str] | None:
    """The (reason, hint) a failed rank other than 0 left in ``run`` (the lowest rank's), or None."""
    for path in sorted(run.path.glob(RANK_FAILURE.format(rank="*")), key=lambda p: p.name):
        data = read_json(path, {})
        if isinstance(data, dict) and isinstance(data.get("reason"), str):
            return data["reason"], str(data.get("hint", ""))
    return None


IGNORED_CHANGES = ("description",)  # keys a resume may change without asking (they change no result)


def config_changes(exp, run: Run) -> dict:
    """Manifest keys whose value differs from the run's ``config.json``: {key: (run's value, manifest's value)}."""

    old = run.config()
    new = redact_values(json.loads(json.dumps(json_safe(exp.to_dict()))))  # as config.json holds it
    out = {}
    for key, value in new.items():
        if key in IGNORED_CHANGES or key.startswith("_"):
            continue
        if key not in old:
            default = EXPERIMENT_KEYS[key].default if key in EXPERIMENT_KEYS else None
            if value == default:
                continue  # a key added to lmconsole after the run started, at its default
            out[key] = ("(not set)", value)
        elif old[key] != value:
            out[key] = (old[key], value)
    return out


def describe_changes(changes: dict) -> str:
    return ", ".join(f"{k} {json_text(a)} -> {json_text(b)}" for k, (a, b) in changes.items())


def json_text(v) -> str:

    return v if isinstance(v, str) and v == "(not set)" else json.dumps(v)


def changed_run_error(name: str, changes: dict) -> JobError:
    return JobError(
        f"the manifest changed since this run started: {describe_changes(changes)}",
        f"restore those values, resume with `lmconsole run {name} --resume --accept-changes` to continue "
        "with the new values (recorded in the run), or start a new run without --resume",
    )


def _record_environment(ctx: JobContext) -> None:
    """What this run needs to be rerun exactly (:mod:`engine.job.environment`), written once at its start."""
    exp = ctx.exp
    device = ""
    if exp.task in ALL_TRAIN:
        device = str(pick_device(exp.device))
    source = ""
    if exp.dataset:
        try:
            source = resolve_dataset(exp.dataset, ctx.manifest.settings.data_mirror)
        except ResolveError:
            pass  # preflight has said why the data cannot be found; record the name alone
    record_environment(ctx.run.path, ctx.manifest.path, exp.dataset or "", source, device)


def _record_memory_estimate(ctx: JobContext) -> None:
    """The memory estimate of this attempt's device (:mod:`engine.models.memory`), in ``config.json``
    (``memory_estimate``, GiB per term) and the log; what cannot be estimated says why instead."""
    from engine.models.memory import experiment_estimate

    exp = ctx.exp
    if exp.task not in ALL_TRAIN:
        return
    on_gpu = pick_device(exp.device).type == "cuda"
    est, why = experiment_estimate(ctx.manifest, exp, on_gpu, ctx.store)
    config = ctx.run.config()
    config["memory_estimate"] = est.to_dict() if est is not None else {"unknown": why}
    atomic_write_json(ctx.run.path / "config.json", config)
    if est is not None:
        ctx.log(f"memory estimate: {est.line()}")


def experiment_for(manifest, name: str, run: Run | None = None, seed: int | None = None):
    """The experiment as one run of it executes: with ``seeds``, the seed of that run.

    A run that exists already (resumed, or started by a launcher) keeps the seed in
    its ``config.json``; a new one takes ``seed`` (default: the first of ``seeds``).
    """

    exp = manifest.get(name)
    if run is not None and getattr(exp, "sweep", None) is not None:
        return trial_experiment(exp, run)
    if not getattr(exp, "seeds", ()):
        return exp
    if run is not None and isinstance(run.config().get("seed"), int):
        seed = run.config()["seed"]
    return dataclasses.replace(exp, seed=exp.seeds[0] if seed is None else seed)


def trial_experiment(exp, run: Run):
    """A sweep's experiment as one of its trials runs it: the trial's parameters (``config.json``) applied.

    A run that is no trial (the sweep run in the foreground) is the experiment as written."""
    from engine.store.trials import trial_record

    record = trial_record(run)
    params = record.get("parameters") if record else None
    if not isinstance(params, dict):
        return exp
    types = {f.name: f.type for f in dataclasses.fields(exp)}
    values = {
        k: (float(v) if types.get(k) in ("float", float) and isinstance(v, int) else v) for k, v in params.items()
    }
    return dataclasses.replace(exp, **{k: v for k, v in values.items() if k in types})


@dataclass(frozen=True)
class JobOptions:
    """How one call of :func:`run_experiment` runs its job, beyond which experiment, sinks and store."""

    run: Run | None = None  # the run directory to write (the queue or a launcher made it); None: a new one
    resuming: bool = False  # ``run`` continues from its last checkpoint (``--resume``, the queue's retry)
    in_worker: bool = False  # a launcher's rank or the Slurm job itself: run here, never launch or submit again
    seed: int | None = None  # one seed of an experiment with ``seeds``
    group: str = ""  # ties the runs of one ``seeds`` submission together (written to config.json)
    accept_changes: bool = False  # resume even though the manifest's settings changed since the run started
    seen_seq: int | None = None  # control requests up to this sequence number are old: never act on them


def run_experiment(
    manifest,
    name: str,
    sinks=(),
    resume: Run | None = None,
    store: RunStore | None = None,
    options: JobOptions = JobOptions(),
) -> Run:
    """Run one experiment to completion in this thread; returns its run.

    ``resume`` continues an existing (interrupted, cancelled or failed) run from its last
    checkpoint; ``options`` say how a caller that made the run directory itself (the queue, a
    launcher's ranks, a Slurm job) wants it run (:class:`JobOptions`). ``options.seen_seq``: the
    queue passes what it saw when it started the job, so a cancel sent while the job process
    started up still counts. Never raises for job failures: they end up in the run's status
    (``failed`` with a reason) and as a :class:`JobFailed` event. With ``launcher`` set, the job
    runs as child processes under torchrun or accelerate and this thread follows its run
    directory (see :func:`_launch`). An experiment with ``seeds`` runs once per call:
    ``options.seed`` picks the seed and ``options.group`` ties the runs of one submission together.
    """
    run, seed, group, in_worker = options.run, options.seed, options.group, options.in_worker
    accept_changes = options.accept_changes
    # GPU indices (CUDA_VISIBLE_DEVICES, the system view's NVML indices) in PCI bus order, as the queue
    # sets it for its jobs; CUDA's default, fastest first, differs on a box with mixed GPUs.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    exp = experiment_for(manifest, name, run or resume, seed)
    store = store or RunStore(manifest.runs_dir)
    if run is None:
        config = exp.to_dict() | ({"group": group} if group else {})
        run = resume if resume is not None else store.create(exp.name, config)
    is_resume = resume is not None or options.resuming
    if not in_worker:  # executor = "slurm" submits the job and follows its run directory
        if executor_of(manifest, exp) == "slurm" and not in_slurm_job():
            return _submit_slurm(manifest, exp, run, sinks)
    if getattr(exp, "launcher", "none") != "none" and not in_worker:
        # The ranks run with in_worker: the changed-manifest check of a resume happens here, once.
        if is_resume and not _launch_changes_ok(exp, run, sinks, accept_changes):
            return run
        _launch(manifest, exp, run, sinks, is_resume)
        notify_run_end(manifest.settings, run)  # the launcher's ranks run in_worker: this process tells, once
        return run
    ctx = _job_context(manifest, exp, run, store, sinks, is_resume, options.seen_seq)
    stop, writer = ctx.stop, ctx.writer
    interrupted = False
    try:
        _run_job(ctx, check_changes=is_resume and not in_worker, accept_changes=accept_changes)
    except Interrupted as exc:
        interrupted = True
        ctx.emit(RunFinished(status="interrupted"))
        ctx.emit(
            StatusChanged(
                status="interrupted",
                reason=f"stopped by {exc.signal_name or 'a signal'}; checkpoint saved, resume continues from it",
            )
        )
    except Pruned as exc:  # a sweep's trial its pruner stopped: its results so far are kept
        ctx.writer.write_results(exc.results)
        ctx.emit(RunFinished(status="pruned", results=exc.results))
        ctx.emit(StatusChanged(status="pruned", reason=exc.reason))
    except Cancelled:
        ctx.emit(RunFinished(status="cancelled"))
        ctx.emit(
            StatusChanged(status="cancelled", reason="cancelled by request; resume to continue from the checkpoint")
        )
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - a job failure must never take the caller down
        _record_failure(ctx, exc)
        if isinstance(exc, KeyboardInterrupt):
            writer.close()
            raise
    finally:
        if stop is not None:
            stop.restore()
        writer.close()
        if stop is not None and stop.signum is not None and not interrupted:
            # The signal came after the last step boundary (the job finished or failed meanwhile): its
            # results are on disk. Killing the process now would report a finished run as killed (rc
            # -15); the caller sees it in late_stop() and starts nothing more.
            record_late_stop(stop.signum)
    if not in_worker:  # a launcher's rank 0 leaves it to its parent; a Slurm job tells from its own node
        notify_run_end(manifest.settings, run)
    return run


def _job_context(manifest, exp, run: Run, store: RunStore, sinks, is_resume: bool, seen_seq: int | None) -> JobContext:
    """The context a job runs in: its run's writer (opened), sinks, stop-signal handlers, sampler."""

    writer = RunWriter(run).open()
    stop = StopSignals()
    ctx = JobContext(
        manifest=manifest,
        exp=exp,
        run=run,
        writer=writer,
        sink=FanoutSink([writer, *sinks]),
        store=store,
        resume=is_resume,
        stop=stop if stop.install() else None,
        sampler=JobSampler(),
    )
    # A request left over from before (e.g. the cancel that stopped the last attempt) must not fire again.
    ctx._seq_seen = request_seq(run.pending_request()) if seen_seq is None else seen_seq
    return ctx


def _run_job(ctx: JobContext, check_changes: bool, accept_changes: bool) -> None:
    """Announce, attach trackers, check a resume's manifest, preflight, run the task, write its results."""

    exp, run = ctx.exp, ctx.run
    ctx.announce_start()
    if exp.report_to:  # trackers are sinks too (rank 0 only: other ranks never get here)
        assert isinstance(ctx.sink, FanoutSink)
        for tracker in make_trackers(run, exp, ctx.manifest, ctx.log):
            ctx.sink.add(tracker)
    if exp.sweep is not None and run.config().get("sweep"):  # a trial reports its evaluations to its study
        from engine.sweep.trial import trial_sink

        sink = trial_sink(ctx)
        if sink is not None:
            assert isinstance(ctx.sink, FanoutSink)
            ctx.sink.add(sink)
    if exp.trust_remote_code:
        ctx.log("trust_remote_code is on: this job may run code downloaded from the Hub", "warning")
    if check_changes:
        _check_changes(ctx, accept_changes)
    ctx.emit(PhaseStarted(phase="preflight", detail="disk, data, model, settings"))
    facts = run_preflight(ctx)
    ctx.log(preflight_line(facts, exp.vocab_size))
    _record_environment(ctx)
    _record_memory_estimate(ctx)
    results = task_function(exp.task)(ctx) or {}
    if ctx.start_model:
        results["start_model"] = ctx.start_model
    ctx.writer.write_results(results)
    ctx.emit(RunFinished(status="finished", results=results))
    stopped = results.get("stopped_early")  # early stopping: finished, and the reason says why before the end
    ctx.emit(
        StatusChanged(status="finished", reason=str(stopped.get("reason", "")) if isinstance(stopped, dict) else "")
    )


def _check_changes(ctx: JobContext, accept_changes: bool) -> None:
    """A resume with a changed manifest: refused, or (accepted) recorded in ``config.json``."""
    check_changes(ctx.exp, ctx.run, accept_changes, ctx.log)


def check_changes(exp, run: Run, accept_changes: bool, log) -> None:
    """Raise :func:`changed_run_error` when ``exp`` differs from the run's config; accepted changes are
    written to ``config.json`` (with the time, under ``_accepted_changes``) and logged through ``log``."""
    changes = config_changes(exp, run)
    if changes and not accept_changes:
        raise changed_run_error(exp.name, changes)
    if changes:  # continue with the new values, and say so in the run
        old = run.config()
        record = old.get("_accepted_changes", [])
        record = (record if isinstance(record, list) else []) + [
            {"time": time.time(), "changes": {k: list(v) for k, v in changes.items()}}
        ]
        kept = {k: v for k, v in old.items() if k.startswith("_")}  # the run's own records (auto_find_batch_size)
        atomic_write_json(
            run.path / "config.json", redact_values({**exp.to_dict(), **kept, "_accepted_changes": record})
        )
        log(f"resuming with changed settings (accepted): {describe_changes(changes)}", "warning")


def _launch_changes_ok(exp, run: Run, sinks, accept_changes: bool) -> bool:
    """A launcher job's resume: the changed-manifest check (the ranks skip it); False after recording the refusal."""

    def log(message: str, level: str = "info") -> None:
        for s in sinks:
            s.emit(LogEmitted(level=level, message=message))

    try:
        check_changes(exp, run, accept_changes, log)
    except JobError as exc:
        record_end(run, failure_events(exc.reason, exc.hint), sinks)
        return False
    return True


def _record_failure(ctx: JobContext, exc: BaseException) -> None:
    """A job's failure as JobFailed + status ``failed``, its reason and traceback redacted."""

    reason, hint = _hint_for(exc)
    other = rank_failure(ctx.run) if getattr(ctx.exp, "launcher", "none") != "none" else None
    if other is not None:  # rank 0's own error is then a collective that lost that rank: the cause is the rank's
        reason, hint = other
    failed, status = failure_events(redact(reason), hint, redact(traceback.format_exc()))
    try:
        ctx.emit(failed)
        ctx.emit(status)
    except Exception:  # noqa: BLE001 - e.g. a disk still full: the status (small, reserved space) must still say failed
        try:
            ctx.writer.set_status("failed", status.reason)
        except OSError:
            pass


def _launch(manifest, exp, run: Run, sinks, resume: bool) -> Run:
    """Start the launcher as a child process and follow the run directory until it exits."""

    follower = RunFollower(run, run.events_path.stat().st_size if run.events_path.exists() else 0)
    try:
        cmd = launcher_command(manifest, exp, run, resume)
    except JobError as exc:
        cmd = None
        failure = (exc.reason, exc.hint)
    log = open(run.path / "launcher.log", "ab")
    proc = None
    if cmd is not None:
        for old in run.path.glob(RANK_FAILURE.format(rank="*")):  # an earlier attempt's
            old.unlink(missing_ok=True)
        env = dict(os.environ, LMCONSOLE_LAUNCHED="1")
        env.setdefault("OMP_NUM_THREADS", "1")
        # torchrun (and accelerate, through torch's launcher) SIGKILLs the ranks this long after forwarding a
        # stop signal (default 30 s): a rank 0 in an evaluation or a checkpoint write must get to its checkpoint.
        env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] = str(SHUTDOWN_TIMEOUT_S)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=Path.cwd())
        for s in sinks:
            s.emit(
                LogEmitted(
                    level="info",
                    message=f"launched {exp.launcher} with {exp.nproc_per_node} process(es) per node; "
                    f"output in {run.path / 'launcher.log'}",
                )
            )

    forward = ForwardSignals(proc) if proc is not None else None
    if forward is not None:
        forward.install()
    try:
        while proc is not None:
            exited = proc.poll() is not None
            for ev in follower.poll()[0]:  # a rewind by the resumed rank 0 re-sends the kept history
                for s in sinks:
                    s.emit(ev)
            if exited:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        if proc is not None:
            proc.terminate()
        raise
    finally:
        if forward is not None:
            forward.restore()
        log.close()
    status = run.raw_status().get("status")
    if proc is not None and status in RUN_FINAL:
        return run
    # The children died before rank 0 could record why: record it for them.
    reason, hint = (
        failure
        if proc is None
        else rank_failure(run)
        or (
            f"the {exp.launcher} job exited with code {proc.returncode} before finishing",
            f"see {run.path / 'launcher.log'}",
        )
    )
    record_end(run, failure_events(reason, hint), sinks)
    return run


def _submit_slurm(manifest, exp, run: Run, sinks) -> Run:
    """Submit to Slurm and follow the run (see :mod:`engine.job.slurm`)."""

    follow(manifest, exp, run, sinks)
    return run
