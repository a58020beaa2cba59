"""``task = "pretrain"``: MLM + NSP pretraining of ``BertForPreTraining``.

Data: documents -> NSP pairs (BERT recipe, :mod:`engine.data.nsp`), tokenised
once on ``num_proc`` processes in bounded memory (:mod:`engine.data.prepare`) and
cached on disk (one Arrow file, keyed by dataset, tokenizer and settings), which
training reads batch by batch through a memory map. The
evaluation pairs are masked ONCE with a fixed seed and cached with the masks, so
every epoch is scored on identical inputs. MLM perplexity is
``exp(sum of masked-token NLL / number of masked tokens)`` over the whole split,
reported separately from NSP accuracy (``exp`` of the combined loss is not a
perplexity). Vocabulary logits are computed only at masked positions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

from engine.data.cache import check, corrupt_error, remove, seal
from engine.data.nsp import mask_tokens
from engine.data.prepare import MASK_CHUNK, PairSettings, build_pairs_file, resolve_num_proc
from engine.errors import JobError
from engine.events import PhaseStarted, ProgressUpdated
from engine.models.presets import cache_root, preset_config
from engine.models.source import check_positions
from engine.store.predictions import save_epoch
from engine.tasks.common import (
    EpochBatches,
    TaskInputs,
    data_inputs,
    first_line,
    get_tokenizer,
    pad_batch,
    task_inputs,
)
from engine.train.context import TaskContext
from engine.train.loop import TaskSpec, setup_job, train

RECIPE_VERSION = 1
EVAL_MASK_SEED = 1_000_003


def _tokenizer_hash(tok) -> str:
    vocab = json.dumps(sorted(tok.get_vocab().items()), separators=(",", ":"))
    return hashlib.sha256((vocab + type(tok).__name__ + str(getattr(tok, "do_lower_case", ""))).encode()).hexdigest()[
        :16
    ]


PAIRS_FILE = "pairs.arrow"
LAYOUT = 2  # the cache folder's layout: 2 = one Arrow stream file of int32/int8 columns


def prepare_split(ctx: TaskContext, tok, split: str, seed: int, mask: bool, inputs: TaskInputs | None = None):
    """NSP pairs of one split as a cached, memory-mapped ``datasets.Dataset`` (masked once when ``mask``).

    Built by :func:`engine.data.prepare.build_pairs_file` in bounded memory on ``num_proc``
    processes; the pairs do not depend on ``num_proc``, so it is not part of the cache key.
    """
    inputs = inputs or data_inputs(ctx)
    folder = cache_root() / "pretrain-data" / _pairs_key(inputs, tok, split, seed, mask)
    cached = _cached_pairs(ctx, folder, split)
    if cached is not None:
        return cached
    exp = inputs.exp
    t0 = time.perf_counter()
    lines = inputs.split(split)
    procs = resolve_num_proc(getattr(exp, "num_proc", 0))
    ctx.emit(PhaseStarted(phase="data", detail=f"{split}: {len(lines):,} lines, tokenising on {procs} processes"))
    limit = exp.max_train_samples if split == exp.train_split else exp.max_eval_samples
    settings = PairSettings(exp.max_seq_length, exp.short_seq_prob, seed, limit)
    # pid in the temp name: concurrent builders (e.g. ranks of a torchrun job) never share it;
    # the first rename wins and the others keep the winner's identical copy.
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    remove(tmp)
    tmp.mkdir(parents=True)
    try:
        n = build_pairs_file(
            lines,
            exp.text_column,
            tok,
            tmp / PAIRS_FILE,
            tmp / "work",
            settings,
            num_proc=procs,
            finish=EvalMasks(tok, exp, seed) if mask else None,
            progress=_progress_events(ctx, split),
        )
        remove(tmp / "work")
        seal(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:
            pass  # another builder's identical copy is already there
    finally:
        remove(tmp)
    ctx.log(f"{split}: {n:,} NSP pairs built in {time.perf_counter() - t0:.1f}s on {procs} processes (cached)")
    return _load_sealed(folder)


def _progress_events(ctx: TaskContext, split: str):
    """``ProgressUpdated`` events of a preparation stage: lines or documents done, tokens/s, ETA."""
    units = {"tokenise": "lines", "pair": "documents"}

    def report(stage: str, done: int, total: int, tokens: int, elapsed: float) -> None:
        rate = tokens / elapsed if elapsed > 0 else None
        eta = elapsed * (total - done) / done if done and total >= done else None
        ctx.emit(
            ProgressUpdated(
                phase=f"{stage} {split}", done=done, total=total, unit=units[stage], tokens_per_s=rate, eta_s=eta
            )
        )

    return report


def _pairs_key(inputs: TaskInputs, tok, split: str, seed: int, mask: bool) -> str:
    """The cache key of a split's pairs: data, tokenizer, recipe and (for evaluation) mask settings."""
    exp = inputs.exp
    key_src = [
        RECIPE_VERSION,
        inputs.dataset_key(split),
        _tokenizer_hash(tok),
        exp.max_seq_length,
        exp.short_seq_prob,
        seed,
        exp.text_column,
        exp.max_train_samples if split == exp.train_split else exp.max_eval_samples,
        mask and [exp.mlm_probability, max_predictions(exp), EVAL_MASK_SEED],
        LAYOUT,
    ]
    return hashlib.sha256(json.dumps(key_src).encode()).hexdigest()[:20]


def _cached_pairs(ctx: TaskContext, folder: Path, split: str):
    """The sealed cached pairs in ``folder``, or None (a corrupt copy is removed, to be rebuilt)."""
    if not (folder / PAIRS_FILE).exists():
        return None
    problem = check(folder)
    if not problem:
        try:
            ds = _open_pairs(folder)
            ctx.log(f"{split}: reusing cached pairs ({folder.name})")
            return ds
        except Exception as exc:  # noqa: BLE001 - a damaged Arrow file
            problem = f"does not load: {first_line(exc, 120)}"
    ctx.log(f"the cached NSP pairs {folder} are corrupt ({problem}): rebuilding them", "warning")
    remove(folder)
    return None


def _open_pairs(folder: Path):
    import datasets

    return datasets.Dataset.from_file(str(folder / PAIRS_FILE))


class EvalMasks:
    """Adds ``masked_input_ids`` / ``mlm_labels`` to each block of pairs: the evaluation masks, drawn
    once with a fixed seed, :data:`MASK_CHUNK` rows at a time in order (blocks are whole multiples of it)."""

    columns = ("masked_input_ids", "mlm_labels")

    def __init__(self, tok, exp, seed: int):
        import torch

        self.tok, self.exp = tok, exp
        self.g = torch.Generator().manual_seed(EVAL_MASK_SEED + seed)

    def __call__(self, cols: dict) -> dict:
        import numpy as np
        import torch

        tok, exp = self.tok, self.exp
        offsets, ids = cols["offsets"], cols["input_ids"]
        masked, labels = np.empty_like(ids), np.empty_like(ids)
        for s in range(0, len(offsets) - 1, MASK_CHUNK):
            o = offsets[s : s + MASK_CHUNK + 1]
            lengths = np.diff(o)
            valid = np.arange(int(lengths.max())) < lengths[:, None]
            x = np.full(valid.shape, tok.pad_token_id, np.int64)
            x[valid] = ids[o[0] : o[-1]]
            xt = torch.from_numpy(x)
            m, lab = mask_tokens(
                xt,
                _special_mask(xt, tok),
                tok.mask_token_id,
                len(tok),
                exp.mlm_probability,
                max_predictions(exp),
                self.g,
            )
            masked[o[0] : o[-1]] = m.numpy()[valid]
            labels[o[0] : o[-1]] = lab.numpy()[valid]
        return {"masked_input_ids": masked, "mlm_labels": labels}


def _load_sealed(folder: Path):
    """The dataset just saved in ``folder``; a damaged one fails naming the folder to delete."""
    problem = check(folder)
    try:
        if not problem:
            return _open_pairs(folder)
    except Exception as exc:  # noqa: BLE001
        problem = first_line(exc, 120)
    raise corrupt_error("NSP pairs", folder, problem)


def max_predictions(exp) -> int:
    return exp.max_predictions_per_seq or max(1, round(exp.mlm_probability * exp.max_seq_length))


def _padded_matrix(column, pad: int, dtype):
    """An Arrow ``list<int>`` column -> ([rows, width] tensor padded with ``pad``, int64 lengths).

    ``width`` = the longest row rounded up to a multiple of 8; no Python loop over rows.
    """
    import numpy as np
    import pyarrow as pa
    import torch

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = arr.offsets.to_numpy().astype(np.int64)
    lengths = np.diff(offsets)
    values = arr.flatten().to_numpy(zero_copy_only=False)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = np.arange(len(values)) - np.repeat(offsets[:-1] - offsets[0], lengths)
    width = -(-int(lengths.max(initial=1)) // 8) * 8
    out = np.full((len(lengths), width), pad, dtype=dtype)
    out[rows, cols] = values
    return torch.from_numpy(out), lengths


class TrainBatches:
    """Training batches of the cached NSP pairs: length-bucketed, padded, masked per (seed, epoch, batch).

    The pairs stay in their memory-mapped Arrow file: a batch is one ``take`` of its rows,
    padded there, so memory does not grow with the corpus (only the per-pair lengths and NSP
    labels are held, 16 bytes a pair). Masks are drawn on the batch padded to a multiple of 8
    (as on GPUs, so a batch's masks do not depend on the device); with ``trim`` (CPU) the batch
    is then cut to its longest sequence, since CPUs gain nothing from the multiple of 8 and would
    compute the extra padding. With ``slots`` (GPU) each batch also carries fixed-size
    prediction slots (:func:`mlm_positions`) for a sync-free forward.
    """

    def __init__(self, train_ds, tok, exp, vocab_size: int, trim: bool = False, slots: bool = False):
        import pyarrow.compute as pc
        import torch

        self.table = train_ds.with_format("arrow")[:]
        lengths = pc.list_value_length(self.table.column("input_ids")).to_numpy().astype("int64")
        self.nsp = torch.from_numpy(self.table.column("next_sentence_label").to_numpy().astype("int64"))
        self.lengths = torch.from_numpy(lengths)
        self.lengths_list = lengths.tolist()
        self.n_pairs, self.n_tokens = len(self.lengths_list), int(lengths.sum())
        self.tok, self.exp, self.vocab_size, self.trim, self.slots = tok, exp, vocab_size, trim, slots
        self.max_pred = max_predictions(exp)
        self._epochs = EpochBatches(
            self.lengths_list, exp.batch_size, exp.seed, accumulation=exp.gradient_accumulation_steps
        )

    def batches(self, epoch: int) -> list[list[int]]:
        return self._epochs.of(epoch)

    def n_batches(self, epoch: int) -> int:
        return len(self.batches(epoch))

    def get(self, epoch: int, i: int) -> dict:
        import torch

        tok, exp = self.tok, self.exp
        rows = self.batches(epoch)[i]
        idx = torch.tensor(rows)
        longest = int(self.lengths[idx].max())
        picked = self.table.select(["input_ids", "token_type_ids"]).take(rows)
        x = _padded_matrix(picked.column("input_ids"), tok.pad_token_id, "int64")[0]  # width: longest, to 8
        special = _special_mask(x, tok)
        g = torch.Generator().manual_seed(hash((exp.seed, epoch, i)) & 0x7FFFFFFF)
        masked, labels = mask_tokens(
            x, special, tok.mask_token_id, self.vocab_size, exp.mlm_probability, self.max_pred, g
        )
        types = _padded_matrix(picked.column("token_type_ids"), 0, "int64")[0]
        if self.trim:
            masked, labels, types, x = (t[:, :longest] for t in (masked, labels, types, x))
        batch = {
            "input_ids": masked,
            "labels": labels,
            "token_type_ids": types,
            "attention_mask": (x != tok.pad_token_id).long(),
            "next_sentence_label": self.nsp[idx],
            "n_tokens": int(self.lengths[idx].sum()),
            "n_samples": len(idx),
        }
        if self.slots:
            batch["mlm_positions"], batch["mlm_labels"] = mlm_positions(labels, self.max_pred)
        return batch


def _special_mask(x, tok):
    return (x == tok.cls_token_id) | (x == tok.sep_token_id) | (x == tok.pad_token_id)


def mlm_positions(labels, max_pred: int):
    """Fixed-size prediction slots: ([rows, k] positions, [rows, k] labels), k = min(max_pred, width).

    The masked positions of each row first (ascending), then filler positions whose
    label is -100 (ignored by the loss). Built on the CPU with the batch, so the
    forward pass can gather them without learning their number on the device.
    """
    import torch

    chosen = labels != -100
    k = min(max_pred, labels.shape[1])
    pos = torch.argsort((~chosen).to(torch.int8), dim=1, stable=True)[:, :k]
    return pos, labels.gather(1, pos)


def mlm_nsp_forward(model, batch):
    """Loss with vocabulary logits only at masked positions: (loss, parts).

    With ``mlm_positions``/``mlm_labels`` in the batch (GPU batches) the masked
    hidden states are gathered into fixed-size slots: no host sync, static shapes.
    Without them (CPU), boolean indexing picks exactly the masked positions
    (a sync is free on a CPU, and the filler slots would cost compute).
    """
    import torch.nn.functional as F

    out = model.bert(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
    )
    seq, pooled = out[0], out[1]
    if "mlm_positions" in batch:
        pos = batch["mlm_positions"]
        hidden = seq.gather(1, pos.unsqueeze(-1).expand(-1, -1, seq.shape[-1]))
        logits = model.cls.predictions(hidden).float().flatten(0, 1)
        mlm = F.cross_entropy(logits, batch["mlm_labels"].flatten(), ignore_index=-100)
    else:
        labels = batch["labels"]
        sel = labels != -100
        logits = model.cls.predictions(seq[sel]).float()
        mlm = F.cross_entropy(logits, labels[sel])
    nsp_logits = model.cls.seq_relationship(pooled).float()
    nsp = F.cross_entropy(nsp_logits, batch["next_sentence_label"])
    return mlm + nsp, {"mlm_loss": mlm, "nsp_loss": nsp}


def evaluate_mlm(model, eval_data, tok, batch_size: int, device) -> dict:
    """Token-weighted MLM NLL, accuracy and NSP accuracy over the pre-masked split."""
    import torch
    import torch.nn.functional as F

    nll = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    n_masked = 0
    nsp_correct = torch.zeros((), dtype=torch.long, device=device)
    masked_ids, labels_all = eval_data["masked_ids"], eval_data["labels"]
    types, nsp_labels = eval_data["token_type_ids"], eval_data["nsp"]
    order = sorted(range(len(masked_ids)), key=lambda i: len(masked_ids[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        x = pad_batch([masked_ids[i] for i in idx], tok.pad_token_id).to(device)
        tt = pad_batch([types[i] for i in idx], 0).to(device)
        lab = pad_batch([labels_all[i] for i in idx], -100).to(device)
        att = pad_batch([[1] * len(masked_ids[i]) for i in idx], 0).to(device)
        out = model.bert(input_ids=x, attention_mask=att, token_type_ids=tt)
        sel = lab != -100
        logits = model.cls.predictions(out[0][sel]).float()
        target = lab[sel]
        nll += F.cross_entropy(logits, target, reduction="sum").double()
        correct += (logits.argmax(-1) == target).sum()
        n_masked += int(sel.sum())
        nsp_pred = model.cls.seq_relationship(out[1]).argmax(-1)
        nsp_correct += (nsp_pred == torch.tensor([nsp_labels[i] for i in idx], device=device)).sum()
    n = len(masked_ids)
    mean_nll = nll.item() / max(n_masked, 1)
    return {
        "mlm_perplexity": math.exp(mean_nll),
        "mlm_loss": mean_nll,
        "mlm_accuracy": correct.item() / max(n_masked, 1),
        "nsp_accuracy": nsp_correct.item() / max(n, 1),
        "masked_tokens": n_masked,
        "sequences": n,
    }


MASK_EXAMPLE_SEQUENCES = 32  # evaluation sequences whose masked positions are saved per evaluation (browsing)
MASK_EXAMPLE_TOP_K = 5
MASK_EXAMPLE_CONTEXT = 12  # tokens of context kept on each side of a masked position


def mask_examples(model, eval_data, tok, device, n_seqs: int = MASK_EXAMPLE_SEQUENCES) -> list[dict]:
    """The masked positions of the first ``n_seqs`` evaluation sequences: gold token, top predictions.

    Run once after the evaluation on a few sequences (one small batch: a negligible cost next to
    the whole split), so the evaluation's own loop stays free of host syncs. A row per masked
    position: ``index`` (sequence), ``position``, ``gold``, ``top`` ([token, probability] pairs,
    most probable first), ``gold_probability`` and the masked input around it (``left`` / ``right``,
    WordPiece continuations joined; ``left + " [MASK]" + right`` is the masked text).
    """
    import torch

    masked_ids, labels_all = eval_data["masked_ids"][:n_seqs], eval_data["labels"][:n_seqs]
    if not masked_ids:
        return []
    x = pad_batch(masked_ids, tok.pad_token_id).to(device)
    tt = pad_batch(eval_data["token_type_ids"][:n_seqs], 0).to(device)
    lab = pad_batch(labels_all, -100)
    att = pad_batch([[1] * len(m) for m in masked_ids], 0).to(device)
    out = model.bert(input_ids=x, attention_mask=att, token_type_ids=tt)
    rows_cols = (lab != -100).nonzero().tolist()
    if not rows_cols:
        return []
    sel = torch.tensor(rows_cols, device=device)
    probs = model.cls.predictions(out[0][sel[:, 0], sel[:, 1]]).float().softmax(-1).cpu()
    top_p, top_i = probs.topk(min(MASK_EXAMPLE_TOP_K, probs.shape[-1]), dim=-1)
    rows = []
    for k, (r, c) in enumerate(rows_cols):
        gold = int(lab[r, c])
        seq = masked_ids[r]
        rows.append(
            {
                "index": r,
                "position": c,
                "gold": tok.convert_ids_to_tokens(gold),
                "top": [[tok.convert_ids_to_tokens(int(i)), round(float(p), 6)] for p, i in zip(top_p[k], top_i[k])],
                "gold_probability": round(float(probs[k, gold]), 6),
                "left": _join_pieces(tok.convert_ids_to_tokens(seq[max(0, c - MASK_EXAMPLE_CONTEXT) : c])),
                "right": _join_pieces(tok.convert_ids_to_tokens(seq[c + 1 : c + 1 + MASK_EXAMPLE_CONTEXT]), after=True),
            }
        )
    return rows


def _join_pieces(tokens: list[str], after: bool = False) -> str:
    """WordPiece tokens as text: ``##`` continuations glued to the word before.

    ``after``: the tokens follow the masked position, so the text starts with a space unless
    its first token continues the masked word (``left + " [MASK]" + right`` reads right).
    """
    out = ""
    for t in tokens:
        out += t[2:] if t.startswith("##") and (out or after) else (" " + t if out or after else t)
    return out


def pseudo_perplexity(model, seqs: list[list[int]], tok, device, batch_size: int = 64) -> float:
    """Salazar et al. (2020): mask each token in turn; PPPL = exp(-sum log p / n), no [CLS]/[SEP]."""
    import torch

    total, count = 0.0, 0
    for seq in seqs:
        positions = [i for i, t in enumerate(seq) if t not in (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id)]
        for s in range(0, len(positions), batch_size):
            pos = torch.tensor(positions[s : s + batch_size])
            x = torch.tensor(seq).repeat(len(pos), 1)
            target = x[torch.arange(len(pos)), pos].clone()
            x[torch.arange(len(pos)), pos] = tok.mask_token_id
            x = x.to(device)
            out = model.bert(input_ids=x, attention_mask=torch.ones_like(x))
            h = out[0][torch.arange(len(pos), device=device), pos.to(device)]
            logp = model.cls.predictions(h).float().log_softmax(-1)
            total += logp[torch.arange(len(pos), device=device), target.to(device)].sum().item()
            count += len(pos)
    return math.exp(-total / max(count, 1))


def pretrain_tokenizer(ctx: TaskContext, inputs: TaskInputs):
    """The experiment's tokenizer; a WordPiece one is trained on the training split's text (and cached)."""
    exp = inputs.exp

    def corpus():
        col = inputs.split(exp.train_split)[exp.text_column]
        for s in range(0, len(col), 1000):
            yield [t for t in col[s : s + 1000] if t and t.strip()]

    return get_tokenizer(ctx, inputs, corpus, inputs.dataset_key(exp.train_split) + exp.text_column)


def pretraining_model(inputs: TaskInputs, tok):
    """``BertForPreTraining`` from the start point, its embeddings grown to the tokenizer's vocabulary."""
    import torch
    from transformers import AutoConfig, BertForPreTraining

    torch.manual_seed(inputs.exp.seed)
    if inputs.kind == "preset":
        model = BertForPreTraining(preset_config(inputs.path, vocab_size=len(tok)))
    elif inputs.kind == "scratch-config":
        model = BertForPreTraining(AutoConfig.from_pretrained(inputs.path))
    else:
        model = BertForPreTraining.from_pretrained(inputs.path, dtype=torch.float32)  # fp32 master weights
    check_positions(inputs.exp, model.config)
    if len(tok) > model.config.vocab_size:
        model.resize_token_embeddings(len(tok))
    return model


def _eval_data(eval_ds) -> dict[str, list]:
    """The pre-masked evaluation split as Python lists (what :func:`evaluate_mlm` reads)."""
    return {
        "masked_ids": list(eval_ds["masked_input_ids"]),
        "labels": list(eval_ds["mlm_labels"]),
        "token_type_ids": list(eval_ds["token_type_ids"]),
        "nsp": list(eval_ds["next_sentence_label"]),
    }


def build_data(ctx: TaskContext, inputs: TaskInputs, tok, vocab_size: int, device):
    """(training batches, evaluation split, its lists): the cached NSP pairs of both splits."""
    exp = inputs.exp
    ctx.emit(PhaseStarted(phase="data", detail="building NSP pairs"))
    train_ds = prepare_split(ctx, tok, exp.train_split, exp.seed, mask=False, inputs=inputs)
    eval_ds = prepare_split(ctx, tok, exp.eval_split, exp.seed, mask=True, inputs=inputs)
    eval_data = _eval_data(eval_ds)
    if not len(train_ds) or not eval_data["masked_ids"]:
        raise JobError(
            "no NSP pairs could be built (empty split or text column?)",
            f"check dataset {exp.dataset!r} and text_column",
        )
    cpu = device.type == "cpu"
    batches = TrainBatches(train_ds, tok, exp, vocab_size=vocab_size, trim=cpu, slots=not cpu)
    ctx.log(
        f"train: {batches.n_pairs:,} pairs, {batches.n_tokens:,} tokens; eval: {len(eval_data['masked_ids']):,} pairs"
    )
    return batches, eval_ds, eval_data


def pretrain_spec(
    exp, model, tok, device, batches: TrainBatches, eval_ds, eval_data: dict, run_path: Path | None = None
) -> TaskSpec:
    """The loop's view of pretraining: batches, MLM+NSP loss, MLM evaluation (and its masked
    positions' predictions saved under ``run_path``), final save."""

    def evaluate(model, epoch: int) -> dict:
        m = evaluate_mlm(model, eval_data, tok, exp.eval_batch_size, device)
        if exp.pseudo_perplexity_samples:
            seqs = list(eval_ds["input_ids"])[: exp.pseudo_perplexity_samples]
            m["pseudo_perplexity"] = pseudo_perplexity(model, seqs, tok, device)
        if run_path is not None:
            save_epoch(run_path, epoch, mask_examples(model, eval_data, tok, device))
        return m

    def save_final(model, folder):
        model.save_pretrained(str(folder))
        tok.save_pretrained(str(folder))

    cols = ("mlm_perplexity", "mlm_accuracy", "nsp_accuracy") + (
        ("pseudo_perplexity",) if exp.pseudo_perplexity_samples else ()
    )
    return TaskSpec(
        model=model,
        n_batches=batches.n_batches,
        get_batch=batches.get,
        loss=mlm_nsp_forward,  # looked up now, not at import: tests replace it to inject faults
        evaluate=evaluate,
        table_columns=cols,
        eval_split=exp.eval_split,
        save_final=save_final,
        table_title=f"Pretraining of {exp.name}: MLM perplexity on {exp.eval_split}",
        notes=(
            "mlm_perplexity = exp(total masked-token NLL / masked tokens) on a split masked once with a fixed seed; "
            "epoch 0 = before training",
        ),
    )


def run(ctx: TaskContext) -> dict:
    """Resolve the inputs, build the model and the data, then train."""
    device, amp = setup_job(ctx.exp)
    inputs = task_inputs(ctx)
    tok = pretrain_tokenizer(ctx, inputs)
    model = pretraining_model(inputs, tok)
    base = sum(p.numel() for p in model.base_model.parameters())
    ctx.log(f"model: {base:,} parameters (base), vocabulary {model.config.vocab_size:,} tokens")
    batches, eval_ds, eval_data = build_data(ctx, inputs, tok, min(len(tok), model.config.vocab_size), device)
    spec = pretrain_spec(ctx.exp, model, tok, device, batches, eval_ds, eval_data, run_path=ctx.run.path)
    ctx.log(f"device {device}" + (f", autocast {amp}" if amp else ", fp32"))
    return train(ctx, spec, device, amp)


def reevaluate(run, mirror: str = "") -> dict:
    """The final evaluation again, from the run's saved model and the re-built masked split.

    Used by ``lmconsole verify``: the split is loaded, paired and masked exactly as the job
    did it (same seed, same cache key), then scored with :func:`evaluate_mlm` on the same
    device and autocast setting.
    """
    import types

    import torch
    from transformers import AutoTokenizer, BertForPreTraining

    from engine.manifest import EXPERIMENT_KEYS, Settings

    cfg = run.config()
    # a key missing from config.json (an older or hand-edited run) takes its manifest default
    exp = types.SimpleNamespace(**({k: key.default for k, key in EXPERIMENT_KEYS.items()} | cfg))
    folder = run.final_model()
    if folder is None:
        from engine.errors import VerifyError

        raise VerifyError(f"{run.experiment}/{run.run_id} has no saved model to evaluate again")
    messages: list[str] = []
    ctx = types.SimpleNamespace(
        exp=exp,
        manifest=types.SimpleNamespace(settings=Settings(data_mirror=mirror)),
        log=lambda msg, level="info": messages.append(msg),
        emit=lambda event: None,
    )
    device, amp = setup_job(exp)
    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
        model = BertForPreTraining.from_pretrained(str(folder)).to(device).eval()
    except (OSError, ValueError) as exc:  # a damaged or foreign model folder: say so, no traceback
        from engine.errors import VerifyError

        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise VerifyError(f"{run.experiment}/{run.run_id}: its saved model cannot be loaded: {first}") from None
    eval_ds = prepare_split(ctx, tok, exp.eval_split, exp.seed, mask=True)
    eval_data = _eval_data(eval_ds)
    with torch.no_grad(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        return evaluate_mlm(model, eval_data, tok, exp.eval_batch_size, device)
