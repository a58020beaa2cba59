"""BERT-base MLM + NSP training throughput on a GPU, with each lever on and off.

    python3 bench/gpu_pretrain.py [--batch-size 64] [--seq 128] [--steps 50] [--json OUT] [--markdown OUT]
    python3 bench/gpu_pretrain.py --dry-run        # CPU, a tiny model, 2 steps: checks the code paths only

Run by ``bench/gpu.sh`` (one prepared command, a few minutes on an H200). Needs
torch and transformers only (plus this repository's ``engine`` package, whose
pretraining forward and masking it uses).

Levers (the engine's GPU defaults), each switched off in turn, then all off:

- bf16 autocast (``torch.autocast("cuda", torch.bfloat16)``; the engine's ``precision = "auto"``);
- TF32 matmuls (``torch.backends.cuda.matmul.allow_tf32``; matters for what runs in fp32);
- SDPA attention (``attn_implementation="sdpa"`` vs ``"eager"``);
- fused AdamW (``fused=True`` vs ``foreach=True``);
- masked-only vocabulary logits (``engine.tasks.pretrain.mlm_nsp_forward`` vs
  ``BertForPreTraining(..., labels=...)``, which computes logits at every position);
- sync-free masked positions (fixed-size prediction slots gathered on the device, as the
  engine's GPU batches carry them) vs boolean-mask indexing (one device-to-host sync per step).

Data: synthetic full-length sequences (every token real, so tokens/s = real
tokens/s), masked with the engine's ``mask_tokens`` (15%, at most 20 per
sequence), resident on the GPU (no input pipeline in the measurement).
Timed: ``--steps`` optimizer steps after ``--warmup-steps``, CUDA-synchronised;
configs are run in ``--rounds`` interleaved rounds and the median is reported.

MFU = achieved model FLOP/s / peak. Model FLOPs per optimizer step (the useful
work, the same count for every config):

    6 * T * P_enc                      encoder matmul weights, P_enc = L * (4 H^2 + 2 H I)
  + 12 * T * L * S * H                 attention scores and weighted sum (forward 4*S*H per token per layer, x3 for training)
  + 6 * M * (H^2 + H * V)              MLM head (transform + decoder) at the M masked positions
  + 6 * B * (H^2 + 2 H)                pooler + NSP head

with T = B * S tokens. Embedding lookups, layer norms, softmax, GELU and the
optimizer are not counted. The full-logits config does 6 * (T - M) * (H^2 + H V)
more than counted (22.5% more at bert-base, batch 64 x seq 128: 18% of its own
total): that extra work is not useful, so it only lowers its MFU. Peak: the bf16
dense peak of the GPU the benchmark ran on (:func:`bf16_dense_peak_tflops`, NVIDIA's
spec sheets: H100/H200 SXM 989, H100/H200 NVL 835, H100 PCIe 756 TFLOP/s), quoted
for every config (fp32/TF32 configs are thus compared with the same yardstick; on
an H100/H200 SXM the TF32 dense peak is 494.7, fp32 non-tensor 66.9 TFLOP/s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

H200_BF16_DENSE_TFLOPS = 989.0  # SXM; also the yardstick of a dry run and of unknown GPUs

# bf16 dense tensor-core peaks (TFLOP/s, half the spec sheets' "with sparsity" figures), by a part of the
# name torch reports; the first match wins, so the more specific variants come first.
BF16_DENSE_PEAKS = (
    ("H100 NVL", 835.0),
    ("H200 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H200", 989.0),
)


def bf16_dense_peak_tflops(device_name: str) -> float:
    """The bf16 dense peak of the GPU called ``device_name`` (``torch.cuda.get_device_name``); SXM's when unknown."""
    return next((tflops for part, tflops in BF16_DENSE_PEAKS if part in device_name), H200_BF16_DENSE_TFLOPS)


LEVERS = ("bf16", "tf32", "sdpa", "fused_adamw", "masked_logits", "sync_free")
_ALL = dict(bf16=True, tf32=True, sdpa=True, fused_adamw=True, masked_logits=True, sync_free=True)
CONFIGS = {
    "all levers": dict(_ALL),
    "- bf16 autocast (fp32 + TF32)": dict(_ALL, bf16=False),
    "- TF32": dict(_ALL, tf32=False),
    "- SDPA (eager attention)": dict(_ALL, sdpa=False),
    "- fused AdamW (foreach)": dict(_ALL, fused_adamw=False),
    "- sync-free slots (boolean indexing)": dict(_ALL, sync_free=False),
    "- masked-only logits (full logits)": dict(_ALL, masked_logits=False, sync_free=False),
    "none (fp32, eager, foreach, full logits)": dict(
        bf16=False, tf32=False, sdpa=False, fused_adamw=False, masked_logits=False, sync_free=False
    ),
}


def model_flops_per_step(cfg, batch: int, seq: int, masked: int) -> float:
    H, L, I, V = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size, cfg.vocab_size
    T = batch * seq
    p_enc = L * (4 * H * H + 2 * H * I)
    return 6 * T * p_enc + 12 * T * L * seq * H + 6 * masked * (H * H + H * V) + 6 * batch * (H * H + 2 * H)


def make_batches(n: int, batch: int, seq: int, vocab: int, device, seed: int = 0):
    """Synthetic NSP pairs of exactly ``seq`` tokens, masked like the engine masks."""
    import torch

    from engine.data.nsp import mask_tokens
    from engine.tasks.pretrain import mlm_positions

    g = torch.Generator().manual_seed(seed)
    cls_id, sep_id, mask_id, first = 2, 3, 4, 5
    out = []
    for _ in range(n):
        x = torch.randint(first, vocab, (batch, seq), generator=g)
        split = torch.randint(8, seq - 8, (batch,), generator=g)
        x[:, 0] = cls_id
        x[torch.arange(batch), split] = sep_id
        x[:, -1] = sep_id
        types = (torch.arange(seq)[None, :] > split[:, None]).long()
        special = (x == cls_id) | (x == sep_id)
        ids, labels = mask_tokens(x, special, mask_id, vocab, 0.15, max(1, round(0.15 * seq)), g)
        pos, slot_labels = mlm_positions(labels, max(1, round(0.15 * seq)))
        b = {
            "input_ids": ids,
            "labels": labels,
            "token_type_ids": types,
            "attention_mask": torch.ones_like(x),
            "next_sentence_label": torch.randint(0, 2, (batch,), generator=g),
            "mlm_positions": pos,
            "mlm_labels": slot_labels,
        }
        out.append({k: v.to(device) for k, v in b.items()})
    return out


def build_optimizer(model, fused: bool, device):
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "LayerNorm" in name or name.endswith(".bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]
    kwargs = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(groups, lr=1e-4, **kwargs)


def measure(name: str, lev: dict, config, batches, args, device) -> dict:
    import torch
    from transformers import BertForPreTraining

    from engine.tasks.pretrain import mlm_nsp_forward

    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = lev["tf32"]
        torch.backends.cudnn.allow_tf32 = lev["tf32"]
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    config._attn_implementation = "sdpa" if lev["sdpa"] else "eager"
    model = (
        BertForPreTraining._from_config(config, attn_implementation="sdpa" if lev["sdpa"] else "eager")
        .to(device)
        .train()
    )
    opt = build_optimizer(model, lev["fused_adamw"], device)
    amp = torch.bfloat16 if lev["bf16"] else None

    drop = () if lev["sync_free"] else ("mlm_positions", "mlm_labels")
    batches = [{k: v for k, v in b.items() if k not in drop} for b in batches]

    def step(b):
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            if lev["masked_logits"]:
                loss, _ = mlm_nsp_forward(model, b)
            else:
                loss = model(**{k: v for k, v in b.items() if k not in ("mlm_positions", "mlm_labels")}).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for i in range(args.warmup_steps):
        step(batches[i % len(batches)])
    if cuda:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for i in range(args.steps):
        loss = step(batches[i % len(batches)])
    if cuda:
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - t0
    final_loss = float(loss.detach())
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    del model, opt
    return {
        "config": name,
        **lev,
        "seconds": dt,
        "step_ms": dt / args.steps * 1e3,
        "peak_gib": peak,
        "loss": final_loss,
        "attn": config._attn_implementation,
    }


def check_sync_free(config, batch: dict, device) -> dict:
    """The GPU's sync-free path (fixed-size slots gathered on the device) against the CPU's
    boolean-indexing path, same weights and batch, fp32 (TF32 off): loss, MLM/NSP parts and
    the gradient of the MLM decoder bias must agree to float rounding."""
    import torch
    from transformers import BertForPreTraining

    from engine.tasks.pretrain import mlm_nsp_forward

    def run(dev, b):
        torch.manual_seed(0)
        model = BertForPreTraining._from_config(config, attn_implementation="sdpa").to(dev).train()
        for m in model.modules():  # dropout off: the two devices draw different masks
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        loss, parts = mlm_nsp_forward(model, {k: v.to(dev) for k, v in b.items()})
        loss.backward()
        grad = (
            model.cls.predictions.bias.grad
            if model.cls.predictions.bias.grad is not None
            else model.cls.predictions.decoder.bias.grad
        )
        return float(loss), {k: float(v) for k, v in parts.items()}, grad.detach().cpu()

    tf32 = torch.backends.cuda.matmul.allow_tf32 if device.type == "cuda" else None
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    try:
        cpu_batch = {k: v.cpu() for k, v in batch.items() if k not in ("mlm_positions", "mlm_labels")}
        ref_loss, ref_parts, ref_grad = run(torch.device("cpu"), cpu_batch)
        loss, parts, grad = run(device, {k: v.cpu() for k, v in batch.items()})
    finally:
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32
    rel = abs(loss - ref_loss) / abs(ref_loss)
    grad_err = float((grad - ref_grad).abs().max() / ref_grad.abs().max().clamp_min(1e-12))
    ok = rel < 1e-4 and grad_err < 1e-3
    return {
        "cpu_boolean_loss": ref_loss,
        "device_slots_loss": loss,
        "cpu_parts": ref_parts,
        "device_parts": parts,
        "loss_rel_diff": rel,
        "decoder_bias_grad_rel_err": grad_err,
        "device": str(device),
        "ok": ok,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--configs", default="", help="comma-separated subset of config names (default: all)")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny model, 2 warm-up + 2 timed steps, 1 round")
    p.add_argument("--json")
    p.add_argument("--markdown")
    return p


def _device_and_config(args):
    """The device and BertConfig to measure: bert-base on CUDA, or a tiny model on the CPU for --dry-run
    (which also shrinks batch, seq, steps and rounds). None without a CUDA device and without --dry-run."""
    import torch
    from transformers import BertConfig

    if args.dry_run:
        device = torch.device("cpu")
        config = BertConfig(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=256,
            vocab_size=1000,
            max_position_embeddings=512,
        )
        args.batch_size, args.seq, args.warmup_steps, args.steps, args.rounds = 4, 32, 2, 2, 1
    else:
        if not torch.cuda.is_available():
            print("no CUDA device (use --dry-run to check the script on a CPU)", file=sys.stderr)
            return None
        device = torch.device("cuda")
        config = BertConfig()  # bert-base-uncased's shape: 12 x 768, vocab 30522
    return device, config


def _rows(names: list, runs: dict, flops: float, tokens: int, device, peak_tflops: float) -> list[dict]:
    """One row per config: median ms/step, tokens/s, model TFLOP/s, MFU (against ``peak_tflops``), peak memory."""
    rows = []
    for n in names:
        ms = statistics.median(x["step_ms"] for x in runs[n])
        tok_s = tokens / (ms / 1e3)
        achieved = flops / (ms / 1e3) / 1e12
        rows.append(
            {
                "config": n,
                **{k: CONFIGS[n][k] for k in LEVERS},
                "step_ms": ms,
                "tokens_per_s": tok_s,
                "model_tflops": achieved,
                "mfu": achieved / peak_tflops,
                "peak_gib": max((x["peak_gib"] or 0) for x in runs[n]) if device.type == "cuda" else None,
                "step_ms_all": [x["step_ms"] for x in runs[n]],
            }
        )
    return rows


def _markdown(args, info: dict, rows: list[dict], check: dict) -> str:
    """The table of rows (relative to the first, all levers on) and the sync-free check."""
    ref = rows[0]["tokens_per_s"]
    lines = [
        f"bert-base MLM+NSP training, batch {args.batch_size} x seq {args.seq}, {info['device']}, torch {info['torch']}, "
        f"transformers {info['transformers']}; median of {args.rounds} rounds of {args.steps} steps after {args.warmup_steps} warm-up",
        "",
        f"| config | tokens/s | ms/step | model TFLOP/s | MFU (of {info['peak_tflops']:.0f}) | peak GiB | vs all levers |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        peak = f"{row['peak_gib']:.1f}" if row["peak_gib"] is not None else "n/a"
        lines.append(
            f"| {row['config']} | {row['tokens_per_s']:,.0f} | {row['step_ms']:.1f} | {row['model_tflops']:.1f} | "
            f"{row['mfu']:.1%} | {peak} | {row['tokens_per_s'] / ref:.2f}x |"
        )
    lines += [
        "",
        f"Sync-free masked positions on {check['device']} vs the CPU's boolean indexing, same weights and batch, fp32: "
        f"loss rel diff {check['loss_rel_diff']:.1e}, MLM decoder-bias gradient rel err {check['decoder_bias_grad_rel_err']:.1e}: "
        f"**{'agree' if check['ok'] else 'DISAGREE'}**.",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)

    import torch
    import transformers

    got = _device_and_config(args)
    if got is None:
        return 2
    device, config = got
    names = [n for n in CONFIGS if not args.configs or n in args.configs.split(",")]
    batches = make_batches(4, args.batch_size, args.seq, config.vocab_size, device)
    masked = sum(int((b["labels"] != -100).sum()) for b in batches) / len(batches)
    flops = model_flops_per_step(config, args.batch_size, args.seq, masked)
    tokens = args.batch_size * args.seq
    info = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)",
        "batch_size": args.batch_size,
        "seq": args.seq,
        "warmup_steps": args.warmup_steps,
        "steps": args.steps,
        "rounds": args.rounds,
        "masked_per_step": masked,
        "model_flops_per_step": flops,
        "peak_tflops": bf16_dense_peak_tflops(torch.cuda.get_device_name(device) if device.type == "cuda" else ""),
        "params": sum(p.numel() for p in transformers.BertForPreTraining(config).parameters()),
    }
    print(json.dumps(info), flush=True)
    check = check_sync_free(config, batches[0], device)
    info["sync_free_check"] = check
    print(
        f"sync-free masked positions ({device}) vs CPU boolean indexing, same batch: loss {check['device_slots_loss']:.6f} vs "
        f"{check['cpu_boolean_loss']:.6f} (rel {check['loss_rel_diff']:.1e}), decoder-bias grad rel err "
        f"{check['decoder_bias_grad_rel_err']:.1e}: {'OK' if check['ok'] else 'MISMATCH'}",
        flush=True,
    )
    runs: dict[str, list] = {n: [] for n in names}
    for r in range(args.rounds):
        for n in names if r % 2 == 0 else names[::-1]:
            res = measure(n, CONFIGS[n], config, batches, args, device)
            runs[n].append(res)
            print(
                f"round {r + 1} {n}: {res['step_ms']:.1f} ms/step, peak {res['peak_gib']} GiB, loss {res['loss']:.3f}",
                flush=True,
            )
    rows = _rows(names, runs, flops, tokens, device, info["peak_tflops"])
    text = _markdown(args, info, rows, check)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text + "\n")
    return 0 if check["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
