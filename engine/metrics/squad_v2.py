"""SQuAD v2.0 scoring with the semantics of the official ``evaluate-v2.0.py``.

Why not ``evaluate.load("squad_v2")``: the module script lives on the Hub, so it cannot be
loaded offline. This module re-implements the official script (which evaluate's module
copies) on plain dictionaries instead of the SQuAD JSON layout:

- ``predictions``: question id -> predicted answer text ("" = no answer);
- ``references``: question id -> list of gold answer texts ([] = unanswerable);
- ``na_probs``: question id -> a no-answer score (higher = the model prefers "no answer").

What is kept exactly as in the official script, because published numbers depend on it:

- normalisation (lowercase, drop punctuation, drop the articles a/an/the, collapse
  whitespace), exact match, bag-of-tokens F1, max over gold answers, gold answers that are
  empty after normalisation are dropped and ``[""]`` is used when none remain;
- a prediction whose ``na_prob > na_prob_thresh`` counts as "no answer";
- ``find_best_thresh``: start from the number of unanswerable questions, walk the questions
  by ascending ``na_prob`` (a stable sort, so ties keep the order of ``na_probs``), add the
  raw score (answerable) or -1 / 0 (unanswerable with a non-empty / empty prediction), keep
  the best prefix. ``best_*`` is searched on the RAW predictions: to get a meaningful search,
  score the un-thresholded best answers (see ``engine.metrics.qa_postprocess``).

Where the official script is silent or crashes, this module decides (documented, tested):

- a question is answerable when its reference list holds at least one non-empty string
  (official: a non-empty ``answers`` list; identical on SQuAD data, which never stores an
  empty answer text);
- ``HasAns_*`` / ``NoAns_*`` are always present; an empty group reports total 0 and
  exact / f1 0.0 (the official script omits the keys);
- no references at all: every score is 0.0 and total 0 (the official script divides by 0);
- a missing prediction or na_prob for a referenced question raises ``ValueError`` (the
  official script skips the prediction, then crashes on the group averages); predictions
  for ids that are not referenced are ignored.

With ties in ``na_probs`` (e.g. 0.0 everywhere, as HF ``run_qa.py`` passes) the best
threshold depends on input order and the reported ``best_*`` may not be reachable by any
threshold: that is the official behaviour, kept on purpose; pass a real per-question score.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Mapping, Sequence

__all__ = [
    "normalize_answer",
    "get_tokens",
    "compute_exact",
    "compute_f1",
    "squad_v2_score",
    "SQUAD_V2_KEYS",
]

#: Result keys, in the order the official script prints them.
SQUAD_V2_KEYS = (
    "exact",
    "f1",
    "total",
    "HasAns_exact",
    "HasAns_f1",
    "HasAns_total",
    "NoAns_exact",
    "NoAns_f1",
    "NoAns_total",
    "best_exact",
    "best_exact_thresh",
    "best_f1",
    "best_f1_thresh",
)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lowercase, drop ASCII punctuation, drop articles, collapse whitespace (official order)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def get_tokens(s: str) -> list[str]:
    if not s:
        return []
    return normalize_answer(s).split()


def compute_exact(a_gold: str, a_pred: str) -> int:
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def _f1_tokens(gold_toks: list[str], pred_toks: list[str]) -> float:
    if not gold_toks or not pred_toks:
        # Either side is "no answer": 1 when both are, 0 otherwise (official rule).
        return float(gold_toks == pred_toks)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_toks)
    recall = num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def compute_f1(a_gold: str, a_pred: str) -> float:
    """Bag-of-tokens F1 between two answer strings after normalisation."""
    return _f1_tokens(get_tokens(a_gold), get_tokens(a_pred))


def _raw_scores(
    qids: Sequence[str], predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-question exact and F1 of the raw predictions, max over gold answers."""
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    for qid in qids:
        golds = [normalize_answer(a) for a in references[qid]]
        golds = [g for g in golds if g] or [""]
        pred = normalize_answer(predictions[qid])
        pred_toks = pred.split()
        exact[qid] = float(max(int(g == pred) for g in golds))
        f1[qid] = max(_f1_tokens(g.split(), pred_toks) for g in golds)
    return exact, f1


def _mean(scores: Mapping[str, float], qids: Sequence[str]) -> float:
    return 100.0 * sum(scores[q] for q in qids) / len(qids) if qids else 0.0


def _find_best_thresh(
    qids: Sequence[str],
    predictions: Mapping[str, str],
    scores: Mapping[str, float],
    na_probs: Mapping[str, float],
    has_ans: Mapping[str, bool],
) -> tuple[float, float]:
    """The official ``find_best_thresh``: best prefix of questions sorted by na_prob."""
    if not qids:
        return 0.0, 0.0
    cur: float = sum(1 for q in qids if not has_ans[q])
    best = cur
    best_thresh = 0.0
    # Sort the ids in na_probs order (stable), as the official script sorts the na_probs dict.
    scored = set(qids)
    for qid in sorted((q for q in na_probs if q in scored), key=lambda q: na_probs[q]):
        if has_ans[qid]:
            cur += scores[qid]
        elif predictions[qid]:
            cur -= 1
        if cur > best:
            best = cur
            best_thresh = na_probs[qid]
    return 100.0 * best / len(qids), float(best_thresh)


def squad_v2_score(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    na_probs: Mapping[str, float],
    na_prob_thresh: float = 1.0,
) -> dict[str, float | int]:
    """Score SQuAD v2 predictions; returns the keys in ``SQUAD_V2_KEYS`` (scores 0-100).

    ``references`` defines the question set (its order is the official dataset order).
    ``na_prob_thresh`` defaults to 1.0 like the official script (which is meant for
    probabilities); with a score such as null-minus-best-span use the threshold that was used
    to decide the predictions (0.0 by default).
    """
    qids = list(references)
    missing = [q for q in qids if q not in predictions]
    if missing:
        raise ValueError(f"{len(missing)} questions have no prediction, e.g. {missing[:3]}")
    missing = [q for q in qids if q not in na_probs]
    if missing:
        raise ValueError(f"{len(missing)} questions have no na_prob, e.g. {missing[:3]}")

    has_ans = {q: any(a for a in references[q]) for q in qids}
    exact_raw, f1_raw = _raw_scores(qids, predictions, references)

    # Thresholded scores: a question predicted "no answer" scores 1 iff it has no answer.
    exact_th: dict[str, float] = {}
    f1_th: dict[str, float] = {}
    for q in qids:
        if na_probs[q] > na_prob_thresh:
            exact_th[q] = f1_th[q] = float(not has_ans[q])
        else:
            exact_th[q], f1_th[q] = exact_raw[q], f1_raw[q]

    has_qids = [q for q in qids if has_ans[q]]
    no_qids = [q for q in qids if not has_ans[q]]
    best_exact, best_exact_thresh = _find_best_thresh(qids, predictions, exact_raw, na_probs, has_ans)
    best_f1, best_f1_thresh = _find_best_thresh(qids, predictions, f1_raw, na_probs, has_ans)
    return {
        "exact": _mean(exact_th, qids),
        "f1": _mean(f1_th, qids),
        "total": len(qids),
        "HasAns_exact": _mean(exact_th, has_qids),
        "HasAns_f1": _mean(f1_th, has_qids),
        "HasAns_total": len(has_qids),
        "NoAns_exact": _mean(exact_th, no_qids),
        "NoAns_f1": _mean(f1_th, no_qids),
        "NoAns_total": len(no_qids),
        "best_exact": best_exact,
        "best_exact_thresh": best_exact_thresh,
        "best_f1": best_f1,
        "best_f1_thresh": best_f1_thresh,
    }
