"""Fine-tuning from checkpoints this project did not produce.

A tiny BERT is built and saved with plain ``transformers`` (``BertForPreTraining`` +
a ``BertTokenizerFast`` with a hand-made ``vocab.txt``, the layout of
``bert-base-uncased`` on the Hub), then fine-tuned from a local path and, through a
mirror folder, by its Hub id, with the Hub unreachable.
"""

import re

import pytest
from support.manifests import CLASSIFY, QA, experiment, manifest_text

from engine.job.runner import run_experiment
from engine.manifest import parse_text
from support.vocab import wordpiece_vocab

HIDDEN = 32


def manifest_for(runs, mirror, local):
    """Classify from the local folder ``local``; qa from the Hub id acme/bert-foreign, found in ``mirror``."""
    return manifest_text(
        runs,
        experiment(
            CLASSIFY, name="cls-local", model=local, eval_split="validation", max_train_samples=64, max_eval_samples=32
        ),
        experiment(QA, name="qa-hub-id", model="acme/bert-foreign", max_train_samples=48, max_eval_samples=16),
        data_mirror=mirror,
    )




@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertForPreTraining, BertTokenizerFast

    tmp = tmp_path_factory.mktemp("foreign")
    vocab = tmp / "vocab.txt"
    vocab.write_text("\n".join(wordpiece_vocab()) + "\n")
    tok = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    model = BertForPreTraining(config)
    local = tmp / "bert-foreign"
    hub_copy = tmp / "mirror" / "acme" / "bert-foreign"
    for folder in (local, hub_copy):
        model.save_pretrained(str(folder))
        tok.save_pretrained(str(folder))
    text = manifest_for(tmp / "runs", tmp / "mirror", local)
    m = parse_text(text, tmp / "experiments.toml")
    return {name: run_experiment(m, name) for name in ("cls-local", "qa-hub-id")}


def test_classify_from_a_plain_transformers_folder(foreign):
    run = foreign["cls-local"]
    assert run.status()["status"] == "finished", run.status()
    final = run.results()["final"]
    assert final["n"] == 32 and final["eval_split"] == "validation"
    diff = {r[0]: r for r in run.read_table("params_diff_start").rows}
    assert diff["cls.predictions"][1] == "removed" and diff["cls.seq_relationship"][1] == "removed"
    assert diff["classifier"][1:] == ("added", 0, HIDDEN * 2 + 2, HIDDEN * 2 + 2)


def test_qa_from_a_hub_id_found_in_the_mirror(foreign):
    run = foreign["qa-hub-id"]
    assert run.status()["status"] == "finished", run.status()
    final = run.results()["final"]
    assert final["total"] == 16 and "best_f1" in final and "HasAns_f1" in final
    diff = {r[0]: r for r in run.read_table("params_diff_base").rows}
    assert diff["pooler"][1] == "removed" and diff["pooler"][-1] == -(HIDDEN * HIDDEN + HIDDEN)
    assert diff["qa_outputs"][-1] == HIDDEN * 2 + 2
