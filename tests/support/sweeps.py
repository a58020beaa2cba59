"""A sweep as its trials leave it on disk (fixed ids, times and objectives), for console tests.

Each trial is a fake classify run (:func:`support.fakes.write_run`) whose ``config.json`` carries
the ``sweep`` record the scheduler writes; its final accuracy is set per trial, so the trials
sort, and the best is marked, the same way every time. No Optuna study is written: the view
says why it has no importances.
"""

from __future__ import annotations

from pathlib import Path

from engine.files import atomic_write_json
from engine.store.runs import Run
from support.fakes import MANIFEST, write_run

SWEEP = "lr-sweep"
STUDY = "lr-sweep-20260104-090000"

SWEEP_MANIFEST = (
    MANIFEST
    + f"""
[[experiment]]
name = "{SWEEP}"
task = "classify"
description = "A grid over the learning rate and batch size"
model = "bert-micro"
dataset = "embedded:sst2"
[experiment.sweep]
method = "grid"
objective = "accuracy"
trials = 8
parallel = 2
[experiment.sweep.parameters]
learning_rate = [1e-5, 1e-4, 1e-3, 1e-2]
batch_size = [8, 16]
"""
)

# (trial, status, learning_rate, batch_size, final accuracy or None)
TRIALS = [
    (0, "finished", 1e-5, 8, 0.61),
    (1, "finished", 1e-4, 8, 0.83),
    (2, "finished", 1e-3, 16, 0.912),
    (3, "pruned", 1e-2, 16, 0.52),
    (4, "finished", 1e-4, 16, 0.875),
    (5, "running", 1e-3, 8, None),
]


def write_sweep_trials(root: Path, trials=TRIALS) -> list[Run]:
    """The trials of :data:`SWEEP` under ``root`` (a runs directory); ``running`` reads as interrupted."""
    runs = []
    for number, status, lr, bs, acc in trials:
        record = {
            "name": SWEEP,
            "study": STUDY,
            "trial": number,
            "parameters": {"learning_rate": lr, "batch_size": bs},
            "objective": "accuracy",
            "direction": "maximize",
        }
        run = write_run(
            root,
            SWEEP,
            f"20260104-09{number:02d}00-000000-{number:04d}",
            status,
            task="classify",
            steps=8,
            epochs=2,
            config={"learning_rate": lr, "batch_size": bs, "sweep": record},
        )
        if acc is not None:
            history = [{"epoch": 1, "accuracy": round(acc - 0.05, 3)}, {"epoch": 2, "accuracy": acc}]
            atomic_write_json(run.path / "results.json", {"final": {"accuracy": acc}, "history": history})
        runs.append(run)
    return runs
