"""Running one experiment as a job: run directory, status, control and failure handling.

:func:`run_experiment` runs a job in the calling thread (a job process of the
queue, ``engine.jobproc``, calls it; so do a foreground ``lmconsole run`` and a
launcher's rank 0). Control requests (pause/resume/cancel) reach a job the same way from
any process: :meth:`Run.request` writes ``control.json``; the job polls it
between optimizer steps (one ``os.stat``, microseconds).
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .events import (
    EventSink, FanoutSink, JobFailed, LogEmitted, RunFinished, RunStarted, StatusChanged,
)
from .runs import Run, RunStore, RunWriter, read_json


class Cancelled(Exception):
    """Raised inside a task when the user cancels; the task saves a checkpoint first."""


class JobError(Exception):
    """An expected failure with a one-line reason and a hint for the user."""

    def __init__(self, reason: str, hint: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


@dataclass
class JobContext:
    """What a task gets: its experiment, the run it writes, and the control channel."""

    manifest: object
    exp: object
    run: Run
    writer: RunWriter
    sink: EventSink
    store: RunStore
    resume: bool = False
    start_model: str = ""  # the run a fine-tuning started from, for results and model cards
    _control_mtime: float = field(default=0.0, repr=False)
    _seq_seen: int = field(default=0, repr=False)

    def emit(self, event) -> None:
        self.sink.emit(event)

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
        req = read_json(path, {}) or {}
        seq = int(req.get("seq", 0))
        if seq <= self._seq_seen:
            return None
        self._seq_seen = seq
        return req.get("action")

    def poll(self) -> None:
        """Call between steps: holds while paused; raises :class:`Cancelled` on cancel."""
        action = self._read_request()
        if action == "cancel":
            raise Cancelled()
        if action != "pause":
            return
        self.emit(StatusChanged(status="paused", reason="paused by request"))
        while True:
            time.sleep(0.1)
            action = self._read_request()
            if action == "resume":
                self.emit(StatusChanged(status="running", reason="resumed"))
                return
            if action == "cancel":
                raise Cancelled()


def _hint_for(exc: BaseException) -> tuple[str, str]:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = str(exc).lower()
    if "out of memory" in low:
        return (f"out of memory: {text[:200]}",
                "lower batch_size (and raise gradient_accumulation_steps to keep the effective batch), or shorten max_seq_length")
    if isinstance(exc, JobError):
        return exc.reason, exc.hint
    from .hub import ResolveError

    if isinstance(exc, ResolveError):
        return text, ""
    return f"{type(exc).__name__}: {text[:300]}", "see the traceback in the log"


TASKS = {
    "inspect": "engine.tasks.inspect:run",
    "pretrain": "engine.tasks.pretrain:run",
    "classify": "engine.tasks.classify:run",
    "qa": "engine.tasks.qa:run",
}


def _task_fn(task: str):
    import importlib

    mod, fn = TASKS[task].split(":")
    return getattr(importlib.import_module(mod), fn)


def run_experiment(manifest, name: str, sinks=(), resume: Run | None = None, store: RunStore | None = None,
                   run: Run | None = None, resume_flag: bool = False, in_worker: bool = False,
                   seen_seq: int | None = None) -> Run:
    """Run one experiment to completion in this thread; returns its run.

    ``resume`` continues an existing (interrupted, cancelled or failed) run from
    its last checkpoint. ``seen_seq``: control requests up to this sequence number
    are old (the queue passes what it saw when it started the job, so a cancel sent
    while the job process started up still counts). Never raises for job failures: they end up in the
    run's status (``failed`` with a reason) and as a :class:`JobFailed` event.
    With ``launcher`` set, the job runs as child processes under torchrun or
    accelerate and this thread follows its run directory (see :func:`_launch`).
    """
    exp = manifest.get(name)
    store = store or RunStore(manifest.runs_dir)
    if run is None:
        run = resume if resume is not None else store.create(exp.name, exp.to_dict())
    is_resume = resume is not None or resume_flag
    if getattr(exp, "launcher", "none") != "none" and not in_worker:
        return _launch(manifest, exp, run, sinks, is_resume)
    writer = RunWriter(run).open()
    sink = FanoutSink([writer, *sinks])
    ctx = JobContext(manifest=manifest, exp=exp, run=run, writer=writer, sink=sink, store=store, resume=is_resume)
    # A request left over from before (e.g. the cancel that stopped the last attempt) must not fire again.
    ctx._seq_seen = int(run.pending_request().get("seq", 0)) if seen_seq is None else seen_seq
    try:
        sink.emit(StatusChanged(status="running", reason="resumed" if is_resume else ""))
        sink.emit(RunStarted(run_id=run.run_id, experiment=exp.name, task=exp.task, resumed=is_resume))
        if exp.trust_remote_code:
            ctx.log("trust_remote_code is on: this job may run code downloaded from the Hub", "warning")
        from .events import PhaseStarted
        from .preflight import run_preflight

        sink.emit(PhaseStarted(phase="preflight", detail="disk, data, model, settings"))
        facts = run_preflight(ctx)
        ctx.log(f"preflight ok: {facts['parameters']:,} parameters (base), about {facts['checkpoint_bytes'] / 2**20:,.0f} MiB per checkpoint set")
        results = _task_fn(exp.task)(ctx) or {}
        if ctx.start_model:
            results["start_model"] = ctx.start_model
        writer.write_results(results)
        sink.emit(RunFinished(status="finished", results=results))
        sink.emit(StatusChanged(status="finished"))
    except Cancelled:
        sink.emit(RunFinished(status="cancelled"))
        sink.emit(StatusChanged(status="cancelled", reason="cancelled by request; resume to continue from the checkpoint"))
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - a job failure must never take the caller down
        reason, hint = _hint_for(exc)
        from .secrets import redact

        reason, tb = redact(reason), redact(traceback.format_exc())
        sink.emit(JobFailed(reason=reason, hint=hint, traceback=tb))
        sink.emit(StatusChanged(status="failed", reason=reason + (f" (hint: {hint})" if hint else "")))
        if isinstance(exc, KeyboardInterrupt):
            writer.close()
            raise
    finally:
        writer.close()
    return run


def launcher_command(manifest, exp, run: Run, resume: bool) -> list[str]:
    """The torchrun / accelerate command line that runs ``engine.worker`` for this job."""
    import shutil
    import sys

    worker = ["-m", "engine.worker", "--lmc-manifest", str(Path(manifest.path).resolve()),
              "--lmc-experiment", exp.name, "--lmc-run", str(run.path.resolve())] + (["--lmc-resume"] if resume else [])
    if exp.launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={exp.nproc_per_node}",
               f"--nnodes={exp.nnodes}"]
        if exp.rdzv_endpoint:
            cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={exp.rdzv_endpoint}"]
        elif exp.nnodes == 1:
            cmd += ["--standalone"]
        return cmd + list(exp.launcher_args) + worker
    exe = shutil.which("accelerate")
    if exe is None:
        raise JobError('launcher = "accelerate" but the accelerate command is not installed',
                       'pip install accelerate, or use launcher = "torchrun"')
    return [exe, "launch", f"--num_processes={exp.nproc_per_node * exp.nnodes}", f"--num_machines={exp.nnodes}",
            *exp.launcher_args, *worker]


def _launch(manifest, exp, run: Run, sinks, resume: bool) -> Run:
    """Start the launcher as a child process and follow the run directory until it exits."""
    import subprocess

    from .events import LogEmitted

    from .follow import RunFollower

    follower = RunFollower(run, run.events_path.stat().st_size if run.events_path.exists() else 0)
    try:
        cmd = launcher_command(manifest, exp, run, resume)
    except JobError as exc:
        cmd = None
        failure = (exc.reason, exc.hint)
    log = open(run.path / "launcher.log", "ab")
    proc = None
    if cmd is not None:
        env = dict(os.environ, LMCONSOLE_LAUNCHED="1")
        env.setdefault("OMP_NUM_THREADS", "1")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=Path.cwd())
        for s in sinks:
            s.emit(LogEmitted(level="info", message=f"launched {exp.launcher} with {exp.nproc_per_node} process(es) per node; "
                                                    f"output in {run.path / 'launcher.log'}"))
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
        proc.terminate()
        raise
    finally:
        log.close()
    status = run.raw_status().get("status")
    if proc is not None and status in ("finished", "cancelled", "failed"):
        return run
    # The children died before rank 0 could record why: record it for them.
    reason, hint = failure if proc is None else (
        f"the {exp.launcher} job exited with code {proc.returncode} before finishing",
        f"see {run.path / 'launcher.log'}")
    writer = RunWriter(run).open()
    try:
        for ev in (JobFailed(reason=reason, hint=hint), StatusChanged(status="failed", reason=f"{reason} (hint: {hint})")):
            writer.emit(ev)
            for s in sinks:
                s.emit(ev)
    finally:
        writer.close()
    return run


def dependency_run(store: RunStore, exp_name: str) -> Run:
    """The latest finished run of ``exp_name`` (what ``model = "run:<exp>"`` means)."""
    run = store.latest(exp_name, status="finished")
    if run is None:
        raise JobError(
            f"needs a finished run of {exp_name!r}, and there is none",
            f"run it first: lmconsole run {exp_name} (the console and `lmconsole run` queue dependencies for you)",
        )
    return run
