"""Fine-tuning: QA features and labels, hidden-label fallback, parameter diffs on load, saved predictions."""

import json

import pytest
from support.manifests import CLASSIFY, PRETRAIN, QA, experiment, manifest_text

from engine.job.runner import run_experiment
from engine.manifest import parse_text
from engine.metrics.squad_v2 import SQUAD_V2_KEYS


def pipeline_text(runs):
    """pretrain -> classify, qa -> inspect of the fine-tuned model."""
    after = experiment(name="after", task="inspect", model="run:cls", heads=["base", "classification", "qa"])
    return manifest_text(runs, experiment(PRETRAIN), experiment(CLASSIFY), experiment(QA), after)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ft")
    m = parse_text(pipeline_text(tmp / "runs"), tmp / "m.toml")
    runs = {name: run_experiment(m, name) for name in m.plan(["cls", "qa", "after"])}
    return m, runs


def test_all_finish(pipeline):
    _, runs = pipeline
    for name, run in runs.items():
        assert run.status()["status"] == "finished", (name, run.status())


def test_classifier_hidden_test_labels_fall_back_to_validation(pipeline):
    _, runs = pipeline
    res = runs["cls"].results()
    assert res["eval_split"] == "validation" and "hidden" in res["note"]
    final = res["final"]
    for key in ("accuracy", "precision", "recall", "f1", "macro_f1", "majority_baseline", "confusion_matrix"):
        assert key in final
    assert sum(map(sum, final["confusion_matrix"])) == 40
    rows = [json.loads(x) for x in (runs["cls"].path / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and {"text", "label", "prediction"} <= set(rows[0])
    assert all(r["label"] in (0, 1) for r in rows)


def test_load_diff_tables(pipeline):
    _, runs = pipeline
    start = {r[0]: r for r in runs["cls"].read_table("params_diff_start").rows}
    assert start["cls.predictions"][1] == "removed" and start["cls.seq_relationship"][1] == "removed"
    assert start["classifier"][1:] == ("added", 0, 64 * 2 + 2, 64 * 2 + 2)
    qa = {r[0]: r for r in runs["qa"].read_table("params_diff_base").rows}
    assert qa["pooler"][1] == "removed" and qa["pooler"][-1] == -(64 * 64 + 64)
    assert qa["qa_outputs"][-1] == 64 * 2 + 2


def test_qa_results_complete(pipeline):
    _, runs = pipeline
    final = runs["qa"].results()["final"]
    for key in SQUAD_V2_KEYS:
        assert key in final, key
    for key in ("bleu", "rouge1", "rouge2", "rougeL", "rougeLsum", "meteor", "variants", "empty_baseline_f1"):
        assert key in final, key
    # the variant named is the one this machine computes: with WordNet (its version named) or without synonyms
    from engine.metrics.text import meteor_variant, wordnet_reader

    assert final["variants"]["meteor"] == meteor_variant()
    assert ("WordNet" in final["variants"]["meteor"] and "without" not in final["variants"]["meteor"]) == (
        wordnet_reader() is not None
    )
    preds = json.loads((runs["qa"].path / "predictions.json").read_text())
    nbest = json.loads((runs["qa"].path / "nbest.json").read_text())
    assert len(preds) == 24 and set(preds) == set(nbest)
    table = runs["qa"].read_table("epochs")
    assert table.column("epoch") == [0, 1]


def test_inspect_after_finetuning(pipeline):
    _, runs = pipeline
    res = runs["after"].results()["parameters"]
    assert res["classification"] - res["base"] == 64 * 2 + 2
    assert res["qa"] - res["base"] == 64 * 2 + 2 - (64 * 64 + 64)


def test_qa_train_labels_with_stride():
    """An answer only in the second window: label CLS in the first, the right tokens in the second."""
    import datasets
    from transformers import AutoTokenizer

    # a deterministic word-level tokenizer (trained WordPiece on these words)
    from engine.models.presets import train_wordpiece
    from engine.tasks.qa import eval_features, train_features

    words = [f"w{i}" for i in range(60)]
    context = " ".join(words) + " the answer is Zebra Crossing ."
    tok = train_wordpiece(iter([[context] * 5, ["where is it ?"] * 5]), 200, "test-qa-stride")
    start = context.index("Zebra Crossing")
    ds = datasets.Dataset.from_dict(
        {
            "question": ["  where is it ?"],
            "context": [context],
            "answers": [{"text": ["Zebra Crossing"], "answer_start": [start]}],
            "id": ["q1"],
        }
    )
    tf = train_features(tok, ds, max_len=40, stride=10)
    assert len(tf["input_ids"]) >= 2
    assert tf["start"][0] == 0 and tf["end"][0] == 0  # not in the first window -> [CLS]
    feats, ids, _ = eval_features(tok, ds, max_len=40, stride=10)
    last = len(tf["input_ids"]) - 1
    s, e = tf["start"][last], tf["end"][last]
    offs = feats[last]["offset_mapping"]
    assert context[offs[s][0] : offs[e][1]].lower() == "zebra crossing"
    assert feats[0]["offset_mapping"][0] is None  # [CLS] is not context


def test_class_names_come_from_a_classlabel_column():
    import datasets

    from engine.tasks.classify import class_names

    feats = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"])}
    )
    ds = datasets.Dataset.from_dict({"sentence": ["bad", "good"], "label": [0, 1]}, features=feats)
    assert class_names(ds, "label", 2) == ["negative", "positive"]  # GLUE sst2's names
    plain = datasets.Dataset.from_dict({"sentence": ["bad"], "label": [0]})
    assert class_names(plain, "label", 2) is None and class_names(ds, "label", 3) is None


def test_predict_gives_each_rows_label_and_probability():
    """One host copy per batch: still each row's argmax and its softmax probability, in the rows' order."""
    from types import SimpleNamespace

    import torch

    from engine.tasks.classify import predict

    def model(input_ids, attention_mask):
        n = attention_mask.sum(-1).float()  # a row's length decides its logits
        return SimpleNamespace(logits=torch.stack([n, 5 - n], dim=-1))

    rows = [[1, 2, 3], [4], [5, 6, 7, 8], [9, 9]]
    preds, probs = predict(model, rows, pad=0, batch_size=3, device=torch.device("cpu"))
    assert preds == [0, 1, 0, 1]
    want = [torch.tensor([float(len(r)), 5.0 - len(r)]).softmax(-1).max().item() for r in rows]
    assert probs == want


def test_predict_copies_to_the_host_once_per_batch(monkeypatch):
    """On a GPU every copy to the host is a sync: evaluation makes one per batch, not one or two per row."""
    from types import SimpleNamespace

    import torch

    from engine.tasks.classify import predict

    copies = []
    for name in ("tolist", "item", "__int__", "__float__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, _name=name, **kw):
            copies.append(_name)
            return _original(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, counted)

    def model(input_ids, attention_mask):
        n = attention_mask.float().sum(-1)
        return SimpleNamespace(logits=torch.stack([n, 5 - n], dim=-1))

    rows = [[1, 2, 3], [4], [5, 6, 7, 8], [9, 9], [1], [2, 2, 2]]
    copies.clear()
    predict(model, rows, pad=0, batch_size=3, device=torch.device("cpu"))
    assert len(copies) <= 2, copies  # two batches of three rows
