"""Prepare (or reuse) an experiment's pretraining data the way the engine does, and time it.

    python bench/prepare_data.py --manifest M --experiment E [--export DIR] [--json OUT]

Runs the engine's own functions (``engine.tasks.common.task_inputs``,
``engine.tasks.pretrain.pretrain_tokenizer`` and ``prepare_split``) under
``$LMCONSOLE_CACHE``, so a second call with the same cache measures the cached path.
With ``--export`` it also writes what the HF Trainer baseline needs: ``tokenizer/``,
``train-pairs/`` (the cached NSP pairs: input_ids, token_type_ids, next_sentence_label)
and ``config.json`` (the model config the engine builds for the preset).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BenchCtx  # noqa: E402


def prepare(manifest_path: str, name: str, export: str | None = None) -> dict:
    t_import = time.perf_counter()
    from engine.manifest import load
    from engine.models.presets import PRESETS, preset_config
    from engine.tasks.common import task_inputs
    from engine.tasks.pretrain import TrainBatches, _eval_data, prepare_split, pretrain_tokenizer
    from engine.train.loop import setup_job

    manifest = load(manifest_path)
    ctx = BenchCtx(manifest, name)
    exp = ctx.exp
    setup_job(exp)
    import_s = time.perf_counter() - t_import

    t0 = time.perf_counter()
    inputs = task_inputs(ctx)
    tok = pretrain_tokenizer(ctx, inputs)
    t1 = time.perf_counter()
    train_ds = prepare_split(ctx, tok, exp.train_split, exp.seed, mask=False)
    t2 = time.perf_counter()
    eval_ds = prepare_split(ctx, tok, exp.eval_split, exp.seed, mask=True)
    t3 = time.perf_counter()
    # What run() does next with them: the training batches over the memory-mapped pairs (lengths and
    # NSP labels in memory, rows read per batch) and the evaluation split as lists.
    batches = TrainBatches(train_ds, tok, exp, vocab_size=len(tok), trim=True)
    _ = _eval_data(eval_ds)
    t4 = time.perf_counter()
    lengths = batches.lengths_list
    out = {
        "tokenizer_s": t1 - t0,
        "prepare_train_s": t2 - t1,
        "prepare_eval_s": t3 - t2,
        "prepare_split_s": t3 - t1,
        "to_lists_s": t4 - t3,
        "data_total_s": t4 - t0,
        "imports_s": import_s,
        "cache_hits": sum("reusing cached pairs" in m for m in ctx.logs),
        "train_pairs": len(lengths),
        "train_tokens": sum(lengths),
        "eval_pairs": len(eval_ds),
        "vocab": len(tok),
        "lengths": lengths,
    }
    if export:
        d = Path(export)
        d.mkdir(parents=True, exist_ok=True)
        tok.save_pretrained(str(d / "tokenizer"))
        train_ds.select_columns(["input_ids", "token_type_ids", "next_sentence_label"]).save_to_disk(
            str(d / "train-pairs")
        )
        if inputs.kind != "preset" or inputs.path not in PRESETS:
            raise SystemExit("the benchmark builds models from presets only")
        config = preset_config(inputs.path, vocab_size=len(tok))
        if len(tok) > config.vocab_size:
            config.vocab_size = len(tok)
        config.to_json_file(str(d / "config.json"))
        out["export"] = str(d)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--export")
    p.add_argument("--json")
    a = p.parse_args(argv)
    res = prepare(a.manifest, a.experiment, a.export)
    text = json.dumps(res)
    if a.json:
        Path(a.json).write_text(text)
    else:
        print(json.dumps({k: v for k, v in res.items() if k != "lengths"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
