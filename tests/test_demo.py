"""The shipped demo pipeline on the embedded data: learning is real.

Runs ``demo-pretrain``, ``demo-sst2`` and ``demo-squad`` exactly as the manifest
defines them (only the runs directory is redirected). Checked: MLM perplexity below
an add-one unigram model of the run's own training split and vocabulary, and MLM accuracy
above always guessing the most frequent token (both computed here, printed with ``-s``);
the model uses context: at most half the unigram perplexity, NSP clearly above its majority
rate; the classifier reaches accuracy >= 0.90 on the validation split, far
above the majority-class baseline, and is not a one-class model; the QA model
reaches HasAns_f1 >= 40 and beats always answering "no answer" by >= 10 F1 points;
the three experiments take under six minutes together.
"""

import dataclasses
import json
import time
from pathlib import Path

import pytest

from engine.job.runner import run_experiment
from engine.manifest import load

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    m = load(REPO / "experiments.toml")
    m = dataclasses.replace(
        m, settings=dataclasses.replace(m.settings, runs_dir=str(tmp_path_factory.mktemp("demo") / "runs"))
    )
    times, runs = {}, {}
    for name in ("demo-pretrain", "demo-sst2", "demo-squad"):
        t0 = time.perf_counter()
        runs[name] = run_experiment(m, name)
        times[name] = time.perf_counter() - t0
        assert runs[name].status()["status"] == "finished", runs[name].status()
    print("demo timings (s):", {k: round(v, 1) for k, v in times.items()})
    return runs, times


@pytest.fixture(scope="module")
def pretrain_vs_baselines(demo):
    """The demo's final MLM/NSP numbers and the baselines of its own data and vocabulary, printed."""
    from support.baselines import run_baselines

    runs, _ = demo
    table = runs["demo-pretrain"].read_table("epochs")
    final = {c: table.column(c)[-1] for c in ("mlm_perplexity", "mlm_accuracy", "nsp_accuracy")}
    b = run_baselines(runs["demo-pretrain"])
    print(
        f"demo-pretrain: MLM perplexity {final['mlm_perplexity']:.1f} (add-one unigram of the training split "
        f"{b.unigram_perplexity:.1f}), MLM accuracy {final['mlm_accuracy']:.3f} (most frequent token "
        f"{b.most_frequent_rate:.3f}), NSP accuracy {final['nsp_accuracy']:.3f} (majority label "
        f"{b.nsp_majority:.3f}); {b.masked_tokens} masked tokens, vocabulary {b.vocab_size}"
    )
    return final, b


def test_pretraining_beats_word_frequencies_within_five_minutes(demo, pretrain_vs_baselines):
    """Below the unigram model of its own training split, above always guessing the most frequent token."""
    _, times = demo
    final, b = pretrain_vs_baselines
    assert final["mlm_perplexity"] < b.unigram_perplexity, (final, b)
    assert final["mlm_accuracy"] > b.most_frequent_rate, (final, b)
    assert times["demo-pretrain"] < 300  # ~60-100 s on an idle 2-core machine; generous for noisy CI


def test_pretraining_uses_context(pretrain_vs_baselines):
    """At most half the unigram perplexity (far below what word frequencies alone give), and NSP
    clearly above its majority rate (a pair's label needs both segments read together)."""
    final, b = pretrain_vs_baselines
    assert final["mlm_perplexity"] <= 0.5 * b.unigram_perplexity, (final, b)
    assert final["nsp_accuracy"] >= b.nsp_majority + 0.05, (final, b)


def test_sst2_far_above_baseline(demo):
    runs, _ = demo
    final = runs["demo-sst2"].results()["final"]
    assert final["accuracy"] >= 0.90, final
    assert final["accuracy"] >= final["majority_baseline"] + 0.3, final
    assert final["eval_split"] == "validation", "hidden test labels: scored on validation"
    cm = final["confusion_matrix"]
    assert all(sum(col) > 0 for col in zip(*cm)), "predicts both classes, not a one-class model"


def test_squad_learns_answers_and_abstentions(demo):
    runs, _ = demo
    final = runs["demo-squad"].results()["final"]
    assert final["HasAns_f1"] >= 40, final
    assert final["best_f1"] >= final["empty_baseline_f1"] + 10, final
    assert final["NoAns_total"] > 0 and final["NoAns_f1"] > 0, "abstains on some questions"


def test_demo_pipeline_time(demo):
    _, times = demo
    # ~150 s on an idle 2-core machine; the demo is meant to stay under six minutes
    assert sum(times.values()) < 360, times


def test_sst2_scores_recomputed_from_saved_predictions(demo):
    """The saved per-example predictions give the reported metrics under scikit-learn."""
    import sklearn.metrics as metrics  # the test extra: a missing one fails, not skips

    runs, _ = demo
    run = runs["demo-sst2"]
    rows = [json.loads(line) for line in (run.path / "predictions.jsonl").read_text().splitlines()]
    y, p = [r["label"] for r in rows], [r["prediction"] for r in rows]
    assert len(rows) == 500 and set(y) == {0, 1}  # the labelled validation split, not the hidden test split
    final = run.results()["final"]
    assert final["accuracy"] == pytest.approx(metrics.accuracy_score(y, p))
    assert final["precision"] == pytest.approx(metrics.precision_score(y, p))
    assert final["recall"] == pytest.approx(metrics.recall_score(y, p))
    assert final["f1"] == pytest.approx(metrics.f1_score(y, p))
    assert final["macro_f1"] == pytest.approx(metrics.f1_score(y, p, average="macro"))
    assert final["confusion_matrix"] == metrics.confusion_matrix(y, p).tolist()


def test_squad_scores_recomputed_from_saved_predictions(demo):
    """The official evaluate-v2.0 algorithm (re-typed in test_metrics_squad) on the saved
    predictions, n-best lists and no-answer scores gives the reported squad_v2 numbers."""
    import datasets
    from support.squad_official import official_eval

    from engine.data.embedded import embedded_config, ensure_embedded

    runs, _ = demo
    run = runs["demo-squad"]
    preds = json.loads((run.path / "predictions.json").read_text())
    na = json.loads((run.path / "na_scores.json").read_text())
    nbest = json.loads((run.path / "nbest.json").read_text())
    # the best non-null span of each question, before the null threshold is applied
    raw = {q: next((c["text"] for c in cands if c["text"]), "") for q, cands in nbest.items()}
    thresh = 0.0  # the manifest's null_score_diff_threshold (the default)
    assert preds == {q: "" if na[q] > thresh else raw[q] for q in raw}
    ds = datasets.load_dataset(str(ensure_embedded("squad_v2")), embedded_config("squad_v2"), split="validation")
    dataset = [
        {
            "paragraphs": [
                {
                    "qas": [
                        {"id": q, "answers": [{"text": t} for t in a["text"]]} for q, a in zip(ds["id"], ds["answers"])
                    ]
                }
            ]
        }
    ]
    assert set(raw) == set(ds["id"])
    official = official_eval(dataset, raw, na, thresh)
    final = run.results()["final"]
    for key, value in official.items():
        assert final[key] == pytest.approx(value, abs=1e-9), key


def test_demo_raises_no_flag_and_verifies(demo):
    """The shipped demo's results are not degenerate, and every reported number recomputes."""
    from engine.metrics.flags import run_flags
    from engine.study.verify import verify_run

    runs, _ = demo
    for name, run in runs.items():
        assert run_flags(run) == [], (name, run_flags(run))
        checks = verify_run(run)
        assert checks and all(c.ok for c in checks), (name, [c.line() for c in checks if not c.ok])
