"""Training starts from the named weights: every way of naming a model, checked tensor by tensor.

The parameter diff tables are computed from configs, so they cannot tell a model that
loaded its weights from one that was silently re-initialised. Here each fine-tuning job
runs one step at ``learning_rate = 0`` (AdamW then moves no weight, weight decay
included), so the saved model's encoder must equal the source's bit for bit:

- ``run:<experiment>``: the parent pretraining run's final model;
- a local folder written by plain ``transformers``;
- a Hub id found in the data mirror;
- ``init = "scratch"`` on the same folder: the config only, so the tensors must differ.

(A preset is a config with random weights: ``init = "pretrained"`` on a preset is refused
by the manifest, ``tests/manifest``.) A continued pretraining from ``run:pre`` evaluates
before its first step on the same masked split as its parent: the two numbers are equal.

``scripts/mutate_loads.py`` re-randomises every ``from_pretrained`` load; these tests
must fail under it.
"""

from __future__ import annotations

import pytest
from support.manifests import CLASSIFY, PRETRAIN, QA, experiment, manifest_text
from support.vocab import wordpiece_vocab

from engine.job.runner import run_experiment
from engine.manifest import parse_text

HIDDEN = 32
FROZEN = {"learning_rate": 0.0, "max_steps": 1, "epochs": 1}


def _tensors(folder) -> dict:
    """The ``bert.*`` tensors of a saved model (the encoder every head shares)."""
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    return {k: v for k, v in state.items() if k.startswith("bert.")}


def _foreign_model(tmp):
    """A tiny BertForPreTraining and its tokenizer saved by plain transformers: a folder and a mirror copy."""
    import torch
    from transformers import BertConfig, BertForPreTraining, BertTokenizerFast

    vocab = tmp / "vocab.txt"
    vocab.write_text("\n".join(wordpiece_vocab()) + "\n")
    tok = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    torch.manual_seed(123)  # a seed none of the jobs uses: a job's own initialisation cannot match by chance
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    model = BertForPreTraining(config)
    local, hub_copy = tmp / "bert-foreign", tmp / "mirror" / "acme" / "bert-foreign"
    for folder in (local, hub_copy):
        model.save_pretrained(str(folder))
        tok.save_pretrained(str(folder))
    return local


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("start")
    local = _foreign_model(tmp)
    small = {"max_train_samples": 32, "max_eval_samples": 16}
    text = manifest_text(
        tmp / "runs",
        experiment(PRETRAIN, max_steps=3, learning_rate=1e-3, seed=5),
        experiment(PRETRAIN, name="pre-more", model="run:pre", tokenizer="auto", max_steps=1, seed=5),
        experiment(CLASSIFY, name="cls-run", **small, **FROZEN),
        experiment(CLASSIFY, name="cls-folder", model=local, **small, **FROZEN),
        experiment(CLASSIFY, name="cls-scratch", model=local, init="scratch", **small, **FROZEN),
        experiment(QA, name="qa-hub-id", model="acme/bert-foreign", **small, **FROZEN),
        data_mirror=tmp / "mirror",
    )
    m = parse_text(text, tmp / "experiments.toml")
    out = {
        name: run_experiment(m, name)
        for name in m.plan(["pre-more", "cls-run", "cls-folder", "cls-scratch", "qa-hub-id"])
    }
    for name, run in out.items():
        assert run.status()["status"] == "finished", (name, run.status())
    return out, local


def _assert_same(got: dict, source: dict, what: str) -> None:
    shared = set(got) & set(source)
    # the whole encoder and embeddings must be there (QA drops only the pooler)
    assert {k for k in source if ".pooler." not in k} <= shared, what
    differing = [k for k in sorted(shared) if not (got[k].shape == source[k].shape and got[k].equal(source[k]))]
    assert not differing, (
        f"{what}: {len(differing)} of {len(shared)} tensors differ from the source, e.g. {differing[:3]}"
    )


def test_run_reference_starts_from_the_parent_runs_final_model(runs):
    out, _ = runs
    _assert_same(_tensors(out["cls-run"].final_model()), _tensors(out["pre"].final_model()), "run:pre")


def test_local_folder_starts_from_its_weights(runs):
    out, local = runs
    _assert_same(_tensors(out["cls-folder"].final_model()), _tensors(local), "local folder")


def test_hub_id_in_the_mirror_starts_from_its_weights(runs):
    out, local = runs
    _assert_same(_tensors(out["qa-hub-id"].final_model()), _tensors(local), "Hub id in the mirror")


def test_init_scratch_discards_the_weights(runs):
    out, local = runs
    got, source = _tensors(out["cls-scratch"].final_model()), _tensors(local)
    encoder = [k for k in source if ".encoder." in k and k.endswith("weight") and "LayerNorm" not in k]
    assert encoder and all(got[k].shape == source[k].shape for k in encoder)
    assert not any(got[k].equal(source[k]) for k in encoder), "init = scratch kept a loaded weight"


def test_continued_pretraining_starts_where_its_parent_ended(runs):
    out, _ = runs
    parent = out["pre"].read_table("epochs")
    child = out["pre-more"].read_table("epochs")
    assert child.column("epoch")[0] == 0  # epoch 0 = evaluated before any step
    for col in ("mlm_perplexity", "mlm_accuracy", "nsp_accuracy"):
        assert child.column(col)[0] == pytest.approx(parent.column(col)[-1], rel=1e-5), col
    # and not by coincidence: a model that had not learned would score differently
    assert parent.column("mlm_perplexity")[0] != pytest.approx(parent.column("mlm_perplexity")[-1], rel=1e-3)
