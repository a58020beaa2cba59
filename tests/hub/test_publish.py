"""Push to the Hub without the network: an HfApi stand-in, the model card, the dry-run folder."""

import json
import os

import pytest
import yaml
from support.manifests import CLASSIFY, PRETRAIN, experiment, manifest_text

from engine.hub.publish import PushError, model_card, push
from engine.job.runner import run_experiment
from engine.manifest import parse_text


def pipeline_text(runs):
    return manifest_text(
        runs,
        experiment(PRETRAIN, max_train_samples=48, logging_steps=1),
        experiment(CLASSIFY, max_train_samples=64, max_eval_samples=32, logging_steps=1),
    )


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("push")
    m = parse_text(pipeline_text(tmp / "runs"), tmp / "m.toml")
    run_experiment(m, "pre")
    return run_experiment(m, "cls")


class FakeApi:
    def __init__(self, fail_status=None):
        self.calls = []
        self.fail_status = fail_status

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))
        if self.fail_status:

            class Resp:
                status_code = self.fail_status

            err = OSError("http error")
            err.response = Resp()
            raise err

    def create_branch(self, repo_id, **kw):
        self.calls.append(("create_branch", repo_id, kw))

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw["repo_id"], {k: v for k, v in kw.items() if k != "folder_path"}))
        self.staged = sorted(os.listdir(kw["folder_path"]))
        self.card = open(os.path.join(kw["folder_path"], "README.md")).read()
        return type("Info", (), {"oid": "abc123"})()


def test_push_calls_and_staged_files(cls_run):
    api = FakeApi()
    before = sorted(p.relative_to(cls_run.path) for p in cls_run.path.rglob("*"))
    res = push(cls_run, "alice/demo-sst2", private=True, revision="exp1", api=api)
    names = [c[0] for c in api.calls]
    assert names == ["create_repo", "create_branch", "upload_folder"]
    assert (
        api.calls[0][1] == "alice/demo-sst2"
        and api.calls[0][2]["private"] is True
        and api.calls[0][2]["exist_ok"] is True
    )
    assert api.calls[1][2]["branch"] == "exp1"
    up = api.calls[2][2]
    assert up["revision"] == "exp1" and up["commit_message"].startswith("Upload cls/")
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= set(api.staged)
    assert res["commit"] == "abc123"
    assert sorted(p.relative_to(cls_run.path) for p in cls_run.path.rglob("*")) == before, "run untouched"


@pytest.mark.parametrize("status, words", [(401, "rejected (401)"), (403, "no write access")])
def test_push_http_errors_are_one_line(cls_run, status, words):
    with pytest.raises(PushError) as info:
        push(cls_run, "alice/x", api=FakeApi(fail_status=status))
    assert words in str(info.value) and "\n" not in str(info.value)


def test_push_without_token_or_hub(cls_run, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("engine.hub.publish.hf_token", lambda: None)
    with pytest.raises(PushError, match="no Hugging Face token"):
        push(cls_run, "alice/x")
    monkeypatch.setattr("engine.hub.publish.hf_token", lambda: "hf_fake")
    with pytest.raises(PushError, match="unreachable"):
        push(cls_run, "alice/x")  # HF_HUB_OFFLINE=1 in tests: fails fast, no hang
    with pytest.raises(PushError, match="OWNER/NAME"):
        push(cls_run, "no-owner", api=FakeApi())


def test_model_card_sections_and_front_matter(cls_run):
    card = model_card(cls_run, "alice/demo-sst2")
    _, front, body = card.split("---", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "transformers" and meta["license"] and meta["pipeline_tag"] == "text-classification"
    # embedded data is no Hub dataset: no model-index, never an "embedded:" dataset type
    assert "model-index" not in meta and "datasets" not in meta and "embedded:" not in front
    assert "offline stand-in" in body and "## Flags on degenerate results" in body
    for section in (
        "## Base model",
        "## Task",
        "## Data and splits",
        "## Hyperparameters",
        "## Parameters",
        "## Metrics per epoch",
        "## Final metrics",
        "## Throughput",
    ):
        assert section in body, section
    assert "hidden" in body  # validation stands in for the hidden test labels
    assert "classifier" in body and "tokens/s" in body


def test_model_card_eval_results_name_the_real_dataset(cls_run, tmp_path):
    """With a Hub dataset the card's model-index comes from huggingface_hub's EvalResult."""
    import shutil

    from huggingface_hub import ModelCard

    from engine.store.runs import Run

    copy = tmp_path / "runs" / cls_run.experiment / cls_run.run_id
    shutil.copytree(cls_run.path, copy, ignore=shutil.ignore_patterns("model", "checkpoints"))
    cfg = json.loads((copy / "config.json").read_text())
    cfg.update(dataset="nyu-mll/glue", dataset_config="sst2")
    (copy / "config.json").write_text(json.dumps(cfg))
    card = ModelCard(model_card(Run(copy), "alice/demo-sst2"))
    assert card.data.datasets == ["nyu-mll/glue"]
    results = {r.metric_type: r for r in card.data.eval_results}
    assert set(results) >= {"accuracy", "precision", "recall", "f1"}
    acc = results["accuracy"]
    assert (acc.dataset_type, acc.dataset_config, acc.dataset_split) == ("nyu-mll/glue", "sst2", "validation")
    assert acc.metric_value == cls_run.results()["final"]["accuracy"] and acc.metric_name == "accuracy (0-1)"


def test_dry_run_folder_reloads_with_same_predictions(cls_run, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    res = push(cls_run, "alice/demo", dry_run=True, out=tmp_path / "dry")
    assert "README.md" in res["files"]
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "dry"))
    a = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "dry")).eval()
    b = AutoModelForSequenceClassification.from_pretrained(str(cls_run.final_model())).eval()
    x = tok(["a gripping , funny film .", "dull and lifeless ."], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.equal(a(**x).logits, b(**x).logits)
    saved = [json.loads(l) for l in (cls_run.path / "predictions.jsonl").read_text().splitlines()]
    enc = tok([r["text"] for r in saved], return_tensors="pt", padding=True)
    with torch.no_grad():
        preds = a(**enc).logits.argmax(-1).tolist()
    assert preds == [r["prediction"] for r in saved]
