"""Trying a run's model (predict) and browsing its evaluation mistakes (examples) on a tiny trained pipeline.

The predictions of ``predict`` must equal what evaluation saved for the same rows, and the
examples of a confusion-matrix cell must be as many as the matrix says.
"""

import json
import math

import pytest
from support.manifests import CLASSIFY, PRETRAIN, QA, experiment, manifest_text, write_manifest

from engine.cli.main import main
from engine.errors import UserError
from engine.study.examples import (
    ANSWERED_UNANSWERABLE,
    CORRECT,
    MISSED_ANSWER,
    QA_KINDS,
    example_epochs,
    load_examples,
)
from engine.study.predict import load_predictor


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """pretrain -> classify, qa on bert-micro: (manifest path, runs by experiment)."""
    from engine.job.runner import run_experiment
    from engine.manifest import load

    tmp = tmp_path_factory.mktemp("look")
    path = write_manifest(tmp, manifest_text(tmp / "runs", experiment(PRETRAIN), experiment(CLASSIFY), experiment(QA)))
    manifest = load(path)
    runs = {name: run_experiment(manifest, name) for name in ("pre", "cls", "qa")}
    for name, run in runs.items():
        assert run.status()["status"] == "finished", (name, run.status())
    return path, runs


def saved_rows(run):
    return [json.loads(line) for line in (run.path / "predictions.jsonl").read_text().splitlines()]


def eval_questions(run):
    """The QA run's evaluation rows as the job loaded them."""
    from engine.hub.resolve import load_dataset_split

    cfg = run.config()
    ds = load_dataset_split(cfg["dataset"], cfg["dataset_config"], cfg["eval_split"], "")
    return ds.select(range(cfg["max_eval_samples"]))


def test_classify_predictions_equal_the_saved_evaluation(trained):
    _, runs = trained
    saved = saved_rows(runs["cls"])
    predictor = load_predictor(runs["cls"], "cpu")
    batch = predictor.predict([{"text": r["text"]} for r in saved])
    one_by_one = [predictor.predict([{"text": r["text"]}])[0] for r in saved[:8]]
    for got, want in zip(batch + one_by_one, saved + saved[:8]):
        assert got["prediction"] == want["prediction"]
        assert got["confidence"] == pytest.approx(want["confidence"], abs=1e-6)  # saved rounded to 6 digits
        assert sum(got["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert got["probabilities"][got["label"]] == got["confidence"]


def test_qa_predictions_equal_the_saved_evaluation(trained):
    _, runs = trained
    run = runs["qa"]
    ds = eval_questions(run)
    saved = json.loads((run.path / "predictions.json").read_text())
    na = json.loads((run.path / "na_scores.json").read_text())
    predictor = load_predictor(run, "cpu")
    rows = [{"id": i, "question": q, "context": c} for i, q, c in zip(ds["id"], ds["question"], ds["context"])]
    got = predictor.predict(rows)
    assert [g["id"] for g in got] == list(ds["id"])
    for g in got:
        assert g["answer"] == saved[g["id"]]
        assert g["na_score"] == pytest.approx(na[g["id"]], rel=1e-6, abs=1e-9)
        assert g["no_answer"] == (g["na_score"] > g["threshold"]) == (g["answer"] == "")
        if g["null_score"] is not None and g["span_score"] is not None:
            assert g["null_score"] - g["span_score"] == pytest.approx(g["na_score"], abs=1e-9)
    # the run's threshold decides: with a very high one every question gets its best span
    predictor.cfg = {**predictor.cfg, "null_score_diff_threshold": 1e9}
    assert all(g["answer"] == g["span"] for g in predictor.predict(rows[:6]))


def test_fill_mask_lists_top_k_tokens_per_mask(trained):
    _, runs = trained
    predictor = load_predictor(runs["pre"], "cpu")
    out = predictor.predict([{"text": "the [MASK] was released in [MASK] ."}], top_k=4)[0]
    assert len(out["masks"]) == 2
    for m in out["masks"]:
        probs = [t["probability"] for t in m["top"]]
        assert len(probs) == 4 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    with pytest.raises(UserError, match=r"no \[MASK\]"):
        predictor.predict([{"text": "nothing to fill"}])


def test_predict_refuses_what_it_cannot_do(trained):
    _, runs = trained
    with pytest.raises(UserError, match="needs question and context"):
        load_predictor(runs["qa"], "cpu").predict([{"question": "who?"}])
    with pytest.raises(UserError, match="too long"):  # the tokenizer would panic on it
        load_predictor(runs["qa"], "cpu").predict([{"question": "who " * 80, "context": "Petra sings."}])
    with pytest.raises(UserError, match="not a torch device|no saved model|device"):
        load_predictor(runs["cls"], "nonsense-device")


def test_each_confusion_cell_lists_as_many_examples_as_the_matrix_counts(trained):
    _, runs = trained
    ex = load_examples(runs["cls"])
    matrix = runs["cls"].results()["final"]["confusion_matrix"]
    assert ex.counts() == matrix
    for g, row in enumerate(matrix):
        for p, n in enumerate(row):
            cell = ex.select(cell=(g, p))
            assert len(cell) == n and all((r.gold, r.prediction) == (g, p) for r in cell)
    wrong = ex.select(wrong_only=True)
    assert len(wrong) == sum(n for g, row in enumerate(matrix) for p, n in enumerate(row) if g != p)
    assert [r.confidence for r in wrong] == sorted((r.confidence for r in wrong), reverse=True)
    assert ex.counts_table().column("count") == [n for row in matrix for n in row]


def test_qa_groups_agree_with_the_saved_scores(trained):
    _, runs = trained
    ex = load_examples(runs["qa"])
    final = runs["qa"].results()["final"]
    counts = ex.counts()
    assert list(counts) == list(QA_KINDS) and sum(counts.values()) == final["total"] == len(ex.rows)
    assert counts[CORRECT] == round(final["exact"] * final["total"] / 100)  # exact match, 0-100
    saved = json.loads((runs["qa"].path / "predictions.json").read_text())
    answerable = {r.id for r in ex.rows if r.gold}
    assert counts[MISSED_ANSWER] == sum(1 for q in answerable if saved[q] == "")
    assert counts[ANSWERED_UNANSWERABLE] == sum(1 for q, a in saved.items() if q not in answerable and a)
    for kind in QA_KINDS[1:]:
        assert len(ex.select(kind=kind)) == counts[kind]
    shown = next(r for r in ex.rows if r.gold).marked_context()
    assert "[[" in shown and "]]" in shown


def eval_metrics(run) -> dict:
    """epoch -> the metrics of the EvalFinished event the run recorded for it."""
    events = [json.loads(line) for line in (run.path / "events.jsonl").read_text().splitlines()]
    return {e["epoch"]: e["metrics"] for e in events if e.get("event") == "EvalFinished"}


def test_every_evaluation_keeps_its_predictions_and_each_epoch_reads_back(trained):
    """Each epoch's saved rows agree with that epoch's own reported metrics; the last equals the final files."""
    _, runs = trained
    for name in ("cls", "qa", "pre"):
        assert example_epochs(runs[name]) == sorted(eval_metrics(runs[name])) == [0, 1], name
    for epoch, metrics in eval_metrics(runs["cls"]).items():
        assert load_examples(runs["cls"], epoch=epoch).counts() == metrics["confusion_matrix"]
    assert load_examples(runs["cls"], epoch=1).rows == load_examples(runs["cls"]).rows
    for epoch, metrics in eval_metrics(runs["qa"]).items():
        counts = load_examples(runs["qa"], epoch=epoch).counts()
        assert counts[CORRECT] == round(metrics["exact"] * metrics["total"] / 100)
    final_qa, last_qa = load_examples(runs["qa"]).rows, load_examples(runs["qa"], epoch=1).rows
    assert [(r.prediction, r.kind) for r in last_qa] == [(r.prediction, r.kind) for r in final_qa]
    assert [r.na_score for r in last_qa] == pytest.approx([r.na_score for r in final_qa], abs=1e-6)  # 6 digits
    assert [r.confidence for r in last_qa] == pytest.approx([r.confidence for r in final_qa], abs=1e-6)
    with pytest.raises(UserError, match="no saved predictions of epoch 7: it kept epochs 0, 1"):
        load_examples(runs["cls"], epoch=7)


def test_examples_of_a_pretraining_run_are_masked_positions(trained):
    _, runs = trained
    ex = load_examples(runs["pre"])  # the last evaluation's
    assert ex.epoch == 1 and ex.rows
    first = ex.rows[0]
    assert len(first.top) == 5 and [p for _, p in first.top] == sorted((p for _, p in first.top), reverse=True)
    assert all(r.gold_probability <= r.confidence + 1e-9 for r in ex.rows)
    assert sum(ex.counts().values()) == len(ex.rows)
    assert ex.counts()["top-1"] == sum(not r.wrong for r in ex.rows)


def test_cli_predict_file_writes_jsonl_equal_to_the_evaluation(trained, tmp_path, capsys):
    path, runs = trained
    saved = saved_rows(runs["cls"])
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in saved))
    out = tmp_path / "out.jsonl"
    assert main(["-m", str(path), "predict", "cls", "--file", str(src), "--out", str(out), "--device", "cpu"]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["prediction"] for g in got] == [r["prediction"] for r in saved]
    assert main(["-m", str(path), "predict", "cls", "a wonderful, moving film", "--json"]) == 0
    one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(one["probabilities"]) == {"0", "1"} and math.isclose(sum(one["probabilities"].values()), 1.0, abs_tol=1e-6)
    assert main(["-m", str(path), "predict", "qa", "who?"]) == 2
    assert "--context" in capsys.readouterr().err
    assert main(["-m", str(path), "predict", "qa", "Who sings?", "--context", "The singer is Petra."]) == 0
    assert "A: " in capsys.readouterr().out


def test_cli_examples_exports_rows_and_counts(trained, tmp_path, capsys):
    path, runs = trained
    matrix = runs["cls"].results()["final"]["confusion_matrix"]
    out = tmp_path / "ex"
    assert main(["-m", str(path), "examples", "cls", "--cell", "0,1", "--out", str(out)]) == 0
    rows = json.loads((out / "examples.json").read_text())["rows"]
    assert len(rows) == matrix[0][1]
    assert (out / "examples.csv").read_text().splitlines()[0] == "index,text,gold,prediction,confidence,correct"
    assert (out / "example_counts.csv").exists()
    assert main(["-m", str(path), "examples", "qa", "--kind", "no-answer", "--limit", "0"]) == 0
    text = capsys.readouterr().out
    assert f"{MISSED_ANSWER}: " in text
    assert main(["-m", str(path), "examples", "cls", "--cell", "0,7"]) == 2
    assert "not a class" in capsys.readouterr().err
    assert main(["-m", str(path), "examples", "cls", "--epoch", "0", "--limit", "1"]) == 0
    assert "evaluation before training: 40 evaluation rows" in capsys.readouterr().out
    assert main(["-m", str(path), "examples", "pre", "--wrong", "--limit", "1"]) == 0
    text = capsys.readouterr().out
    assert "evaluation after epoch 1:" in text and "[MASK]" in text and "WRONG" in text


def test_report_has_an_error_analysis_per_fine_tuned_run(trained):
    from engine.store.runs import RunStore
    from engine.study.report import build_report

    _, runs = trained
    report = build_report(RunStore(runs["cls"].path.parent.parent), ["pre", "cls", "qa"])
    sections = {s.title: s for s in report.sections}
    assert "Error analysis: pre" not in sections  # pretraining saves no per-example predictions
    cls = sections["Error analysis: cls"]
    matrix = runs["cls"].results()["final"]["confusion_matrix"]
    kinds, top = cls.tables
    assert sorted(kinds.column("count")) == sorted(matrix[0][1:] + matrix[1][:1])
    wrong = load_examples(runs["cls"]).select(wrong_only=True)
    assert top.column("index") == [r.index for r in wrong[:5]]
    assert top.column("confidence") == sorted(top.column("confidence"), reverse=True)
    qa_kinds, qa_top = sections["Error analysis: qa"].tables
    counts = load_examples(runs["qa"]).counts()
    assert dict(qa_kinds.rows) == {k: counts[k] for k in QA_KINDS[1:]}
    assert len(qa_top.rows) == min(5, sum(counts[k] for k in QA_KINDS[1:]))
