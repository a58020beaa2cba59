"""The training loop on a toy task: a linear model, eight fixed batches, a real run directory.

Fast enough to drive ``engine.train.loop.train`` through many paths (precision, NaN policies,
resume checks) in a fraction of a second each; the loss function can be made non-finite at
chosen micro-batches, and records every loss it returned.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from support.manifests import PRETRAIN, experiment, manifest_text

from engine.job.runner import JobContext
from engine.manifest import parse_text
from engine.store.runs import Run, RunStore, RunWriter

N_BATCHES = 8


class ToyTask:
    """A linear regression whose loss is ``scale`` x the mean squared error; ``bad`` batches give NaN.

    ``losses`` lists (epoch, batch, loss) for every micro-batch the loop computed.
    """

    def __init__(self, scale: float = 1.0, bad: tuple[tuple[int, int], ...] = ()):
        import torch

        torch.manual_seed(0)
        self.model = torch.nn.Linear(4, 1)
        self.scale = scale
        self.bad = set(bad)
        self.losses: list[tuple[int, int, float]] = []

    def batch(self, epoch: int, index: int) -> dict:
        import torch

        g = torch.Generator().manual_seed(1000 * epoch + index)
        x = torch.randn(4, 4, generator=g)
        return {
            "x": x,
            "y": x.sum(dim=1, keepdim=True),
            "key": torch.tensor([epoch, index]),
            "n_tokens": 16,
            "n_samples": 4,
        }

    def loss(self, model, batch):
        import torch

        epoch, index = (int(v) for v in batch["key"])
        out = model(batch["x"]).float()  # fp32 loss, as the tasks compute theirs
        loss = (out - batch["y"]).pow(2).mean() * self.scale
        if (epoch, index) in self.bad:
            loss = loss * torch.tensor(math.nan)
        self.losses.append((epoch, index, float(loss.detach())))
        return loss, {"mse": loss.detach()}

    def evaluate(self, model, epoch: int) -> dict:
        import torch

        b = self.batch(99, 0)
        with torch.no_grad():
            return {"eval_mse": float((model(b["x"]).float() - b["y"]).pow(2).mean())}

    def spec(self):
        from engine.train.loop import TaskSpec

        return TaskSpec(
            model=self.model,
            n_batches=lambda epoch: N_BATCHES,
            get_batch=self.batch,
            loss=self.loss,
            evaluate=self.evaluate,
            table_columns=("eval_mse",),
        )


def toy_context(folder: Path, run: Run | None = None, **keys) -> JobContext:
    """A job context for the toy task: experiment "pre" with ``keys`` changed (``run``: resume that run)."""
    text = manifest_text(folder / "runs", experiment(PRETRAIN))
    manifest = parse_text(text, folder / "experiments.toml")
    base = dict(learning_rate=0.05, warmup=0, weight_decay=0.0, logging_steps=4, save_minutes=0, epochs=1)
    exp = dataclasses.replace(manifest.get("pre"), **(base | keys))
    store = RunStore(manifest.runs_dir)
    resume = run is not None
    run = run or store.create(exp.name, exp.to_dict())
    writer = RunWriter(run).open()
    return JobContext(manifest=manifest, exp=exp, run=run, writer=writer, sink=writer, store=store, resume=resume)


def train_toy(ctx: JobContext, task: ToyTask, amp_dtype=None) -> dict:
    """``train`` on the CPU; the writer is closed afterwards (also when the loop raises)."""
    import torch

    from engine.train.loop import train

    try:
        return train(ctx, task.spec(), torch.device("cpu"), amp_dtype)
    finally:
        ctx.writer.close()


class GatedToyTask(ToyTask):
    """The toy task as a job process runs it: its evaluation named as pretraining's (``mlm_perplexity``), and
    every batch held until the file ``gate`` exists (empty: never held), so a test's kills land while
    the job runs."""

    def __init__(self, gate: str = ""):
        super().__init__()
        self.gate = Path(gate) if gate else None

    def batch(self, epoch: int, index: int) -> dict:
        import time

        deadline = time.monotonic() + 120
        while self.gate is not None and not self.gate.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return super().batch(epoch, index)

    def evaluate(self, model, epoch: int) -> dict:
        return {"mlm_perplexity": super().evaluate(model, epoch)["eval_mse"]}

    def spec(self):
        return dataclasses.replace(super().spec(), table_columns=("mlm_perplexity",))


def process_runner(manifest, name, **kwargs):
    """The real job runner around the toy task, for job processes:
    ``LMCONSOLE_JOB_RUNNER=support.toyloop:process_runner`` (``LMCONSOLE_TOY_GATE``: the gate file).

    Everything a job does (its run directory, events, results, a sweep trial's reports to its study and
    the pruner's answer) is real; only the task is the toy one: no data, no preflight, no package list.
    """
    import os

    import torch

    from engine.job import runner as job_runner
    from engine.train.loop import train

    task = GatedToyTask(os.environ.get("LMCONSOLE_TOY_GATE", ""))
    job_runner.task_function = lambda _task: lambda ctx: train(ctx, task.spec(), torch.device("cpu"))
    job_runner.run_preflight = lambda ctx: {"parameters": 5, "checkpoint_bytes": 0}
    job_runner._record_environment = lambda ctx: None
    return job_runner.run_experiment(manifest, name, **kwargs)
