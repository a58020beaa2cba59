"""Experiment trackers (``report_to``): TensorBoard, Weights & Biases, MLflow, trackio.

Each tracker is an event sink beside the run directory: it receives the job's
events and writes what they carry through the tracker's own client library:

- step metrics (``StepLogged``): ``train/loss``, ``train/learning_rate``,
  ``train/tokens_per_s``, ``train/grad_norm`` (+ loss parts, samples/s, memory);
- evaluations (``EvalFinished``): ``eval/<metric>`` at the optimizer step of the
  evaluation, plus ``eval/epoch``;
- final results (``RunFinished``): ``final/<metric>`` (numbers only);
- the config: the experiment's keys, once at the start;
- system figures (``SystemSampled``, about every 30 s): its numeric fields as
  ``system/<field>`` (nested ones as ``system/host/cpu_percent``, ``system/gpus/0/...``).

A tracker never stops training: one that cannot be imported, started or
written to logs one warning (a ``LogEmitted`` event) and is switched off for
the rest of the job. Only rank 0 builds trackers (the other ranks have no sinks).

Offline conventions: W&B runs ``WANDB_MODE=offline`` when its server is
unreachable (its files land in ``<run>/wandb/``; ``wandb sync`` uploads them
later); MLflow writes a local file store, ``mlruns/`` beside the manifest, unless
``MLFLOW_TRACKING_URI`` says otherwise; TensorBoard writes ``<run>/tensorboard/``;
trackio writes its local store (``TRACKIO_DIR``, default under the HF cache).
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.events import EvalFinished, Event, RunFinished, RunStarted, StatusChanged, StepLogged, SystemSampled
from engine.status import RUN_FINAL, Status

EXTRA_HINT = "pip install 'lmconsole[{name}]'"


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def step_metrics(ev: StepLogged) -> dict[str, float]:
    out = {"train/loss": ev.loss, "train/learning_rate": ev.learning_rate, "train/epoch": ev.epoch}
    for name in ("grad_norm", "tokens_per_s", "samples_per_s", "memory_mb"):
        out[f"train/{name}"] = getattr(ev, name)
    for k, v in (ev.parts or {}).items():
        out[f"train/{k}"] = v
    return {k: n for k, v in out.items() if (n := _number(v)) is not None}


def eval_metrics(ev: EvalFinished) -> dict[str, float]:
    out = {f"eval/{k}": n for k, v in (ev.metrics or {}).items() if (n := _number(v)) is not None}
    out["eval/epoch"] = float(ev.epoch)
    return out


def final_metrics(results: dict) -> dict[str, float]:
    return {f"final/{k}": n for k, v in (results or {}).items() if (n := _number(v)) is not None}


def system_metrics(ev: Event) -> dict[str, float]:
    """Numeric fields of a system-sampling event (nested dicts flattened with ``/``)."""
    import dataclasses

    out: dict[str, float] = {}

    def add(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                add(f"{prefix}/{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                add(f"{prefix}/{i}", v)
        elif (n := _number(value)) is not None:
            out[prefix] = n

    for f in dataclasses.fields(ev):
        if f.name not in ("time", "step"):
            add(f"system/{f.name}", getattr(ev, f.name))
    return out


def is_system_event(ev: Event) -> bool:
    return isinstance(ev, SystemSampled)


def flat_config(config: dict) -> dict[str, str]:
    """Config as flat string parameters (MLflow params are strings of at most 6000 characters)."""
    out = {}
    for k, v in config.items():
        text = v if isinstance(v, str) else json.dumps(v)
        out[k] = text[:6000]
    return out


class TrackerSink:
    """Base of one tracker: turns events into ``log`` calls; failures warn once and disable it."""

    name = ""
    module = ""  # what must import for the tracker to work

    def __init__(self, run, exp, manifest, say: Callable[[str, str], None]):
        self.run, self.exp, self.manifest, self._say = run, exp, manifest, say
        self.config = dict(exp.to_dict(), run_id=run.run_id)
        self.on = True
        self.started = False
        self.last_step = 0
        self._thread: threading.Thread | None = None
        self._queue: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._notes: list[str] = []  # warnings
        self._info: list[str] = []

    # -- what each tracker implements ------------------------------------------
    def start(self) -> None: ...
    def log(self, metrics: dict[str, float], step: int) -> None: ...
    def summary(self, metrics: dict[str, float], step: int) -> None:
        self.log(metrics, step)

    def close(self, status: str) -> None: ...

    # -- event handling -----------------------------------------------------------
    # The training thread only queues events; a thread per tracker does the writing, so
    # a slow or hanging tracker (a database migration, an unreachable server) never
    # holds up an optimizer step. At a final status the job waits up to DRAIN_S for
    # the tracker to finish writing. Warnings wait in ``_notes`` and are emitted from
    # the training thread (the run directory has one writer thread).
    DRAIN_S = 120.0

    def emit(self, event: Event) -> None:
        self._flush_notes()
        if not self.on:
            return
        if self._thread is None:
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._work, name=f"tracker-{self.name}", daemon=True)
            self._thread.start()
        thread = self._thread
        self._queue.put(event)
        if isinstance(event, StatusChanged) and event.status in RUN_FINAL:
            self._queue.put(None)
            thread.join(self.DRAIN_S)
            if thread.is_alive():
                self.on = False
                self._notes.append(
                    f"report_to {self.name}: still writing after {self.DRAIN_S:.0f} s; "
                    "what it had not written yet is missing there (events.jsonl has everything)"
                )
            self._thread = None
            self._flush_notes()

    def _flush_notes(self) -> None:
        while self._info:
            self._say(self._info.pop(0), "info")
        while self._notes:
            self._say(self._notes.pop(0), "warning")

    def _work(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            if not self.on:
                continue
            try:
                self._handle(event)
            except Exception as exc:  # noqa: BLE001 - a tracker never stops training
                self.on = False
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                self._notes.append(
                    f"report_to {self.name}: {type(exc).__name__}: {first[:200]}; "
                    "this tracker is off for the rest of the job (training goes on)"
                )
                try:
                    self.close("failed")
                except Exception:  # noqa: BLE001
                    pass

    def _ensure_started(self) -> None:
        if not self.started:
            self.started = True
            self.start()

    def _handle(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._ensure_started()
        elif isinstance(event, StepLogged):
            self._ensure_started()
            self.last_step = event.step
            self.log(step_metrics(event), event.step)
        elif isinstance(event, EvalFinished):
            self._ensure_started()
            self.last_step = max(self.last_step, event.step)
            self.log(eval_metrics(event), event.step)
        elif is_system_event(event):
            self._ensure_started()
            metrics = system_metrics(event)
            if metrics:
                self.log(metrics, int(getattr(event, "step", self.last_step) or self.last_step))
        elif isinstance(event, RunFinished):
            self._ensure_started()
            final = final_metrics(event.results)
            if final:
                self.summary(final, self.last_step)
        elif isinstance(event, StatusChanged) and event.status in RUN_FINAL:
            if self.started:
                self.started = False
                self.close(event.status)


class TensorBoardSink(TrackerSink):
    """Event files under ``<run>/tensorboard/`` (``tensorboard --logdir runs``)."""

    name, module = "tensorboard", "tensorboard"

    def start(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = self.run.path / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.logdir), flush_secs=10)
        self.writer.add_text("config", "```\n" + json.dumps(self.config, indent=1) + "\n```", 0)

    def log(self, metrics, step) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def close(self, status) -> None:
        self.writer.close()


def _server_reachable(url: str, timeout: float = 3.0) -> bool:
    from engine.hub.resolve import probe_url

    return probe_url(url, timeout)


class WandbSink(TrackerSink):
    """A W&B run named ``<experiment>/<run-id>``; offline (files in ``<run>/wandb/``) without a network."""

    name, module = "wandb", "wandb"

    def start(self) -> None:
        import wandb

        mode: Any = os.environ.get("WANDB_MODE", "")  # wandb checks the value (a Literal in its stubs)
        why = ""
        if not mode:
            base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
            if not _server_reachable(base):
                mode, why = "offline", "no W&B server reachable"
            elif not _wandb_key(base):
                mode, why = "offline", "no W&B API key (WANDB_API_KEY or `wandb login`)"
            else:
                mode = "online"
        self.mode = mode
        self.wb = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "lmconsole"),
            name=f"{self.exp.name}/{self.run.run_id}",
            id=self.run.run_id.replace(":", "-"),
            resume="allow",
            dir=str(self.run.path),
            mode=mode,
            config=self.config,
            group=self.exp.name,
            job_type=self.exp.task,
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
        )
        if mode == "offline":
            self._info.append(
                f"report_to wandb: offline ({why or 'WANDB_MODE=offline'}); run files in "
                f"{self.run.path / 'wandb'}, upload them later with `wandb sync`"
            )

    def log(self, metrics, step) -> None:
        self.wb.log(metrics, step=step)

    def summary(self, metrics, step) -> None:
        for k, v in metrics.items():
            self.wb.summary[k] = v

    def close(self, status) -> None:
        self.wb.finish(exit_code=0 if status == "finished" else 1)


def _wandb_key(base_url: str) -> bool:
    """Is there a W&B API key (environment or ~/.netrc)? Online without one would stop at a login prompt."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc
    from urllib.parse import urlparse

    try:
        return netrc.netrc().authenticators(urlparse(base_url).hostname or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def mlflow_tracking_uri(manifest) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a local store: the SQLite file ``mlflow.db`` beside the manifest.

    That is MLflow 3's own local default (``sqlite:///mlflow.db``; its ``./mlruns``
    folder store is in maintenance mode and refuses to open unless
    ``MLFLOW_ALLOW_FILE_STORE=true``), anchored beside the manifest rather than the
    current directory. ``mlflow ui --backend-store-uri sqlite:///mlflow.db`` shows it.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri:
        return uri
    return "sqlite:///" + str(Path(manifest.path).resolve().parent / "mlflow.db")


class MlflowSink(TrackerSink):
    """An MLflow run (experiment = our experiment name, run name = our run id) in the tracking store."""

    name, module = "mlflow", "mlflow"

    def start(self) -> None:
        import logging

        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        for noisy in ("mlflow", "alembic"):  # schema migrations log at INFO on a new store
            logging.getLogger(noisy).setLevel(logging.WARNING)

        self.client = MlflowClient(tracking_uri=mlflow_tracking_uri(self.manifest))
        found = self.client.get_experiment_by_name(self.exp.name)
        exp_id = found.experiment_id if found else self.client.create_experiment(self.exp.name)
        self.mlrun = self.client.create_run(
            exp_id,
            run_name=self.run.run_id,
            tags={"lmconsole.run_dir": str(self.run.path), "lmconsole.task": self.exp.task},
        )
        self.run_id = self.mlrun.info.run_id
        params = [Param(k, v) for k, v in flat_config(self.config).items()]
        for i in range(0, len(params), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def log(self, metrics, step) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def close(self, status) -> None:
        self.client.set_terminated(
            self.run_id,
            status="FINISHED"
            if status == "finished"
            else ("KILLED" if status in (Status.CANCELLED, Status.INTERRUPTED, Status.PRUNED) else "FAILED"),
        )


class TrackioSink(TrackerSink):
    """A trackio run in its local store (project ``lmconsole``, run ``<experiment>/<run-id>``)."""

    name, module = "trackio", "trackio"

    def start(self) -> None:
        import trackio

        with _quiet():  # trackio prints its banner and dashboard hints to stdout
            self.tk = trackio.init(
                project=os.environ.get("TRACKIO_PROJECT", "lmconsole"),
                name=f"{self.exp.name}/{self.run.run_id}",
                config=self.config,
                resume="allow",
                auto_log_gpu=False,
                auto_log_cpu=False,
            )

    def log(self, metrics, step) -> None:
        self.tk.log(metrics, step=step)

    def close(self, status) -> None:
        import trackio

        with _quiet():
            trackio.finish()  # the module-level call also forgets the current run (no second finish at exit)


def _quiet():
    """Swallow a library's stdout chatter (progress lines would garble ``lmconsole run`` output)."""
    import contextlib
    import io

    return contextlib.redirect_stdout(io.StringIO())


SINKS = {cls.name: cls for cls in (TensorBoardSink, WandbSink, MlflowSink, TrackioSink)}


def make_trackers(run, exp, manifest, say: Callable[[str, str], None]) -> list[TrackerSink]:
    """The enabled trackers of ``exp.report_to`` that can be imported; a missing one warns once."""
    import importlib.util

    if int(os.environ.get("RANK", "0") or 0) != 0:  # only rank 0 reports
        return []
    out: list[TrackerSink] = []
    for name in getattr(exp, "report_to", ()) or ():
        cls = SINKS[name]
        if importlib.util.find_spec(cls.module) is None:
            say(
                f"report_to {name}: the {cls.module} package is not installed ({EXTRA_HINT.format(name=name)}); "
                "the job goes on without it",
                "warning",
            )
            continue
        out.append(cls(run, exp, manifest, say))
    return out
