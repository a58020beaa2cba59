"""Classification metrics: hand-worked values, edge cases, and sklearn when it is installed."""

import random

import pytest

from engine.metrics.classification import classification_metrics, labels_hidden

LABELS = [1, 0, 1, 1, 0, 0, 1, 0]
PREDS = [1, 0, 0, 1, 1, 0, 1, 1]


def test_binary_by_hand():
    # tp = 3 (0, 3, 6), fp = 2 (4, 7), fn = 1 (2), tn = 2 (1, 5)
    r = classification_metrics(LABELS, PREDS)
    assert r["accuracy"] == pytest.approx(5 / 8)
    assert r["precision"] == pytest.approx(3 / 5)
    assert r["recall"] == pytest.approx(3 / 4)
    assert r["f1"] == pytest.approx(2 / 3)
    # class 0: tp 2, fp 1, fn 2 -> F1 4/7
    assert r["macro_f1"] == pytest.approx((2 / 3 + 4 / 7) / 2)
    assert r["confusion_matrix"] == [[2, 2], [1, 3]]  # rows: true 0, 1; cols: predicted 0, 1
    assert r["classes"] == [0, 1]
    assert r["n"] == 8
    # 4 / 4 tie: the smaller class id is the majority
    assert (r["majority_class"], r["majority_baseline"]) == (0, 0.5)


def test_majority_from_training_labels():
    r = classification_metrics(LABELS, PREDS, baseline_labels=[1, 1, 0])
    assert (r["majority_class"], r["majority_baseline"]) == (1, 0.5)
    r = classification_metrics([0, 0, 0, 1], [1, 1, 1, 1], baseline_labels=[1, 1, 1, 0])
    assert (r["majority_class"], r["majority_baseline"]) == (1, 0.25)


def test_zero_division_gives_zero():
    r = classification_metrics([1, 0, 1], [0, 0, 0])  # nothing predicted positive
    assert (r["precision"], r["recall"], r["f1"]) == (0.0, 0.0, 0.0)
    r = classification_metrics([0, 0], [0, 0])  # positive class absent altogether
    assert (r["precision"], r["recall"], r["f1"]) == (0.0, 0.0, 0.0)
    assert r["macro_f1"] == 1.0 and r["confusion_matrix"] == [[2]]
    r = classification_metrics([0, 0], [0, 0], num_labels=2)
    assert r["confusion_matrix"] == [[2, 0], [0, 0]] and r["classes"] == [0, 1]


def test_multiclass_positive_is_one_vs_rest():
    r = classification_metrics([0, 1, 2, 2], [0, 2, 2, 1], positive=2, num_labels=4)
    assert (r["precision"], r["recall"], r["f1"]) == (0.5, 0.5, 0.5)
    assert r["confusion_matrix"] == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    assert r["macro_f1"] == pytest.approx((1 + 0 + 0.5) / 3)  # classes seen: 0, 1, 2
    with pytest.raises(ValueError, match="num_labels"):
        classification_metrics([0, 3], [0, 0], num_labels=2)


def test_hidden_labels():
    assert labels_hidden([-1, -1, -1])
    assert not labels_hidden([0, -1])
    assert not labels_hidden([])
    with pytest.raises(ValueError, match="hidden"):
        classification_metrics([-1, -1], [0, 1])
    with pytest.raises(ValueError):
        classification_metrics([0, 1], [0])
    with pytest.raises(ValueError):
        classification_metrics([], [])


def test_accepts_numpy_and_is_json_ready():
    import json

    import numpy as np
    r = classification_metrics(np.array(LABELS), np.array(PREDS, dtype=np.int64))
    assert r == classification_metrics(LABELS, PREDS)
    json.dumps(r)


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn(seed):
    import sklearn.metrics as metrics  # the test extra: a missing one fails, not skips
    rng = random.Random(seed)
    y = [rng.randint(0, 1) for _ in range(200)]
    p = [rng.randint(0, 1) for _ in range(200)]
    r = classification_metrics(y, p)
    assert r["accuracy"] == pytest.approx(metrics.accuracy_score(y, p))
    assert r["precision"] == pytest.approx(metrics.precision_score(y, p, zero_division=0))
    assert r["recall"] == pytest.approx(metrics.recall_score(y, p, zero_division=0))
    assert r["f1"] == pytest.approx(metrics.f1_score(y, p, zero_division=0))
    assert r["macro_f1"] == pytest.approx(metrics.f1_score(y, p, average="macro", zero_division=0))
    assert r["confusion_matrix"] == metrics.confusion_matrix(y, p).tolist()
