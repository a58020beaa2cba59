"""Classification metrics for sequence classification (SST-2 and friends), without sklearn.

``classification_metrics`` returns accuracy, binary precision / recall / F1 for the
``positive`` class (one-vs-rest when there are more than two classes), macro F1, the
confusion matrix, and the majority-class baseline, so a result is always read next to what
"always predict the most frequent class" would score.

Conventions (sklearn's, so its documentation applies): a ratio with a zero denominator is
0.0 (``zero_division=0``); macro F1 averages over the classes present in labels or
predictions; the confusion matrix has one row per TRUE class and one column per PREDICTED
class, both in the order given by ``classes`` in the result.

GLUE test splits hide their labels as -1: ``labels_hidden`` detects that, and
``classification_metrics`` refuses negative labels instead of reporting a meaningless score.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

__all__ = ["class_labels", "classification_metrics", "labels_hidden"]


def labels_hidden(labels: Sequence[int]) -> bool:
    """True when there are labels and all of them are negative (GLUE test splits use -1)."""
    labels = [int(x) for x in labels]
    return bool(labels) and all(x < 0 for x in labels)


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def _f1(tp: int, fp: int, fn: int) -> float:
    # 2tp / (2tp + fp + fn) equals 2PR/(P+R) and is 0.0 when nothing is predicted or present.
    return _ratio(2 * tp, 2 * tp + fp + fn)


def classification_metrics(
    labels: Sequence[int],
    preds: Sequence[int],
    positive: int = 1,
    baseline_labels: Sequence[int] | None = None,
    num_labels: int | None = None,
) -> dict:
    """Score integer predictions against integer labels.

    ``baseline_labels``: labels the majority class is taken from (normally the training
    split); defaults to ``labels``. Ties go to the smallest class id.
    ``num_labels``: fixes the classes to ``0..num_labels-1`` (a full confusion matrix even
    when a class never occurs); by default the classes are those seen in labels or predictions.
    """
    labels = [int(x) for x in labels]
    preds = [int(x) for x in preds]
    if len(labels) != len(preds):
        raise ValueError(f"{len(labels)} labels but {len(preds)} predictions")
    if not labels:
        raise ValueError("no labels to score")
    if any(x < 0 for x in labels):
        raise ValueError(
            "labels contain negative values (hidden test labels, as in GLUE test splits): "
            "score on a split with labels, e.g. validation"
        )
    baseline = labels if baseline_labels is None else [int(x) for x in baseline_labels]
    if not baseline:
        raise ValueError("baseline_labels is empty")

    seen = set(labels) | set(preds)
    if num_labels is not None:
        outside = sorted(c for c in seen if not 0 <= c < num_labels)
        if outside:
            raise ValueError(f"classes {outside} outside 0..{num_labels - 1} (num_labels={num_labels})")
        classes = list(range(num_labels))
    else:
        classes = sorted(seen)
    index = {c: i for i, c in enumerate(classes)}
    matrix = [[0] * len(classes) for _ in classes]
    for y, p in zip(labels, preds):
        matrix[index[y]][index[p]] += 1

    n = len(labels)
    correct = sum(y == p for y, p in zip(labels, preds))

    def counts(c: int) -> tuple[int, int, int]:
        tp = sum(1 for y, p in zip(labels, preds) if y == c and p == c)
        fp = sum(1 for y, p in zip(labels, preds) if y != c and p == c)
        fn = sum(1 for y, p in zip(labels, preds) if y == c and p != c)
        return tp, fp, fn

    tp, fp, fn = counts(positive)
    macro = [_f1(*counts(c)) for c in sorted(seen)]

    freq = Counter(baseline)
    majority = min(freq, key=lambda c: (-freq[c], c))
    return {
        "accuracy": correct / n,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _f1(tp, fp, fn),
        "macro_f1": sum(macro) / len(macro),
        "confusion_matrix": matrix,
        "classes": classes,
        "majority_class": majority,
        "majority_baseline": sum(y == majority for y in labels) / n,
        "n": n,
    }


def class_labels(classes, names=None, config: dict | None = None) -> list[str]:
    """How the console and the report name classes: ``0 negative``, ``1 positive`` (the id, then
    its name: the results' ``class_names``, or SST-2's when the config names that dataset), else
    ``class 0``. One function, so the console and the report never disagree."""
    classes = list(classes)
    known: dict = {}
    if isinstance(names, (list, tuple)) and len(names) == len(classes):
        known = dict(zip(classes, names))
    elif config and (config.get("dataset_config") == "sst2" or "sst2" in str(config.get("dataset", ""))):
        known = {0: "negative", 1: "positive"}
    return [f"{c} {known[c]}" if c in known else f"class {c}" for c in classes]
