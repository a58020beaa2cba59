"""CPU micro-benchmarks of single levers, each A/B interleaved in one process.

    python bench/levers_cpu.py --manifest M --experiment E --data DIR [--reps 5] [--which optimizer,collate,bf16,compile] --json OUT

- ``optimizer``: one AdamW step over the model's parameters, ``foreach=True`` (the engine's
  CPU setting in ``train_loop.make_optimizer``) vs ``fused=True`` (the HF Trainer default).
- ``collate``: building one training batch: the engine's ``TrainBatches.get`` (a gather
  from a padded int32 matrix), the previous list-of-lists path (``pad_batch`` per batch,
  as before this change), and HF ``DataCollatorForLanguageModeling`` on the same rows.
- ``bf16``: a full engine training step (forward, backward, clip, AdamW) under CPU bf16
  autocast vs fp32 (opt-in lever: ``train_loop.autocast_dtype`` returns None on CPU today).
- ``compile``: ``torch.compile(model.bert, dynamic=True)`` vs eager: first-step (compile)
  time and steady-state ms/step (the slowest; run on the tiny model only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BenchCtx  # noqa: E402


def _setup(manifest_path, name, data_dir):
    import datasets
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForPreTraining

    from engine.manifest import load
    from engine.tasks.pretrain import TrainBatches

    ctx = BenchCtx(load(manifest_path), name)
    d = Path(data_dir)
    tok = AutoTokenizer.from_pretrained(str(d / "tokenizer"))
    train = datasets.load_from_disk(str(d / "train-pairs"))
    config = BertConfig.from_json_file(str(d / "config.json"))
    torch.manual_seed(0)
    model = BertForPreTraining(config).train()
    batches = TrainBatches(train, tok, ctx.exp, vocab_size=min(len(tok), config.vocab_size), trim=True)
    return ctx.exp, tok, train, config, model, batches


def _interleave(fns: dict, reps: int) -> dict:
    out = {k: [] for k in fns}
    names = list(fns)
    for r in range(reps):
        for k in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            fns[k]()
            out[k].append((time.perf_counter() - t0) * 1e3)
    return out


def bench_optimizer(model, reps):
    import torch

    params = [p for p in model.parameters()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opts = {
        "foreach (engine today)": torch.optim.AdamW(params, lr=1e-4, foreach=True),
        "fused (proposed; HF Trainer default)": torch.optim.AdamW(params, lr=1e-4, fused=True),
    }
    for o in opts.values():
        o.step()  # allocate state
    return _interleave({k: o.step for k, o in opts.items()}, reps)


def bench_collate(exp, tok, train, batches, reps):
    import random

    import torch
    from transformers import DataCollatorForLanguageModeling

    from engine.data.nsp import mask_tokens
    from engine.tasks.common import pad_batch
    from engine.tasks.pretrain import _special_mask, max_predictions

    ids, types, nsp = list(train["input_ids"]), list(train["token_type_ids"]), list(train["next_sentence_label"])
    rows = [train[i] for i in range(len(train))]
    collator = DataCollatorForLanguageModeling(tokenizer=tok, mlm=True, mlm_probability=0.15)
    idx = batches.batches(0)[0]
    rnd = random.Random(0).sample(range(len(rows)), len(idx))

    def old_path():
        x = pad_batch([ids[j] for j in idx], tok.pad_token_id)
        special = _special_mask(x, tok)
        g = torch.Generator().manual_seed(1)
        masked, labels = mask_tokens(
            x, special, tok.mask_token_id, len(tok), exp.mlm_probability, max_predictions(exp), g
        )
        return {
            "input_ids": masked,
            "labels": labels,
            "token_type_ids": pad_batch([types[j] for j in idx], 0),
            "attention_mask": (x != tok.pad_token_id).long(),
            "next_sentence_label": torch.tensor([nsp[j] for j in idx]),
        }

    fns = {
        "engine TrainBatches.get": lambda: batches.get(0, 0),
        "previous list path (pad_batch)": old_path,
        "HF DataCollatorForLanguageModeling": lambda: collator([rows[j] for j in rnd]),
    }
    for f in fns.values():
        f()
    return _interleave(fns, reps * 10)


def bench_bf16(exp, model, batches, reps):
    import torch

    from engine.tasks.pretrain import mlm_nsp_forward
    from engine.train.loop import make_optimizer

    opt = make_optimizer(model, exp, torch.device("cpu"))
    state = {"i": 0}

    def step(bf16: bool):
        b = batches.get(0, state["i"] % batches.n_batches(0))
        state["i"] += 1
        b.pop("n_tokens"), b.pop("n_samples")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = mlm_nsp_forward(model, b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(False), step(True)
    # Each side sees the same batches: the batch index advances once per pair.
    out = {"fp32 (engine on CPU today)": [], "bf16 autocast (opt-in proposal)": []}
    for r in range(reps):
        i0 = state["i"]
        for k in list(out) if r % 2 == 0 else list(out)[::-1]:
            state["i"] = i0
            t0 = time.perf_counter()
            step(k.startswith("bf16"))
            out[k].append((time.perf_counter() - t0) * 1e3)
        state["i"] = i0 + 1
    return out


def bench_compile(exp, model, batches, reps):
    import copy

    import torch

    from engine.tasks.pretrain import mlm_nsp_forward

    models = {"eager": model, "torch.compile(model.bert, dynamic=True)": copy.deepcopy(model)}
    compiled = models["torch.compile(model.bert, dynamic=True)"]
    compiled.bert = torch.compile(compiled.bert, dynamic=True)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4, foreach=True) for k, m in models.items()}
    first = {}

    def step(k, i):
        b = batches.get(0, i % batches.n_batches(0))
        b.pop("n_tokens"), b.pop("n_samples")
        loss, _ = mlm_nsp_forward(models[k], b)
        loss.backward()
        opts[k].step()
        opts[k].zero_grad(set_to_none=True)

    for k in models:
        t0 = time.perf_counter()
        for i in range(3):  # compiles for the first shapes (dynamic afterwards)
            step(k, i)
        first[k] = time.perf_counter() - t0
    out = {k: [] for k in models}
    for r in range(reps * 3):
        for k in list(models) if r % 2 == 0 else list(models)[::-1]:
            t0 = time.perf_counter()
            step(k, 3 + r)
            out[k].append((time.perf_counter() - t0) * 1e3)
    return out, first


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--which", default="optimizer,collate,bf16")
    p.add_argument("--json", required=True)
    a = p.parse_args(argv)
    import torch

    exp, tok, train, config, model, batches = _setup(a.manifest, a.experiment, a.data)
    res: dict = {"threads": torch.get_num_threads(), "params": sum(p.numel() for p in model.parameters())}
    which = a.which.split(",")
    if "collate" in which:
        res["collate_ms"] = bench_collate(exp, tok, train, batches, a.reps)
    if "optimizer" in which:
        res["optimizer_ms"] = bench_optimizer(model, a.reps)
        for prm in model.parameters():
            prm.grad = None
    if "bf16" in which:
        res["step_ms_bf16"] = bench_bf16(exp, model, batches, a.reps)
    if "compile" in which:
        res["step_ms_compile"], res["compile_first3_s"] = bench_compile(exp, model, batches, a.reps)
    summary = {
        k: {n: statistics.median(v) for n, v in d.items()}
        for k, d in res.items()
        if k.endswith("_ms") or k.startswith("step_ms")
    }
    print(json.dumps(summary, indent=1))
    Path(a.json).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
