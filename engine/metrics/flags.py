"""Flags on degenerate results: numbers that look like a result but say the model learned nothing.

The original report of this study printed "perplexities" of 3,009,244 -> 1,743,680 (exp of a
summed loss, far above any vocabulary), an SST-2 classifier that answered "positive" to
everything (accuracy 0.551, recall 1.0) and SQuAD v2 with NoAns 0, BLEU 0 and METEOR 0.001,
and nobody noticed. ``result_flags`` reads a run's results and says, one line each:

- classify: predicts a single class; accuracy within 1 point (0.01) of the majority
  baseline; recall 1.0 or 0.0 (of the positive class);
- qa: never abstains although there are no-answer questions (NoAns_f1 = 0); always abstains
  (HasAns_f1 = 0 and NoAns_f1 = 100, or every prediction empty); best_f1 within 1 point of
  always answering "no answer"; answer-text metrics near 0 (BLEU/ROUGE/METEOR < 0.01 on
  their 0-1 scale, sacreBLEU < 1 on 0-100);
- pretrain: MLM perplexity that does not fall from the first evaluation to the last; a
  perplexity after training above twice the vocabulary size (worse than a uniform guess:
  a sign of exp of a summed or combined loss).

Flags are computed when results are read (never stored), so older runs get them too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Flag", "result_flags", "run_flags"]

POINT = 0.01  # one point on a 0-1 scale
NEAR_ZERO = 0.01  # answer-text metrics (0-1) below this are "near 0"
VOCAB_FACTOR = 2  # perplexity above this many times the vocabulary size is implausible


@dataclass(frozen=True)
class Flag:
    code: str  # stable identifier, e.g. "one_class"
    metric: str  # the results key it is about
    message: str  # one line for people

    def to_dict(self) -> dict:
        return asdict(self)


def _num(d: dict, key: str):
    v = d.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def classify_flags(final: dict) -> list[Flag]:
    out = []
    cm = final.get("confusion_matrix")
    if isinstance(cm, list) and cm and all(isinstance(r, list) for r in cm):
        predicted = [i for i, col in enumerate(zip(*cm)) if sum(col) > 0]
        classes = final.get("classes") or list(range(len(cm)))
        if len(predicted) == 1:
            out.append(
                Flag("one_class", "confusion_matrix", f"predicts only class {classes[predicted[0]]} for every example")
            )
    acc, base = _num(final, "accuracy"), _num(final, "majority_baseline")
    if acc is not None and base is not None and abs(acc - base) <= POINT:
        out.append(
            Flag(
                "at_majority_baseline",
                "accuracy",
                f"accuracy {acc:.3f} is within 1 point of the majority-class baseline {base:.3f}",
            )
        )
    rec = _num(final, "recall")
    if rec is not None and rec in (0.0, 1.0):
        what = (
            "every positive example is predicted positive: check it is not always answering positive"
            if rec == 1.0
            else "no positive example is predicted positive"
        )
        out.append(Flag(f"recall_{int(rec)}", "recall", f"recall {rec:.1f}: {what}"))
    return out


def qa_flags(final: dict) -> list[Flag]:
    out = []
    noans_total, noans_f1 = _num(final, "NoAns_total"), _num(final, "NoAns_f1")
    hasans_total, hasans_f1 = _num(final, "HasAns_total"), _num(final, "HasAns_f1")
    rate = _num(final, "no_answer_rate")
    if noans_total and noans_f1 == 0.0:
        out.append(
            Flag(
                "never_abstains",
                "NoAns_f1",
                f'NoAns_f1 0 on {int(noans_total)} no-answer questions: the model never answers "no answer"',
            )
        )
    if rate == 1.0 or (hasans_total and hasans_f1 == 0.0 and noans_total and noans_f1 == 100.0):
        out.append(Flag("always_abstains", "HasAns_f1", 'the model answers "no answer" to every question'))
    best, total = _num(final, "best_f1"), _num(final, "total")
    empty = _num(final, "empty_baseline_f1")
    if empty is None and noans_total is not None and total:
        empty = 100.0 * noans_total / total
    if best is not None and empty is not None and abs(best - empty) <= 100 * POINT:
        out.append(
            Flag(
                "at_empty_baseline",
                "best_f1",
                f'best_f1 {best:.1f} is within 1 point of always answering "no answer" ({empty:.1f})',
            )
        )
    for key in ("bleu", "rougeL", "meteor"):
        v = _num(final, key)
        if v is not None and v < NEAR_ZERO:
            out.append(
                Flag(
                    "text_metric_near_zero",
                    key,
                    f"{key} {v:.3g} (0-1) is near 0: answers share almost no words with the gold answers",
                )
            )
    v = _num(final, "sacrebleu")
    if v is not None and v < 100 * NEAR_ZERO:
        out.append(Flag("text_metric_near_zero", "sacrebleu", f"sacrebleu {v:.3g} (0-100) is near 0"))
    return out


def pretrain_flags(history: list[dict], vocab_size: int | None) -> list[Flag]:
    ppl = [
        (h.get("epoch"), float(h["mlm_perplexity"]))
        for h in history
        if isinstance(h, dict) and isinstance(h.get("mlm_perplexity"), (int, float))  # results.json as found
    ]
    out = []
    if len(ppl) >= 2 and ppl[-1][1] >= ppl[0][1]:
        out.append(
            Flag(
                "perplexity_not_falling",
                "mlm_perplexity",
                f"MLM perplexity does not fall: {ppl[0][1]:,.1f} (epoch {ppl[0][0]}) -> "
                f"{ppl[-1][1]:,.1f} (epoch {ppl[-1][0]})",
            )
        )
    if vocab_size:
        trained = [(e, p) for e, p in ppl if e != 0] or ppl[-1:]
        worst = max(trained, key=lambda x: x[1], default=None)
        if worst and worst[1] > VOCAB_FACTOR * vocab_size:
            out.append(
                Flag(
                    "perplexity_above_vocab",
                    "mlm_perplexity",
                    f"MLM perplexity {worst[1]:,.0f} (epoch {worst[0]}) is far above the vocabulary size "
                    f"{vocab_size:,} (a uniform guess scores {vocab_size:,}): exp of a summed or combined loss?",
                )
            )
    return out


def result_flags(task: str, results: dict, vocab_size: int | None = None) -> list[Flag]:
    """Flags for one run's ``results.json`` content (``final`` and ``history``)."""
    final = results.get("final")
    final = final if isinstance(final, dict) else {}
    history = results.get("history") if isinstance(results.get("history"), list) else []
    if task == "classify":
        return classify_flags(final)
    if task == "qa":
        return qa_flags(final)
    if task == "pretrain":
        return pretrain_flags(history or [final], vocab_size)
    return []


def _vocab_size(run, config: dict | None = None) -> int | None:
    model = run.final_model()
    for path in [model / "config.json"] if model else []:
        try:
            return int(json.loads(Path(path).read_text()).get("vocab_size"))
        except (OSError, ValueError, TypeError):
            pass
    v = (run.config() if config is None else config).get("vocab_size")
    return int(v) if isinstance(v, int) else None


def run_flags(run, results: dict | None = None, config: dict | None = None) -> list[Flag]:
    """Flags of a finished run on disk (none for a run without results).

    ``results``/``config``: the run's files as the caller read them already (a listing), else read here.
    """
    results = run.results() if results is None else results
    if not results:
        return []
    config = run.config() if config is None else config
    task = config.get("task", "")
    return result_flags(task, results, _vocab_size(run, config) if task == "pretrain" else None)
