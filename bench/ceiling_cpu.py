"""How far the engine can beat the tuned Trainer at all: step time split into shared and skippable work.

    python bench/ceiling_cpu.py --size base [--steps 6] [--json OUT]     # prepares bert-base's data itself
    python bench/ceiling_cpu.py --manifest M --experiment E --data DIR [--steps 6] [--json OUT]

Both sides get the SAME rows each step (the engine's length-bucketed batch; the peer collates those rows
with ``DataCollatorForLanguageModeling``, padded to their longest, i.e. the engine's width), so padding
is equal and only the work differs:

- engine: ``mlm_nsp_forward`` (vocabulary logits at masked positions only), fused AdamW, clipping;
- peer: ``BertForPreTraining(..., labels=...)`` (the MLM head on every position), fused AdamW, clipping.

Each step, interleaved: the engine's full step, the peer's, then the encoder alone on those rows
(``model.bert`` forward + backward of its outputs: the work both sides must do); then one more of each
under torch.profiler (operator shares). From those (medians of the per-step figures):

- shared = the encoder's forward + backward, and its matmuls (aten::mm/addmm/bmm) within it;
- head = step forward + backward minus the encoder's (the MLM head, NSP, losses): the peer's on all
  positions, the engine's on masked ones; skippable = peer head - engine head;
- other = clipping + optimizer (and the rest of the step).

Ceilings: with equal padding, an engine doing everything the peer does except the skippable work is
``T_peer / (T_peer - skippable)`` faster; the absolute bound (nothing but the encoder) is
``T_peer / T_encoder``. ``--pad-peer``/``--pad-engine`` (padding fractions of a harness run) scale the
peer's step for its extra padding.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import exported_engine_side  # noqa: E402

MATMUL = ("aten::mm", "aten::addmm", "aten::bmm")


def build(manifest_path: str, name: str, data_dir: str):
    import torch
    from transformers import BertForPreTraining, DataCollatorForLanguageModeling

    from engine.tasks.pretrain import TrainBatches, mlm_nsp_forward

    exp, tok, train, config, e_model, e_opt = exported_engine_side(manifest_path, name, data_dir)
    torch.manual_seed(exp.seed)
    p_model = BertForPreTraining(config).train()
    p_opt = torch.optim.AdamW(p_model.parameters(), lr=exp.learning_rate, fused=True)
    batches = TrainBatches(train, tok, exp, vocab_size=min(len(tok), config.vocab_size), trim=True)
    collator = DataCollatorForLanguageModeling(tokenizer=tok, mlm=True, mlm_probability=0.15)
    rows = [train[i] for i in range(len(train))]
    order = batches.batches(0)

    def engine_batch(i):
        b = batches.get(0, i % len(order))
        b.pop("n_tokens"), b.pop("n_samples")
        return b

    def peer_batch(i):
        return dict(collator([rows[j] for j in order[i % len(order)]]))

    def step(side, b, t):
        model, opt = (e_model, e_opt) if side == "engine" else (p_model, p_opt)
        t0 = time.perf_counter()
        loss = mlm_nsp_forward(model, b)[0] if side == "engine" else model(**b).loss
        loss.backward()
        t1 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), exp.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        t.setdefault("fwd_bwd", []).append((t1 - t0) * 1e3)
        t.setdefault("clip_opt", []).append((t2 - t1) * 1e3)
        t.setdefault("step", []).append((t2 - t0) * 1e3)
        t.setdefault("tokens", []).append(int(b["attention_mask"].sum()))
        t.setdefault("positions", []).append(int(b["attention_mask"].numel()))

    def encoder(side, b, t):
        model = e_model if side == "engine" else p_model
        t0 = time.perf_counter()
        out = model.bert(
            input_ids=b["input_ids"], attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"]
        )
        (out[0].sum() + out[1].sum()).backward()
        t1 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        t.setdefault("encoder_fwd_bwd", []).append((t1 - t0) * 1e3)

    return engine_batch, peer_batch, step, encoder, config.vocab_size


def op_shares(fn, vocab: int) -> dict:
    """Self CPU time of one call of ``fn`` under torch.profiler: total, matmuls, ops on a vocabulary dim."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    total = matmul = vocab_ops = 0.0
    by_op: dict = {}
    for e in prof.key_averages(group_by_input_shape=True):
        us = e.self_cpu_time_total
        total += us
        by_op[e.key] = by_op.get(e.key, 0.0) + us
        if any(vocab in (s or []) for s in (e.input_shapes or [])):
            vocab_ops += us
        elif e.key in MATMUL:
            matmul += us
    top = sorted(by_op.items(), key=lambda kv: kv[1], reverse=True)[:8]
    return {
        "total_ms": total / 1e3,
        "matmul_ms": matmul / 1e3,  # mm/addmm/bmm without a vocabulary dimension
        "vocab_ms": vocab_ops / 1e3,  # every op with a vocabulary-sized dimension (the decoder and its loss)
        "top": [(k, v / total) for k, v in top],
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=("tiny", "base"), help="prepare bench/run.py's data of this size in a temp dir")
    p.add_argument("--manifest")
    p.add_argument("--experiment")
    p.add_argument("--data")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--pad-peer", type=float, default=None, help="the peer's padding fraction in a harness run")
    p.add_argument("--pad-engine", type=float, default=None, help="the engine's padding fraction in that run")
    p.add_argument("--json")
    return p


def _args(argv) -> argparse.Namespace:
    """The arguments; --size prepares bench/run.py's data of that size and fills --manifest, --experiment, --data."""
    p = _parser()
    a = p.parse_args(argv)
    if a.size:  # bench/run.py's workload of that size: its manifest, tokenizer, NSP pairs and model config
        import os
        import tempfile

        import run as harness

        ws = harness.Workspace(Path(tempfile.mkdtemp(prefix="lmconsole-ceiling-")), harness.make_plan(True))
        prep = ws.prepared(a.size)
        a.manifest, a.data, a.experiment = prep["manifest"], prep["dir"], f"bench-{a.size}"
        os.environ["LMCONSOLE_CACHE"] = str(ws.cache)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the harness's children (torch not imported yet)
    elif not (a.manifest and a.experiment and a.data):
        p.error("--size, or --manifest, --experiment and --data")
    return a


def _measure(a, step, encoder, batch: dict, vocab) -> tuple[dict, dict, list, int]:
    """The interleaved timings of both sides and the encoder, then operator shares on the batch of median width."""
    sides = ("engine", "peer")
    times = {s: {} for s in sides}
    for s in sides:  # warm-up: one step and one encoder pass each
        step(s, batch[s](0), {})
        encoder(s, batch[s](0), {})
    for i in range(a.steps):
        # engine step, peer step, then the encoder alone on the same rows (the same work for both sides)
        for s in sides if i % 2 == 0 else sides[::-1]:
            step(s, batch[s](1 + i), times[s])
        encoder("engine", batch["engine"](1 + i), times["engine"])
    times["peer"]["encoder_fwd_bwd"] = times["engine"]["encoder_fwd_bwd"]
    # operator shares on one batch of the timed ones (the one of median width), same rows both sides
    widths = [times["engine"]["positions"][i] for i in range(a.steps)]
    mid = 1 + sorted(range(a.steps), key=lambda i: widths[i])[a.steps // 2]
    prof = {}
    for s in sides:
        prof[s] = {
            "step": op_shares(lambda s=s: step(s, batch[s](mid), {}), vocab),
            "encoder": op_shares(lambda: encoder("engine", batch["engine"](mid), {}), vocab),
        }
    return times, prof, widths, mid


def _figures(a, times: dict, prof: dict, widths: list, mid: int) -> dict:
    """Medians per side, the skippable head, the ratio now and the ceilings."""
    import torch

    sides = ("engine", "peer")
    res: dict = {"threads": torch.get_num_threads(), "steps": a.steps}
    enc = times["engine"]["encoder_fwd_bwd"]
    for s in sides:
        t = times[s]
        med = {k: statistics.median(v) for k, v in t.items()}
        st, en = prof[s]["step"], prof[s]["encoder"]
        enc_mm_share = en["matmul_ms"] / en["total_ms"]
        res[s] = {
            **med,
            "head_ms": statistics.median(f - e for f, e in zip(t["fwd_bwd"], enc)),
            "encoder_matmul_ms": med["encoder_fwd_bwd"] * enc_mm_share,
            "encoder_matmul_share_of_encoder": enc_mm_share,
            "step_matmul_share": st["matmul_ms"] / st["total_ms"],
            "step_vocab_share": st["vocab_ms"] / st["total_ms"],
            "top_ops": st["top"],
        }
    e = res["engine"]
    tp, te = times["peer"]["step"], times["engine"]["step"]
    skip = [(fp - fe) for fp, fe in zip(times["peer"]["fwd_bwd"], times["engine"]["fwd_bwd"])]
    skippable = statistics.median(skip)  # = peer head - engine head (the encoder cancels out)
    res["skippable_ms"] = skippable
    res["ratio_now"] = statistics.median(p / q for p, q in zip(tp, te))  # same rows, same padding
    res["ratio_now_each"] = [p / q for p, q in zip(tp, te)]
    res["ceiling_equal_padding"] = statistics.median(p / (p - k) for p, k in zip(tp, skip))
    res["ceiling_encoder_only"] = statistics.median(p / q for p, q in zip(tp, enc))
    res["ceiling_encoder_matmuls_only"] = res["ceiling_encoder_only"] / e["encoder_matmul_share_of_encoder"]
    # the same from the profiler alone (one batch): the peer's vocabulary-dimension work the engine does not do
    pe, pp = prof["engine"]["step"], prof["peer"]["step"]
    res["profiled_batch_positions"] = widths[mid - 1]
    res["skippable_share_profiled"] = (pp["vocab_ms"] - pe["vocab_ms"]) / pp["total_ms"]
    res["ceiling_equal_padding_profiled"] = 1 / (1 - res["skippable_share_profiled"])
    res["ratio_profiled"] = pp["total_ms"] / pe["total_ms"]
    if a.pad_peer is not None and a.pad_engine is not None:
        k = (1 - a.pad_engine) / (1 - a.pad_peer)  # the peer's work per real token grows with its padding
        res["padding_factor"] = k
        res["ceiling_harness_padding"] = k * res["ceiling_equal_padding"]
    return res


def _report(res: dict) -> None:
    """The figures of both sides and the ceilings, printed."""
    sides = ("engine", "peer")
    skippable = res["skippable_ms"]
    for s in sides:
        r = res[s]
        print(
            f"{s:7s} step {r['step']:7.0f} ms = fwd+bwd {r['fwd_bwd']:7.0f} + clip/opt {r['clip_opt']:5.0f}; "
            f"encoder fwd+bwd {r['encoder_fwd_bwd']:7.0f} (matmuls {r['encoder_matmul_ms']:.0f}), "
            f"head {r['head_ms']:6.0f}; "
            f"tokens {r['tokens']:.0f} of {r['positions']:.0f}"
        )
        print(
            f"        shares of the step: encoder {r['encoder_fwd_bwd'] / r['step']:.1%} (its matmuls "
            f"{r['encoder_matmul_ms'] / r['step']:.1%}), head {r['head_ms'] / r['step']:.1%}, clip+optimizer "
            f"{r['clip_opt'] / r['step']:.1%}; top ops {[(k, round(v, 3)) for k, v in r['top_ops'][:5]]}"
        )
    print(
        f"skippable (peer head - engine head) {skippable:.0f} ms; peer/engine now {res['ratio_now']:.2f}x; ceilings: "
        f"equal padding {res['ceiling_equal_padding']:.2f}x, encoder only {res['ceiling_encoder_only']:.2f}x, "
        f"encoder matmuls only {res['ceiling_encoder_matmuls_only']:.2f}x; profiled batch "
        f"({res['profiled_batch_positions']} positions): skippable {res['skippable_share_profiled']:.1%} of the peer's "
        f"step, ceiling {res['ceiling_equal_padding_profiled']:.2f}x, peer/engine {res['ratio_profiled']:.2f}x"
        + (
            f", at the harness padding {res['ceiling_harness_padding']:.2f}x"
            if "ceiling_harness_padding" in res
            else ""
        )
    )


def main(argv=None) -> int:
    a = _args(argv)
    import torch  # noqa: F401  (imported here, after _args has set the OpenMP variables, as before)

    engine_batch, peer_batch, step, encoder, vocab = build(a.manifest, a.experiment, a.data)
    batch = {"engine": engine_batch, "peer": peer_batch}
    times, prof, widths, mid = _measure(a, step, encoder, batch, vocab)
    res = _figures(a, times, prof, widths, mid)
    _report(res)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
