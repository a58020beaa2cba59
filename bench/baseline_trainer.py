"""Baseline: the same MLM + NSP pretraining with a plain Hugging Face ``Trainer``.

    python bench/baseline_trainer.py --data DIR --steps N --warmup-steps W --batch-size B --json OUT
        [--peer plain|tuned] [--precision fp32|bf16] [--compile]

``--peer plain`` (default) is what a user would write from the transformers docs: ``BertForPreTraining`` (full
vocabulary logits at every position, its own MLM + NSP loss),
``DataCollatorForLanguageModeling`` (dynamic padding, 15% masking) and
``Trainer`` with its defaults (random sampler, AdamW, linear schedule, gradient
clipping at 1.0), on the SAME tokenised NSP pairs as the engine (``DIR/train-pairs``:
the engine's cached ``prepare_split`` output), the same tokenizer (``DIR/tokenizer``),
the same model config (``DIR/config.json``), batch size and number of optimizer steps.

Measure: real (non-padding) tokens per second over optimizer steps W+1..N
(the first W steps are warm-up). Tokens are counted in the collator (each
feature's length, before padding); the clock is read at the end of each
optimizer step (``on_step_end``). Needs ``accelerate`` (the Trainer requires it).

``--peer tuned`` is the strongest peer: the same Trainer configured by a user who cares
about speed, with its built-in levers: ``train_sampling_strategy="group_by_length"``
(batches of similar lengths: little padding, like the engine's bucketing; lengths
precomputed in a ``length`` column so the sampler does not tokenise), fused AdamW
(``optim="adamw_torch_fused"``, explicit), ``--precision bf16`` = ``bf16=True`` (autocast,
as the engine's ``precision = "bf16"``), ``--compile`` = ``torch_compile=True``.
``dataloader_drop_last`` stays off on both sides (every batch full at these step counts).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder with tokenizer/, train-pairs/, config.json")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--warmup-steps", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = leave the default)")
    p.add_argument(
        "--peer",
        choices=("plain", "tuned"),
        default="plain",
        help="plain = Trainer defaults; tuned = group_by_length + fused AdamW (+ --precision, --compile)",
    )
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--compile", action="store_true", help="torch_compile=True (tuned peer)")
    p.add_argument(
        "--max-rows",
        type=int,
        default=0,
        help="train on the first N pairs only (the engine's max_train_samples takes the same first N)",
    )
    p.add_argument("--json", required=True)
    return p


def _load(a) -> tuple:
    """The tokenizer, the training pairs (the first --max-rows; their lengths for the tuned peer), a fresh model."""
    import datasets
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForPreTraining

    if a.threads:
        torch.set_num_threads(a.threads)
    data = Path(a.data)
    tokenizer = AutoTokenizer.from_pretrained(str(data / "tokenizer"))
    train = datasets.load_from_disk(str(data / "train-pairs"))
    if a.max_rows:
        train = train.select(range(min(a.max_rows, len(train))))
    tuned = a.peer == "tuned"
    if tuned and "length" not in train.column_names:
        train = train.add_column("length", [len(x) for x in train["input_ids"]])
    config = BertConfig.from_json_file(str(data / "config.json"))
    torch.manual_seed(a.seed)
    model = BertForPreTraining(config)
    return tokenizer, train, model


def _train(a, tokenizer, train, model) -> tuple[list[int], list[int], list[float], str]:
    """Trainer.train(); the real and padded tokens of each batch, the clock at each step end, the optimizer used."""
    import torch
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

    tuned = a.peer == "tuned"
    collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm=True, mlm_probability=0.15)
    real_tokens: list[int] = []
    padded_tokens: list[int] = []

    def counting_collator(features):
        features = [{k: v for k, v in f.items() if k != "length"} for f in features]
        batch = collator(features)
        real_tokens.append(sum(len(f["input_ids"]) for f in features))
        padded_tokens.append(batch["input_ids"].numel())
        return batch

    step_end: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            step_end.append(time.perf_counter())

    with tempfile.TemporaryDirectory(prefix="baseline-trainer-") as out_dir:
        args = TrainingArguments(
            output_dir=out_dir,
            per_device_train_batch_size=a.batch_size,
            max_steps=a.steps,
            learning_rate=a.learning_rate,
            seed=a.seed,
            logging_steps=a.steps,
            save_strategy="no",
            report_to="none",
            use_cpu=not torch.cuda.is_available(),
            push_to_hub=False,
            disable_tqdm=True,
            bf16=a.precision == "bf16",
            **(
                {"train_sampling_strategy": "group_by_length", "optim": "adamw_torch_fused", "torch_compile": a.compile}
                if tuned
                else {}
            ),
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train,
            data_collator=counting_collator,
            processing_class=tokenizer,
            callbacks=[Clock()],
        )
        trainer.train()
    return real_tokens, padded_tokens, step_end, str(args.optim)


def _figures(a, real_tokens: list[int], padded_tokens: list[int], step_end: list[float]) -> dict:
    """Tokens/s and the rest over the timed steps (after --warmup-steps)."""
    import torch

    w, n = a.warmup_steps, a.steps
    if len(step_end) != n:
        raise SystemExit(f"expected {n} optimizer steps, saw {len(step_end)}")
    span = step_end[n - 1] - step_end[w - 1]
    tokens = sum(real_tokens[w:n])  # batch i feeds optimizer step i (one micro-batch per step)
    return {
        "side": "baseline",
        "peer": a.peer,
        "precision": a.precision,
        "compile": a.compile,
        "tokens_per_s": tokens / span,
        "samples_per_s": (n - w) * a.batch_size / span,
        "timed_steps": n - w,
        "timed_s": span,
        "s_per_step": span / (n - w),
        "warmup_steps": w,
        "threads": torch.get_num_threads(),
        "padding_fraction": 1 - sum(real_tokens[w:n]) / sum(padded_tokens[w:n]),
    }


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    t_start = time.perf_counter()
    tokenizer, train, model = _load(a)
    real_tokens, padded_tokens, step_end, optim = _train(a, tokenizer, train, model)
    out = _figures(a, real_tokens, padded_tokens, step_end)
    out.update(
        optimizer=optim,
        attn_implementation=getattr(model.config, "_attn_implementation", None),
        process_s=time.perf_counter() - t_start,
    )
    Path(a.json).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
