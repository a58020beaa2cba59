"""The best model and early stopping (HF names), and evaluations inside an epoch, on the toy task.

The toy trains towards y = sum(x) and is evaluated against y = sum(x) / 2: its evaluation improves
for two epochs, then gets worse, as a run whose learning rate is too high for its late epochs.
"""

import pytest
from support.toyloop import ToyTask, toy_context, train_toy

from engine.events import CheckpointSaved, EvalFinished, StepLogged, TrainingStopped
from engine.store.runs import RunStore
from engine.train.best import BestTracker, Evaluation

BEST = dict(metric_for_best_model="eval_mse", greater_is_better=False)


class Overshoot(ToyTask):
    """Evaluated against half the training target: better for two epochs, then worse."""

    def __init__(self, die_at: tuple[int, int] | None = None, die_at_eval: int = 0):
        super().__init__()
        self.die_at, self.die_at_eval, self.evals = die_at, die_at_eval, 0

    def loss(self, model, batch):
        if self.die_at is not None and tuple(int(v) for v in batch["key"]) == self.die_at:
            raise Killed()
        return super().loss(model, batch)

    def evaluate(self, model, epoch: int) -> dict:
        import torch

        self.evals += 1
        if self.evals == self.die_at_eval:
            raise Killed()
        b = self.batch(99, 0)
        with torch.no_grad():
            return {"eval_mse": float((model(b["x"]).float() - 0.5 * b["y"]).pow(2).mean())}


class Killed(BaseException):
    """A kill: nothing in the loop or the job catches it, nothing after it runs."""


def _tracker(patience=2, threshold=0.0, greater=True) -> BestTracker:
    return BestTracker("accuracy", greater, patience, threshold)


def test_patience_counts_evaluations_without_an_improvement_beyond_the_threshold():
    t = _tracker(patience=2, threshold=0.01)
    values = [0.5, 0.6, 0.605, 0.608]
    seen = [t.update(Evaluation(e, e * 10, {"accuracy": v})) for e, v in enumerate(values, 1)]
    # 0.605 and 0.608 beat the best (which moves, as HF's best_metric does) but by no more than 0.01: two misses
    assert (t.value, t.epoch, t.step) == (0.608, 4, 40)
    assert seen[:3] == [None] * 3 and seen[3] is not None
    assert "accuracy did not improve by more than 0.01 for 2 evaluation(s)" in seen[3]
    assert "best 0.608 at epoch 4, step 40" in seen[3]
    again = _tracker(patience=2)
    assert [again.update(Evaluation(e, e, {"accuracy": v})) for e, v in enumerate(values + [0.7, 0.69], 1)] == [
        None
    ] * 6, "without a threshold every gain counts; 0.69 is one miss"
    low = _tracker(patience=1, greater=False)
    assert low.update(Evaluation(1, 1, {"accuracy": 3.0})) is None
    assert low.update(Evaluation(2, 2, {"accuracy": 2.0})) is None and low.value == 2.0
    assert low.update(Evaluation(3, 3, {"accuracy": 2.5})) is not None
    nan = _tracker(patience=0)
    assert nan.update(Evaluation(1, 1, {"accuracy": float("nan")})) is None and nan.value is None, "never best"


def test_a_metric_the_evaluation_lacks_is_named_with_those_it_has():
    with pytest.raises(Exception, match="'accuracy' is not among this evaluation's metrics \\(f1, loss\\)"):
        _tracker().update(Evaluation(1, 1, {"f1": 0.5, "loss": 1.0, "note": "x"}))
    assert _tracker().value_of({"accuracy": 0.5}) == 0.5
    eval_prefixed = BestTracker("eval_accuracy", True)
    assert eval_prefixed.value_of({"accuracy": 0.25}) == 0.25, "HF's eval_ prefix names our metric"


def test_the_defaults_are_the_task_headlines(tmp_path):
    def tracker(**keys):
        return BestTracker.for_experiment(toy_context(tmp_path, **keys).exp)

    assert tracker() is None, "nothing asked: no tracking, results unchanged"
    pre = tracker(load_best_model_at_end=True)
    assert (pre.metric, pre.greater) == ("mlm_perplexity", False)
    assert tracker(early_stopping_patience=3).patience == 3
    assert tracker(metric_for_best_model="mlm_accuracy").greater is True
    assert tracker(metric_for_best_model="mlm_perplexity", greater_is_better=True).greater is True, "given wins"


def _stopping(tmp_path, **keys):
    base = dict(epochs=8, early_stopping_patience=2, load_best_model_at_end=True, save_total_limit=1)
    return toy_context(tmp_path, **(BEST | base | keys))


def _without_time(results: dict) -> dict:
    out = dict(results, history=[{k: v for k, v in h.items() if k != "elapsed_s"} for h in results["history"]])
    out.pop("elapsed_s")
    return out


def test_early_stopping_ends_with_the_best_model_and_keeps_its_checkpoint(tmp_path):
    ctx = _stopping(tmp_path)
    result = train_toy(ctx, Overshoot())
    history = result["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3, 4], "stopped two evaluations after the best, of 8 epochs"
    best = min(history[1:], key=lambda h: h["eval_mse"])
    assert best["epoch"] == 2 and history[3]["eval_mse"] > best["eval_mse"] < history[4]["eval_mse"]
    assert result["final"]["eval_mse"] == best["eval_mse"], "the final model is the best evaluation's"
    assert result["best"] == {
        "metric": "eval_mse",
        "greater_is_better": False,
        "value": best["eval_mse"],
        "epoch": 2,
        "step": 16,
        "loaded": True,
    }
    assert result["last_eval"] == {"epoch": 4, "step": 32, "metrics": {"eval_mse": history[4]["eval_mse"]}}
    assert result["stopped_early"]["epoch"] == 4 and "eval_mse did not improve" in result["stopped_early"]["reason"]
    (stopped,) = [e for e in ctx.run.events() if isinstance(e, TrainingStopped)]
    assert (stopped.epoch, stopped.step, stopped.reason) == (4, 32, result["stopped_early"]["reason"])
    # save_total_limit = 1 keeps the newest checkpoint, and the best one besides
    assert sorted(p.name for p in ctx.run.checkpoints.iterdir()) == ["step-00000016", "step-00000032"]


def test_without_load_best_the_final_model_is_the_last_and_patience_zero_never_stops(tmp_path):
    result = train_toy(_stopping(tmp_path / "a", load_best_model_at_end=False), Overshoot())
    assert result["final"]["eval_mse"] == result["history"][-1]["eval_mse"] and "last_eval" not in result
    assert result["best"]["loaded"] is False and result["best"]["epoch"] == 2
    full = train_toy(_stopping(tmp_path / "b", early_stopping_patience=0, epochs=5), Overshoot())
    assert len(full["history"]) == 6 and "stopped_early" not in full
    best = min(full["history"][1:], key=lambda h: h["eval_mse"])
    assert best["epoch"] < 5 and full["final"]["eval_mse"] == best["eval_mse"], "the best model, loaded"


@pytest.mark.parametrize(
    "kill",
    [dict(die_at=(1, 6)), dict(die_at=(2, 4)), dict(die_at_eval=8)],
    ids=["before-the-best", "after-the-best-inside-an-epoch", "after-the-stop-while-loading-the-best"],
)
def test_a_kill_during_the_run_resumes_to_the_same_result(tmp_path, kill):
    """Evaluations at steps 6, 8, 12, 16 (the best), 18 and 24 (the stop); then the best is evaluated again.
    Kills at step 15 (resumes from 12), step 21 (from 18, one miss counted) and in that last evaluation."""
    keys = dict(eval_steps=6)
    reference = train_toy(_stopping(tmp_path / "ref", **keys), Overshoot())
    assert reference["global_step"] == 24 and reference["best"]["step"] == 16
    ctx = _stopping(tmp_path / "run", **keys)
    with pytest.raises(Killed):
        train_toy(ctx, Overshoot(**kill))
    resumed = train_toy(_stopping(tmp_path / "run", run=ctx.run, **keys), Overshoot())
    assert _without_time(resumed) == _without_time(reference)
    assert "stopped_early" in reference and reference["global_step"] < 64

    def evals(run):
        return [(e.epoch, e.step, e.metrics) for e in run.events() if isinstance(e, EvalFinished)]

    ref_run = RunStore(tmp_path / "ref" / "runs").latest("pre")
    assert evals(ctx.run) == evals(ref_run), "every evaluation once, as uninterrupted"
    assert [e.step for e in ctx.run.events() if isinstance(e, TrainingStopped)] == [reference["global_step"]]


def test_eval_steps_evaluates_inside_epochs_and_saves_only_with_load_best(tmp_path):
    ctx = toy_context(tmp_path, epochs=2, eval_steps=3, logging_steps=4)
    result = train_toy(ctx, Overshoot())
    evals = [(e.epoch, e.step) for e in ctx.run.events() if isinstance(e, EvalFinished)]
    # 8 steps per epoch: steps 3 and 6 inside epoch 1, 9, 12 and 15 inside epoch 2; the epoch ends as before
    assert evals == [(0, 0), (0.375, 3), (0.75, 6), (1, 8), (1.125, 9), (1.5, 12), (1.875, 15), (2, 16)]
    assert [h["epoch"] for h in result["history"]] == [e for e, _ in evals]
    assert ctx.run.read_table("epochs").column("epoch") == [e for e, _ in evals]
    # the training curve reaches each evaluation: steps are logged right before it
    logged = [e.step for e in ctx.run.events() if isinstance(e, StepLogged)]
    assert {3, 6, 9, 12, 15} <= set(logged) and {4, 8, 16} <= set(logged)
    saved = [e.step for e in ctx.run.events() if isinstance(e, CheckpointSaved)]
    assert saved == [8, 16], "no checkpoint per evaluation unless load_best_model_at_end asks"
    assert "best" not in result and "stopped_early" not in result
