"""What the training loop decides after each evaluation: the best model so far, and whether to stop.

The loop calls the hooks of one :class:`Evaluation` in one place (``loop.after_evaluation``):
the :class:`BestTracker` first (HF ``metric_for_best_model``, ``greater_is_better`` and
``EarlyStoppingCallback``), then any hook a task adds (a sweep's pruner reports there too).
A hook returns a reason to stop training, or None.

Early stopping as HF's callback does it: an evaluation counts as an improvement when its metric
beats the best so far by more than ``early_stopping_threshold``; ``early_stopping_patience``
evaluations in a row without one stop training. The best model itself moves on any strict
improvement, as HF's ``best_metric`` does. The evaluation before training is no candidate: its
weights were never trained (and never checkpointed).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from engine.errors import JobError
from engine.metrics.best import greater_is_better, headline_metric, metric_name


@dataclass(frozen=True)
class Evaluation:
    """An evaluation during training: its epoch (a fraction inside an epoch), optimizer step and metrics."""

    epoch: float
    step: int
    metrics: dict


EvalHook = Callable[[Evaluation], "str | None"]  # a reason to stop training, or None


@dataclass
class BestTracker:
    """The best evaluation so far by ``metric``, and the evaluations since the last improvement.

    Its :meth:`state` goes into every checkpoint, so a resumed run picks the same best model and
    stops at the same evaluation as an uninterrupted one.
    """

    metric: str
    greater: bool
    patience: int = 0  # 0: never stop
    threshold: float = 0.0
    value: float | None = None
    epoch: float | None = None
    step: int | None = None
    misses: int = 0  # evaluations in a row without an improvement beyond the threshold

    @classmethod
    def for_experiment(cls, exp: Any) -> BestTracker | None:
        """The tracker an experiment asks for (a best metric, the best model or early stopping); else None."""
        if not (exp.metric_for_best_model or exp.load_best_model_at_end or exp.early_stopping_patience):
            return None
        metric = exp.metric_for_best_model or headline_metric(exp.task)
        greater = exp.greater_is_better if exp.greater_is_better is not None else greater_is_better(metric, exp.task)
        return cls(metric, greater, exp.early_stopping_patience, exp.early_stopping_threshold)

    def restored(self, saved: object) -> BestTracker:
        """This tracker with the progress a checkpoint saved (its settings stay the experiment's)."""
        if isinstance(saved, dict) and saved.get("metric") == self.metric:
            self.value, self.epoch, self.step = saved.get("value"), saved.get("epoch"), saved.get("step")
            self.misses = int(saved.get("misses", 0))
        return self

    def state(self) -> dict:
        return asdict(self)

    def value_of(self, metrics: dict) -> float:
        value = metrics.get(self.metric, metrics.get(metric_name(self.metric)))  # "eval_accuracy" is "accuracy"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            have = ", ".join(k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
            raise JobError(
                f"metric_for_best_model {self.metric!r} is not among this evaluation's metrics ({have})",
                "set metric_for_best_model to one of them",
            )
        return float(value)

    def update(self, ev: Evaluation) -> str | None:
        """Count one evaluation; the reason to stop when the patience ran out, else None."""
        value = self.value_of(ev.metrics)
        better = math.isfinite(value) and (
            self.value is None or (value > self.value if self.greater else value < self.value)
        )
        improved = better and (self.value is None or abs(value - self.value) > self.threshold)
        if better:
            self.value, self.epoch, self.step = value, ev.epoch, ev.step
        self.misses = 0 if improved else self.misses + 1
        if self.patience and self.misses >= self.patience:
            by = f" by more than {self.threshold:g}" if self.threshold else ""
            return (
                f"early stopping: {self.metric} did not improve{by} for {self.misses} evaluation(s) "
                f"(best {self.value:.6g} at epoch {self.epoch:g}, step {self.step})"
                if self.value is not None
                else f"early stopping: {self.metric} was not finite for {self.misses} evaluation(s)"
            )
        return None

    def results(self) -> dict:
        """What ``results.json`` says of the best evaluation: metric, direction, value, epoch and step."""
        return {
            "metric": self.metric,
            "greater_is_better": self.greater,
            "value": self.value,
            "epoch": self.epoch,
            "step": self.step,
        }
