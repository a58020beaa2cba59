"""Which evaluation metric picks the best model, and which way it improves (HF ``metric_for_best_model``).

``headline_metric(task)`` is the default of ``metric_for_best_model``: MLM perplexity for
pretraining, accuracy for classification, the SQuAD v2 ``f1`` for question answering.
``BEST_METRICS`` lists, per task, the evaluation metrics that can pick a best model: the
quality metrics an evaluation of that task reports (counts, baselines and thresholds are
left out: they do not get better). ``greater_is_better`` follows the metric's scale
(perplexities and losses: lower is better), as HF derives it from the name.
"""

from __future__ import annotations

from engine.metrics.scale import metric_scale

HEADLINE = {"pretrain": "mlm_perplexity", "classify": "accuracy", "qa": "f1"}

_SQUAD = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "best_exact", "best_f1")
_TEXT = ("bleu", "rouge1", "rouge2", "rougeL", "rougeLsum", "meteor", "sacrebleu")
BEST_METRICS: dict[str, tuple[str, ...]] = {
    "pretrain": ("mlm_perplexity", "mlm_loss", "mlm_accuracy", "nsp_accuracy", "pseudo_perplexity"),
    "classify": ("accuracy", "precision", "recall", "f1", "macro_f1"),
    "qa": _SQUAD + _TEXT,
}


def headline_metric(task: str) -> str:
    """The metric that picks the best model of ``task`` when ``metric_for_best_model`` is empty."""
    return HEADLINE.get(task, "")


def metric_name(name: str) -> str:
    """A metric as HF users write it (``eval_accuracy``) to the name our evaluations report (``accuracy``)."""
    return name.removeprefix("eval_")


def greater_is_better(metric: str, task: str = "") -> bool:
    """Whether a larger ``metric`` is better: False for perplexities and losses, True otherwise."""
    name = metric_name(metric)
    if name.endswith("loss"):  # HF's rule: a loss goes down; so does any metric named one
        return False
    return metric_scale(name, task).higher_is_better is not False
