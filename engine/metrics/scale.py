"""One scale per metric, for every header, export and plot axis.

``metric_scale(name, task)`` says what a reported number is measured in, so a table header
can read ``f1 (0-100)`` and a plot never puts a 0-1 metric and a 0-100 metric on one axis:

- the squad_v2 keys (exact, f1, HasAns_*, NoAns_*, best_*) are 0-100, as the official
  ``evaluate-v2.0.py`` prints them; ``*_total`` are counts; ``best_*_thresh`` are no-answer
  score thresholds (null score minus best span score, unbounded);
- classification metrics (accuracy, precision, recall, f1, macro_f1, majority_baseline),
  MLM / NSP accuracy, ROUGE, METEOR and evaluate-style ``bleu`` are 0-1;
- ``sacrebleu`` is 0-100 (sacrebleu's own scale);
- perplexities are >= 1 (lower is better), losses are in nats per token.

``f1`` and ``exact`` mean different things in different tasks: pass the task ("qa",
"classify", "pretrain") or a metric name that says it; an unknown metric's scale is "".
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Scale", "metric_scale", "metric_label", "same_axis", "SCALES"]


@dataclass(frozen=True)
class Scale:
    unit: str  # "0-1", "0-100", "count", "ppl", "nats", "s", "score", ""
    lo: float | None  # axis bounds where fixed
    hi: float | None
    higher_is_better: bool | None = True

    @property
    def label(self) -> str:
        return {
            "ppl": ">= 1, lower is better",
            "nats": "nats",
            "count": "count",
            "s": "seconds",
            "score": "no-answer score",
        }.get(self.unit, self.unit)


UNIT = Scale("0-1", 0.0, 1.0)
PERCENT = Scale("0-100", 0.0, 100.0)
COUNT = Scale("count", 0.0, None, None)
PPL = Scale("ppl", 1.0, None, False)
NATS = Scale("nats", 0.0, None, False)
SECONDS = Scale("s", 0.0, None, None)
THRESH = Scale("score", None, None, None)
UNKNOWN = Scale("", None, None, None)

_SQUAD_PERCENT = {
    "exact",
    "f1",
    "HasAns_exact",
    "HasAns_f1",
    "NoAns_exact",
    "NoAns_f1",
    "best_exact",
    "best_f1",
    "empty_baseline_f1",
}
SCALES: dict[str, Scale] = {
    # classification (sklearn conventions)
    "accuracy": UNIT,
    "precision": UNIT,
    "recall": UNIT,
    "macro_f1": UNIT,
    "majority_baseline": UNIT,
    # pretraining
    "mlm_accuracy": UNIT,
    "nsp_accuracy": UNIT,
    "mlm_perplexity": PPL,
    "pseudo_perplexity": PPL,
    "mlm_loss": NATS,
    "train_loss": NATS,
    "masked_tokens": COUNT,
    "sequences": COUNT,
    # answer-text metrics (over answerable questions)
    "bleu": UNIT,
    "rouge1": UNIT,
    "rouge2": UNIT,
    "rougeL": UNIT,
    "rougeLsum": UNIT,
    "meteor": UNIT,
    "sacrebleu": PERCENT,
    "no_answer_rate": UNIT,
    # squad_v2 (official script: 0-100)
    **{k: PERCENT for k in _SQUAD_PERCENT},
    "total": COUNT,
    "HasAns_total": COUNT,
    "NoAns_total": COUNT,
    "n_answerable": COUNT,
    "n": COUNT,
    "best_exact_thresh": THRESH,
    "best_f1_thresh": THRESH,
    "elapsed_s": SECONDS,
    "epoch": COUNT,
}
# names whose scale depends on the task
_BY_TASK = {("f1", "classify"): UNIT, ("f1", "qa"): PERCENT, ("exact", "qa"): PERCENT}


def metric_scale(name: str, task: str = "") -> Scale:
    """The scale of metric ``name`` (a results key, possibly dotted like ``final.f1``)."""
    key = name.rsplit(".", 1)[-1]
    for suffix in ("_mean", "_std"):  # seed aggregates keep their metric's scale
        if key.endswith(suffix) and key[: -len(suffix)] in SCALES:
            key = key[: -len(suffix)]
    if (key, task) in _BY_TASK:
        return _BY_TASK[(key, task)]
    if key == "f1" and task in ("", None):
        return UNKNOWN  # ambiguous: SQuAD f1 is 0-100, classification f1 0-1
    return SCALES.get(key, UNKNOWN)


def metric_label(name: str, task: str = "") -> str:
    """``name (scale)`` for a header, or ``name`` when the scale is unknown."""
    s = metric_scale(name, task)
    return f"{name} ({s.label})" if s.unit else name


def same_axis(names, task: str = "") -> bool:
    """True when all these metrics can share one plot axis (one unit)."""
    return len({metric_scale(n, task).unit for n in names}) <= 1
