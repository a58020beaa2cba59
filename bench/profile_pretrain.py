"""Where the time of one pretraining step goes: engine step vs the HF baseline's step, phase by phase.

    python bench/profile_pretrain.py --manifest M --experiment E --data DIR [--steps 10] [--ops]

Both sides in one process, interleaved step by step (engine step, baseline
step, engine step...), on the same model config and batch size:

- engine: ``TrainBatches.get`` (gather + masking), ``mlm_nsp_forward`` (vocabulary
  logits at masked positions only), backward, gradient clipping, AdamW
  (``train_loop.make_optimizer``: foreach on CPU);
- baseline: ``DataCollatorForLanguageModeling`` on a random batch (what the
  Trainer's random sampler gives), ``BertForPreTraining(..., labels=...)`` (logits
  at every position), backward, clipping, fused AdamW (the Trainer's default).

Prints median milliseconds per phase; ``--ops`` adds torch.profiler's top
operators of a few engine and baseline steps.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import exported_engine_side  # noqa: E402


def build(manifest_path: str, name: str, data_dir: str):
    import torch
    from transformers import BertForPreTraining, DataCollatorForLanguageModeling

    from engine.tasks.pretrain import TrainBatches, mlm_nsp_forward

    exp, tok, train, config, e_model, e_opt = exported_engine_side(manifest_path, name, data_dir)
    batches = TrainBatches(train, tok, exp, vocab_size=min(len(tok), config.vocab_size), trim=True)

    torch.manual_seed(exp.seed)
    b_model = BertForPreTraining(config).train()
    b_opt = torch.optim.AdamW(b_model.parameters(), lr=exp.learning_rate, fused=True)
    collator = DataCollatorForLanguageModeling(tokenizer=tok, mlm=True, mlm_probability=0.15)
    rows = [train[i] for i in range(len(train))]
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)

    def engine_step(i: int, t: dict):
        t0 = time.perf_counter()
        batch = batches.get(0, i % batches.n_batches(0))
        batch.pop("n_tokens"), batch.pop("n_samples")
        t1 = time.perf_counter()
        loss, _ = mlm_nsp_forward(e_model, batch)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(e_model.parameters(), exp.max_grad_norm)
        t4 = time.perf_counter()
        e_opt.step()
        e_opt.zero_grad(set_to_none=True)
        t5 = time.perf_counter()
        for k, v in (
            ("batch", t1 - t0),
            ("forward", t2 - t1),
            ("backward", t3 - t2),
            ("clip", t4 - t3),
            ("optimizer", t5 - t4),
        ):
            t.setdefault(k, []).append(v * 1e3)
        t.setdefault("tokens", []).append(int(batch["attention_mask"].sum()))
        t.setdefault("width", []).append(batch["input_ids"].shape[1])

    def baseline_step(i: int, t: dict):
        bs = exp.batch_size
        start = (i * bs) % max(1, len(rows) - bs)
        feats = [rows[j] for j in order[start : start + bs]]
        t0 = time.perf_counter()
        batch = collator(feats)
        t1 = time.perf_counter()
        out = b_model(**batch)
        t2 = time.perf_counter()
        out.loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(b_model.parameters(), 1.0)
        t4 = time.perf_counter()
        b_opt.step()
        b_opt.zero_grad(set_to_none=True)
        t5 = time.perf_counter()
        for k, v in (
            ("batch", t1 - t0),
            ("forward", t2 - t1),
            ("backward", t3 - t2),
            ("clip", t4 - t3),
            ("optimizer", t5 - t4),
        ):
            t.setdefault(k, []).append(v * 1e3)
        t.setdefault("tokens", []).append(int(batch["attention_mask"].sum()))
        t.setdefault("width", []).append(batch["input_ids"].shape[1])

    return engine_step, baseline_step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup-steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--ops", action="store_true", help="also print torch.profiler's top operators")
    p.add_argument("--json")
    a = p.parse_args(argv)
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    engine_step, baseline_step = build(a.manifest, a.experiment, a.data)
    times = {"engine": {}, "baseline": {}}
    for i in range(a.warmup_steps):
        engine_step(i, {})
        baseline_step(i, {})
    for i in range(a.steps):
        engine_step(i, times["engine"])
        baseline_step(i, times["baseline"])
    phases = ("batch", "forward", "backward", "clip", "optimizer")
    result = {}
    print(f"{'phase (median ms/step)':24s} {'engine':>10s} {'baseline':>10s}")
    for side in ("engine", "baseline"):
        t = times[side]
        total = [sum(t[k][i] for k in phases) for i in range(a.steps)]
        result[side] = {k: statistics.median(t[k]) for k in phases}
        result[side]["total"] = statistics.median(total)
        result[side]["tokens_per_step"] = statistics.median(t["tokens"])
        result[side]["width"] = statistics.median(t["width"])
        result[side]["tokens_per_s"] = sum(t["tokens"]) / (sum(total) / 1e3)
    for k in (*phases, "total", "tokens_per_step", "width", "tokens_per_s"):
        print(f"{k:24s} {result['engine'][k]:10.1f} {result['baseline'][k]:10.1f}")
    if a.ops:
        from torch.profiler import ProfilerActivity, profile

        for side, fn in (("engine", engine_step), ("baseline", baseline_step)):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for i in range(3):
                    fn(i, {})
            print(f"\n== {side}: top operators over 3 steps (self CPU time)")
            avg = prof.key_averages()
            print(avg.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40))
            total = sum(e.self_cpu_time_total for e in avg) or 1
            top = sorted(avg, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
            result[side]["top_ops"] = [(e.key, e.self_cpu_time_total / total) for e in top]
    if a.json:
        Path(a.json).write_text(json.dumps({"threads": torch.get_num_threads(), **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
