"""Degenerate-result flags fire on the numbers of this study's original report and stay quiet on the demo's.

The original report (``test_original_*``; see engine/metrics/flags.py) printed MLM "perplexities"
in the millions, an SST-2 classifier answering "positive" to everything and a SQuAD v2 model that
never abstains; the demo's figures are those README "Demo results" gives.
"""

from engine.metrics.flags import result_flags
from engine.metrics.scale import metric_label, metric_scale, same_axis


def codes(task, results, vocab=None):
    return {f.code for f in result_flags(task, results, vocab)}


def test_original_perplexities_flagged():
    # "perplexities" 3,009,244 -> 1,743,680 with bert-base-uncased's 30,522-token vocabulary
    hist = [{"epoch": 1, "mlm_perplexity": 3_009_244.0}, {"epoch": 5, "mlm_perplexity": 1_743_680.0}]
    assert "perplexity_above_vocab" in codes("pretrain", {"history": hist, "final": hist[-1]}, 30522)


def test_perplexity_that_does_not_fall_flagged():
    hist = [{"epoch": 0, "mlm_perplexity": 900.0}, {"epoch": 1, "mlm_perplexity": 950.0}]
    assert codes("pretrain", {"history": hist}, 4000) == {"perplexity_not_falling"}


def test_original_sst2_always_positive_flagged():
    # accuracy 0.551, recall 1.0: "positive" to everything (validation 444 positive / 428 negative
    # would read 0.509; the original's own counts are unknown, so the recall alone must fire)
    assert "recall_1" in codes(
        "classify", {"final": {"accuracy": 0.551, "precision": 0.551, "recall": 1.0, "f1": 0.71}}
    )
    always_pos = {
        "accuracy": 444 / 872,
        "recall": 1.0,
        "majority_baseline": 444 / 872,
        "confusion_matrix": [[0, 428], [0, 444]],
        "classes": [0, 1],
    }
    assert codes("classify", {"final": always_pos}) == {"one_class", "at_majority_baseline", "recall_1"}
    assert "recall_0" in codes("classify", {"final": {"recall": 0.0}})


def test_original_squad_flagged():
    final = {
        "exact": 40.1,
        "f1": 43.0,
        "total": 11873,
        "HasAns_f1": 86.0,
        "HasAns_total": 5928,
        "NoAns_f1": 0.0,
        "NoAns_exact": 0.0,
        "NoAns_total": 5945,
        "best_f1": 50.5,
        "bleu": 0.0,
        "meteor": 0.001,
        "rougeL": 0.3,
    }
    c = codes("qa", {"final": final})
    assert {"never_abstains", "at_empty_baseline", "text_metric_near_zero"} <= c
    metrics = {f.metric for f in result_flags("qa", {"final": final}) if f.code == "text_metric_near_zero"}
    assert metrics == {"bleu", "meteor"}
    abstain = {"HasAns_f1": 0.0, "HasAns_total": 10, "NoAns_f1": 100.0, "NoAns_total": 10, "total": 20, "best_f1": 50.0}
    assert "always_abstains" in codes("qa", {"final": abstain})


def test_quiet_on_demo_numbers():
    """README "Demo results": the low ends of the ranges it gives."""
    pre = [{"epoch": 0, "mlm_perplexity": 3420.0}, {"epoch": 8, "mlm_perplexity": 350.0}]
    assert codes("pretrain", {"history": pre, "final": pre[-1]}, 4000) == set()
    sst2 = {
        "accuracy": 0.956,
        "precision": 0.95,
        "recall": 0.965,
        "f1": 0.958,
        "majority_baseline": 0.528,
        "confusion_matrix": [[225, 11], [9, 255]],
        "classes": [0, 1],
    }
    assert codes("classify", {"final": sst2}) == set()
    squad = {
        "exact": 66.0,
        "f1": 68.0,
        "total": 300,
        "HasAns_f1": 70.3,
        "HasAns_total": 192,
        "NoAns_f1": 61.8,
        "NoAns_total": 108,
        "best_f1": 68.9,
        "empty_baseline_f1": 36.0,
        "rougeL": 0.71,
        "meteor": 0.50,
        "bleu": 0.13,
        "sacrebleu": 13.0,
    }
    assert codes("qa", {"final": squad}) == set()


def test_metric_scales():
    assert metric_scale("f1", "qa").unit == "0-100" and metric_scale("f1", "classify").unit == "0-1"
    assert metric_scale("HasAns_f1").unit == "0-100" and metric_scale("best_f1_thresh").unit == "score"
    assert metric_scale("bleu").unit == "0-1" and metric_scale("sacrebleu").unit == "0-100"
    assert metric_scale("final.accuracy").unit == "0-1" and metric_scale("accuracy_mean").unit == "0-1"
    assert metric_label("NoAns_f1") == "NoAns_f1 (0-100)"
    assert not same_axis(["f1", "meteor"], "qa") and same_axis(["rougeL", "meteor"])
