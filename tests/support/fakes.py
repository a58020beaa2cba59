"""Fakes for console tests and demos: a manifest, run directories on disk, and a fake job runner.

The fake runner goes through the same run-directory machinery as a real job
(``RunStore``, ``RunWriter``, ``JobContext.poll`` for pause/resume/cancel) but
trains nothing: it emits made-up metrics, optionally slowly, optionally blocking
until cancelled, optionally failing. Everything on disk is deterministic, so
snapshot tests can show it.
"""

from __future__ import annotations

import math
import os
import threading
import time
import traceback
from pathlib import Path

from engine.errors import Cancelled
from engine.events import (
    CheckpointSaved,
    EvalFinished,
    FanoutSink,
    JobFailed,
    LogEmitted,
    PhaseStarted,
    RunFinished,
    RunStarted,
    StatusChanged,
    StepLogged,
    TableWritten,
    to_json,
)
from engine.files import atomic_write_json
from engine.job.runner import JobContext
from engine.status import ENDED
from engine.store.runs import Run, RunStore, RunWriter
from engine.tables import Table

MANIFEST = """\
[settings]
runs_dir = "runs"

[[experiment]]
name = "params"
task = "inspect"
description = "Parameter tables of bert-micro"
model = "bert-micro"

[[experiment]]
name = "pretrain"
task = "pretrain"
description = "MLM + NSP of bert-micro on the embedded corpus"
model = "bert-micro"
dataset = "embedded:wikitext"
epochs = 2

[[experiment]]
name = "finetune"
task = "classify"
description = "SST-2 from the pretrain run"
model = "run:pretrain"
dataset = "embedded:sst2"
text_column = "sentence"

[[experiment]]
name = "baseline"
task = "pretrain"
description = "The same recipe on bert-tiny"
model = "bert-tiny"
dataset = "embedded:wikitext"
"""

T0 = 1_790_000_000.0  # fixed event times: snapshots must not depend on the clock


def write_manifest(folder: Path, text: str = MANIFEST, settings: str = "") -> Path:
    """``folder/experiments.toml`` holding ``text``, after a ``[settings]`` table of ``settings`` lines if any.

    The one manifest writer of the tests (tests/conftest.py re-exports it).
    """
    path = Path(folder) / "experiments.toml"
    path.write_text((f"[settings]\n{settings}\n" if settings else "") + text)
    return path


# -- made-up metrics -------------------------------------------------------------------


def _loss(step: int) -> float:
    return 2.0 + 6.0 * math.exp(-step / 15.0)


def _lr(step: int, total: int) -> float:
    warm = max(1, total // 10)
    return 1e-3 * (step / warm if step < warm else max(0.0, (total - step) / (total - warm)))


def _eval(epoch: int) -> dict:
    return {
        "mlm_perplexity": round(900.0 / (1 + 2 * epoch), 3),
        "mlm_loss": round(6.8 - 0.5 * epoch, 3),
        "accuracy": round(0.5 + 0.1 * epoch, 3),
        "sequences": 16,
    }


def _pretrain_eval(epoch: int) -> dict:
    """What a real pretraining evaluation reports (engine.tasks.pretrain.evaluate_mlm): no accuracy, no confusion."""
    return {
        "mlm_perplexity": round(3400.0 / (1 + 1.2 * epoch), 3),
        "mlm_accuracy": round(min(0.35, 0.01 + 0.04 * epoch), 3),
        "nsp_accuracy": round(min(0.8, 0.5 + 0.03 * epoch), 3),
        "masked_tokens": 1480,
    }


def _classify_eval(epoch: int) -> dict:
    acc = round(min(0.97, 0.48 + 0.045 * epoch), 3)
    wrong = round(500 * (1 - acc))
    return {
        "accuracy": acc,
        "precision": round(acc + 0.01, 3),
        "recall": round(acc - 0.01, 3),
        "f1": round(acc + 0.002, 3),
        "macro_f1": round(acc - 0.001, 3),
        "majority_baseline": 0.528,
        "confusion_matrix": [[236 - wrong // 2, wrong // 2], [wrong - wrong // 2, 264 - wrong + wrong // 2]],
        "classes": [0, 1],
        "class_names": ["negative", "positive"],
        "majority_class": 1,
        "n": 500,
        "eval_split": "validation",
    }


def _qa_eval(epoch: int) -> dict:
    f1 = round(36.0 + 4.2 * epoch, 2)
    return {
        "exact": round(f1 - 3.1, 2),
        "f1": f1,
        "total": 250,
        "HasAns_exact": round(f1 - 1.1, 2),
        "HasAns_f1": round(f1 + 2.0, 2),
        "HasAns_total": 160,
        "NoAns_exact": round(f1 - 4.0, 2),
        "NoAns_f1": round(f1 - 4.0, 2),
        "NoAns_total": 90,
        "best_exact": round(f1 - 2.5, 2),
        "best_f1": round(f1 + 0.8, 2),
        "bleu": round(0.02 * epoch, 3),
        "rougeL": round(0.3 + 0.05 * epoch, 3),
        "meteor": round(0.2 + 0.04 * epoch, 3),
        "empty_baseline_f1": 36.0,
    }


TASK_EVAL = {"classify": _classify_eval, "qa": _qa_eval}
NOTES = {
    "classify": "labels of split 'test' are hidden (all -1, as in GLUE): evaluated on 'validation' instead, "
    "so these numbers are validation numbers and not comparable with published test scores",
}


def epochs_table(name: str, evals: list[EvalFinished]) -> Table:
    real = "mlm_accuracy" in evals[0].metrics  # the columns of engine.tasks.pretrain's table
    cols = (
        ("epoch", "mlm_perplexity", "mlm_accuracy", "nsp_accuracy")
        if real
        else ("epoch", "mlm_perplexity", "mlm_loss", "accuracy")
    )
    return Table(
        name="epochs",
        columns=cols,
        rows=[(e.epoch, *(e.metrics.get(c) for c in cols[1:])) for e in evals],
        title=f"Pretraining of {name}: MLM perplexity on test",
    )


def params_tables() -> list[Table]:
    grouped = Table(
        name="params_base",
        title="Parameters of base (layer 0 shown once per stack)",
        columns=("module", "shape", "parameters", "repeat", "subtotal", "trainable"),
        rows=[
            ("embeddings.word_embeddings.weight", "1000x64", 64000, "", 64000, True),
            ("embeddings.position_embeddings.weight", "512x64", 32768, "", 32768, True),
            ("encoder.layer.0.attention.self.query.weight", "64x64", 4096, "x2", 8192, True),
            ("encoder.layer.0.output.dense.weight", "64x256", 16384, "x2", 32768, True),
            ("pooler.dense.weight", "64x64", 4096, "", 4096, True),
            ("TOTAL", "", None, "", 141824, None),
        ],
        notes=("141,824 parameters",),
    )
    diff = Table(
        name="params_diff_base_vs_qa",
        title="Parameter diff: base -> qa",
        columns=("module", "change", "base", "qa", "delta"),
        rows=[
            ("pooler", "removed", 4160, 0, -4160),
            ("qa_outputs", "added", 0, 130, 130),
            ("TOTAL", "", 141824, 137794, -4030),
        ],
        notes=("141,824 -> 137,794 (-4,030)",),
    )
    return [grouped, diff]


# -- run directories on disk (as another process would leave them) ---------------------------


def write_run(
    root: Path,
    experiment: str,
    run_id: str,
    status: str = "finished",
    *,
    task: str = "pretrain",
    model: str = "bert-micro",
    steps: int = 30,
    epochs: int = 2,
    reason: str = "",
    tables: bool = True,
    corrupt_line: bool = False,
    params: bool = False,
    hint: str = "",
    config: dict | None = None,
    real_pretrain_metrics: bool = False,
) -> Run:
    """A run directory with fixed ids and times; ``status`` running/paused reads as interrupted (no owner).

    ``real_pretrain_metrics``: a pretraining run reports what the engine's does (MLM perplexity and
    accuracy, NSP accuracy) instead of the older made-up keys other snapshots were drawn with."""
    path = Path(root) / experiment / run_id
    (path / "tables").mkdir(parents=True, exist_ok=True)
    atomic_write_json(path / "config.json", {"name": experiment, "task": task, "model": model, **(config or {})})
    events: list = [
        StatusChanged(status="running", time=T0),
        RunStarted(run_id=run_id, experiment=experiment, task=task, device="cpu", time=T0),
    ]
    metrics_of = _pretrain_eval if real_pretrain_metrics else TASK_EVAL.get(task, _eval)
    evals = _training_events(events, task, steps, epochs, metrics_of) if task != "inspect" else []
    events.append(LogEmitted(level="info", message="device cpu, fp32", time=T0 + 1))
    if status == "failed":
        events.append(
            JobFailed(
                reason=reason or "RuntimeError: boom",
                hint=hint or "see the traceback in the log",
                traceback="Traceback (most recent call last):\nRuntimeError: boom",
                time=T0 + 99,
            )
        )
    if status in ENDED:
        events.append(StatusChanged(status=status, reason=reason, time=T0 + 100))
    lines = [to_json(e) for e in events]
    if corrupt_line:
        lines.insert(3, '{"event": "StepLogged", "step": ')  # a torn write in the middle
        lines.insert(4, "not json at all")
    (path / "events.jsonl").write_text("\n".join(lines) + "\n")
    atomic_write_json(path / "status.json", {"status": status, "reason": reason})
    if status == "finished":
        atomic_write_json(path / "results.json", _results(task, evals, steps))
    if tables:
        for t in ([epochs_table(experiment, evals)] if evals else []) + (params_tables() if params else []):
            (path / "tables" / f"{t.name}.json").write_text(t.to_json())
    return Run(path)


def _step(
    step: int, per_epoch: int, steps: int, *, tokens_per_s: float, memory_mb: float, at: float | None = None
) -> StepLogged:
    """One logged step of the fixed synthetic curve; ``at`` fixes its time (default: now)."""
    return StepLogged(
        step=step,
        epoch=step / per_epoch,
        loss=_loss(step),
        learning_rate=_lr(step, steps),
        total_steps=steps,
        parts={"mlm_loss": _loss(step) - 0.7, "nsp_loss": 0.7},
        tokens_per_s=tokens_per_s,
        eta_s=float(steps - step),
        memory_mb=memory_mb,
        **({"time": at} if at is not None else {}),
    )


def _training_events(events: list, task: str, steps: int, epochs: int, metrics_of) -> list:
    """Append a training curve's StepLogged/EvalFinished events; return the evaluations (epoch 0 first)."""
    evals = []
    per_epoch = max(1, steps // epochs)
    evals.append(EvalFinished(epoch=0, step=0, split="test", metrics=metrics_of(0), time=T0 + 1))
    for step in range(2, steps + 1, 2):
        events.append(_step(step, per_epoch, steps, tokens_per_s=5000.0, memory_mb=512.0, at=T0 + 2 + step))
        if step // per_epoch > (step - 2) // per_epoch:  # crossed an epoch boundary
            evals.append(
                EvalFinished(
                    epoch=step // per_epoch,
                    step=step,
                    split="test",
                    metrics=metrics_of(step // per_epoch),
                    time=T0 + 2.5 + step,
                )
            )
            events.append(evals[-1])
    events.insert(2, evals[0])
    return evals


def _results(task: str, evals: list, steps: int) -> dict:
    """results.json of a finished run of ``task``."""
    if task == "inspect":
        return {"parameters": {"base": 141824, "qa": 137794}}
    final = dict(evals[-1].metrics)
    if task == "pretrain" and "mlm_accuracy" not in final:
        final["confusion_matrix"] = [[7, 1], [2, 6]]
    if task == "qa":  # as engine.metrics.text labels its text metrics: a long note of variants
        final["variants"] = {
            "bleu": "evaluate-style corpus BLEU-4, 0-1, no smoothing",
            "sacrebleu": "nrefs:var|case:mixed|eff:no|tok:13a|smooth:exp|version:2.4.3",
            "rouge": "rouge_score, Porter stemmer, rougeLsum over newlines",
            "meteor": "offline METEOR: exact and stem matches, no WordNet synonyms",
        }
    results: dict = {"final": final, "global_step": steps}
    if task in NOTES:
        results["final"]["note"] = results["note"] = NOTES[task]
    return results


def write_history(root: Path) -> list[Run]:
    """The runs the snapshot tests show: finished, failed, interrupted, and one without tables."""
    return [
        write_run(root, "params", "20260101-090000-000000-aaaa", task="inspect", params=True),
        write_run(root, "pretrain", "20260101-100000-000000-bbbb", steps=30),
        write_run(root, "pretrain", "20260102-100000-000000-cccc", "running", steps=12, corrupt_line=True),
        write_run(
            root,
            "finetune",
            "20260102-110000-000000-dddd",
            "failed",
            task="classify",
            reason="ValueError: label column 'label' not found",
            tables=False,
            steps=4,
        ),
    ]


def write_task_runs(root: Path) -> dict[str, Run]:
    """One finished run per fine-tuning task and a failed one, as the demo leaves them (for snapshots)."""
    return {
        "pretrain": write_run(
            root,
            "demo-pretrain",
            "20260103-090000-000000-eeee",
            steps=80,
            epochs=8,
            config={"epochs": 8, "learning_rate": 1e-3},
            real_pretrain_metrics=True,
        ),
        "classify": write_run(
            root,
            "demo-sst2",
            "20260103-100000-000000-ffff",
            task="classify",
            steps=120,
            epochs=12,
            config={"epochs": 12, "learning_rate": 3e-4, "dataset": "embedded:sst2"},
        ),
        "qa": write_run(
            root,
            "demo-squad",
            "20260103-110000-000000-9999",
            task="qa",
            steps=80,
            epochs=8,
            config={"epochs": 8, "learning_rate": 3e-4, "dataset": "embedded:squad_v2"},
        ),
        "failed": write_run(
            root,
            "demo-sst2",
            "20260103-120000-000000-8888",
            "failed",
            task="classify",
            steps=6,
            epochs=2,
            tables=False,
            reason="JobError: column 'sentence' not in embedded:sst2 (columns: text, label, idx)",
            hint="set text_column / label_column in the manifest to one of the columns listed",
        ),
    }


# -- a fake job runner for JobQueue(runner=...) --------------------------------------------------


class FakeRunner:
    """``JobQueue(manifest, runner=FakeRunner(...))``; behaviour per experiment name.

    Options (per experiment, or ``default``): ``steps``, ``epochs``, ``delay`` (seconds per
    step), ``block`` (hold after the first step until cancelled), ``fail`` (a message: raise
    after the first step), ``gate`` (a ``threading.Event`` the job waits on before finishing),
    ``start_gate`` (one it waits on before announcing its run, like a launcher starting up),
    ``note`` (a text every evaluation carries, as a classifier that scored another split).
    """

    def __init__(self, default: dict | None = None, **per_experiment: dict):
        self.default = {"steps": 6, "epochs": 2, "delay": 0.0, **(default or {})}
        self.per_experiment = per_experiment
        self.started = threading.Event()
        self.calls: list[str] = []

    def options(self, name: str) -> dict:
        return {**self.default, **self.per_experiment.get(name, {})}

    def __call__(
        self,
        manifest,
        name,
        sinks=(),
        resume=None,
        store=None,
        options=None,
    ) -> Run:
        """Same signature as ``engine.job.runner.run_experiment`` (the queue passes ``store`` and ``options``:
        the run directory, whether it resumes, ``seen_seq``, a seed)."""
        from engine.job.runner import JobOptions, experiment_for

        options = options or JobOptions()
        run, resume_flag, seen_seq, seed, group = (
            options.run,
            options.resuming,
            options.seen_seq,
            options.seed,
            options.group,
        )

        exp = experiment_for(manifest, name, run or resume, seed)  # as run_experiment: one seed of ``seeds``
        store = store or RunStore(manifest.runs_dir)
        run = run or resume or store.create(exp.name, exp.to_dict() | ({"group": group} if group else {}))
        is_resume = resume is not None or resume_flag
        resume = run if is_resume else None
        writer = RunWriter(run).open()
        sink = FanoutSink([writer, *sinks])
        ctx = JobContext(
            manifest=manifest, exp=exp, run=run, writer=writer, sink=sink, store=store, resume=resume is not None
        )
        ctx._seq_seen = int(run.pending_request().get("seq", 0)) if seen_seq is None else seen_seq  # as run_experiment
        self.calls.append(name)
        try:
            if self.options(name).get("start_gate") is not None:
                self.options(name)["start_gate"].wait(30)
            sink.emit(StatusChanged(status="running", reason="resumed" if resume else ""))
            sink.emit(RunStarted(run_id=run.run_id, experiment=name, task=exp.task, resumed=resume is not None))
            self.started.set()
            results = self._task(ctx, self.options(name))
            writer.write_results(results)
            sink.emit(RunFinished(status="finished", results=results))
            sink.emit(StatusChanged(status="finished"))
        except Cancelled:
            sink.emit(CheckpointSaved(step=1, epoch=0, path="checkpoints/step-00000001"))
            sink.emit(RunFinished(status="cancelled"))
            sink.emit(
                StatusChanged(status="cancelled", reason="cancelled by request; resume to continue from the checkpoint")
            )
        except Exception as exc:  # noqa: BLE001
            reason = f"{type(exc).__name__}: {exc}"
            sink.emit(JobFailed(reason=reason, hint="see the traceback in the log", traceback=traceback.format_exc()))
            sink.emit(StatusChanged(status="failed", reason=reason))
        finally:
            writer.close()
        return run

    def _task(self, ctx, opt: dict) -> dict:
        steps, epochs = opt["steps"], opt["epochs"]
        per_epoch = max(1, steps // epochs)
        ctx.emit(PhaseStarted(phase="data", detail="fake data"))
        ctx.log("device cpu, fp32")
        if os.environ.get("LMCONSOLE_JOB_RUNNER") and "CUDA_VISIBLE_DEVICES" in os.environ:
            ctx.log(f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}")  # what the scheduler handed out
        extra = {"note": opt["note"], "eval_split": "validation"} if opt.get("note") else {}
        evals = [EvalFinished(epoch=0, step=0, split="test", metrics={**_eval(0), **extra})]
        ctx.emit(evals[0])
        for step in range(1, steps + 1):
            ctx.poll()
            if opt.get("delay"):
                time.sleep(opt["delay"])
            ctx.emit(_step(step, per_epoch, steps, tokens_per_s=4000.0, memory_mb=256.0))
            if opt.get("fail"):
                raise RuntimeError(opt["fail"])
            while opt.get("block"):
                ctx.poll()  # raises Cancelled on cancel; holds while paused
                time.sleep(0.02)
            if step % per_epoch == 0:
                evals.append(
                    EvalFinished(
                        epoch=step // per_epoch, step=step, split="test", metrics={**_eval(step // per_epoch), **extra}
                    )
                )
                ctx.emit(evals[-1])
                path = ctx.writer.write_table(epochs_table(ctx.exp.name, evals))
                ctx.emit(TableWritten(name="epochs", path=str(path)))
        if opt.get("gate") is not None:
            opt["gate"].wait(30)
        if opt.get("gate_file"):  # across processes: wait until the file exists
            deadline = time.monotonic() + 60
            while not os.path.exists(opt["gate_file"]) and time.monotonic() < deadline:
                ctx.poll()
                time.sleep(0.02)
        return {"final": evals[-1].metrics, "global_step": steps}


def process_runner(manifest, name, **kwargs) -> Run:
    """A :class:`FakeRunner` for job processes: ``LMCONSOLE_JOB_RUNNER=support.fakes:process_runner``.

    Options come from ``LMCONSOLE_FAKE`` (JSON: ``{"default": {...}, "<experiment>": {...}}``);
    ``gate_file`` replaces ``gate`` (an event cannot cross processes).
    """
    import json

    opts = json.loads(os.environ.get("LMCONSOLE_FAKE", "{}") or "{}")
    default = opts.pop("default", {})
    return FakeRunner(default, **opts)(manifest, name, **kwargs)
