"""The demo's pretraining data through the engine's cache: the same pairs and masks as before
the preparation was streamed (so the demo's numbers in the README still hold), for any ``num_proc``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import types
from pathlib import Path

from engine.manifest import load
from engine.models.presets import cache_root
from engine.tasks.common import data_inputs
from engine.tasks.pretrain import TrainBatches, prepare_split, pretrain_tokenizer

# SHA-256 of the demo's train pairs (input_ids, token_type_ids, next_sentence_label) and masked
# test pairs (the same plus masked_input_ids, mlm_labels) as JSON lists, from the one-process,
# in-memory preparation this replaced, for the demo's settings (max_seq_length 64; computed with
# that code at commit c757f05, 2026-12-08): 2,524 train pairs, 261 test pairs.
DEMO_PAIRS_SHA256 = "4b7518394fde5c5cc911c19fd91960a282da6399797c22e3250dea24ef7e08b5"


def test_demo_pairs_unchanged_and_independent_of_num_proc():
    manifest = load(Path(__file__).resolve().parents[2] / "experiments.toml")
    base = manifest.get("demo-pretrain")
    messages: list[str] = []
    for num_proc in (2, 1):
        shutil.rmtree(cache_root() / "pretrain-data", ignore_errors=True)  # pairs built, not reused
        exp = dataclasses.replace(base, num_proc=num_proc)
        ctx = types.SimpleNamespace(
            exp=exp, manifest=manifest, log=lambda m, level="info": messages.append(m), emit=lambda e: None
        )
        inputs = data_inputs(ctx)
        tok = pretrain_tokenizer(ctx, inputs)
        train = prepare_split(ctx, tok, exp.train_split, exp.seed, mask=False, inputs=inputs)
        test = prepare_split(ctx, tok, exp.eval_split, exp.seed, mask=True, inputs=inputs)
        h = hashlib.sha256()
        for ds, cols in (
            (train, ["input_ids", "token_type_ids", "next_sentence_label"]),
            (test, ["input_ids", "token_type_ids", "next_sentence_label", "masked_input_ids", "mlm_labels"]),
        ):
            for c in cols:
                h.update(json.dumps(list(ds[c])).encode())
        assert (len(train), len(test)) == (2524, 261)
        assert h.hexdigest() == DEMO_PAIRS_SHA256, num_proc
    assert sum("NSP pairs built" in m for m in messages) == 4, messages

    # Training batches read their rows from the Arrow file: a batch holds exactly its pairs, padded.
    batches = TrainBatches(train, tok, exp, vocab_size=len(tok), trim=True)
    batch = batches.get(0, 0)
    rows = batches.batches(0)[0]
    for k, r in enumerate(rows):
        ids = train[r]["input_ids"]
        real = batch["attention_mask"][k].bool()
        assert batch["token_type_ids"][k][real].tolist() == train[r]["token_type_ids"]
        assert int(real.sum()) == len(ids)
        kept = batch["labels"][k] == -100
        assert batch["input_ids"][k][real & kept].tolist() == [t for t, keep in zip(ids, kept[real]) if keep]
    assert batch["next_sentence_label"].tolist() == [train[r]["next_sentence_label"] for r in rows]
