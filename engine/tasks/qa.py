"""``task = "qa"``: extractive question answering (SQuAD v2 semantics).

Features follow HF ``run_qa.py``: question left-stripped, ``truncation="only_second"``,
``max_seq_length`` windows with ``doc_stride`` overlap and offset mappings; the
training label is the [CLS] index when the answer is absent or outside the window.
Decoding (n-best, max answer length, null score = min over features) is
:func:`engine.metrics.qa_postprocess.postprocess_qa`; each question gets a real
no-answer score (null score minus best span score), so ``best_f1`` and its
threshold mean something. BLEU/ROUGE/METEOR are computed over the answerable
questions only (they are undefined for "no answer"), offline, with the variant
named in the results.
"""

from __future__ import annotations

import math

import numpy as np

from engine.errors import JobError
from engine.events import PhaseStarted
from engine.files import atomic_write_json
from engine.hub.resolve import hub_reachable
from engine.metrics.qa_postprocess import chosen_probability, postprocess_qa
from engine.metrics.squad_v2 import squad_v2_score
from engine.metrics.text import answer_text_metrics
from engine.models.source import check_positions
from engine.store.predictions import save_epoch
from engine.tasks.common import EpochBatches, TaskInputs, get_tokenizer, load_head_model, pad_batch, task_inputs
from engine.train.context import TaskContext
from engine.train.loop import TaskSpec, setup_job, train

COLUMNS = ("exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1", "rougeL", "meteor")


def encode(tok, questions, contexts, max_len: int, stride: int):
    return tok(
        [q.lstrip() for q in questions],
        contexts,
        truncation="only_second",
        max_length=max_len,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )


def train_features(tok, ds, max_len: int, stride: int) -> dict:
    """input_ids/token_type_ids + start/end token positions ([CLS] = 0 when no answer in the window)."""
    enc = encode(tok, list(ds["question"]), list(ds["context"]), max_len, stride)
    answers = list(ds["answers"])
    starts, ends = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        ids = enc["input_ids"][i]
        cls_index = ids.index(tok.cls_token_id) if tok.cls_token_id in ids else 0
        seq_ids = enc.sequence_ids(i)
        ans = answers[enc["overflow_to_sample_mapping"][i]]
        if not ans["answer_start"]:
            starts.append(cls_index)
            ends.append(cls_index)
            continue
        start_char = ans["answer_start"][0]
        end_char = start_char + len(ans["text"][0])
        ts = 0
        while seq_ids[ts] != 1:
            ts += 1
        te = len(ids) - 1
        while seq_ids[te] != 1:
            te -= 1
        if not (offsets[ts][0] <= start_char and offsets[te][1] >= end_char):
            starts.append(cls_index)
            ends.append(cls_index)
            continue
        while ts < len(offsets) and offsets[ts][0] <= start_char:
            ts += 1
        while offsets[te][1] >= end_char:
            te -= 1
        starts.append(ts - 1)
        ends.append(te + 1)
    return {"input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"], "start": starts, "end": ends}


def eval_features(tok, ds, max_len: int, stride: int) -> tuple[list[dict], list[list[int]], list[list[int]]]:
    enc = encode(tok, list(ds["question"]), list(ds["context"]), max_len, stride)
    feats = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        seq_ids = enc.sequence_ids(i)
        feats.append(
            {
                "example_index": enc["overflow_to_sample_mapping"][i],
                "offset_mapping": [tuple(o) if seq_ids[k] == 1 else None for k, o in enumerate(offsets)],
            }
        )
    return feats, enc["input_ids"], enc["token_type_ids"]


def hub_text_metrics(preds: dict, refs: dict) -> dict:
    """The `evaluate` Hub modules (only when asked for and reachable)."""
    import evaluate

    qids = [q for q in refs if any(refs[q])]
    p = [preds[q] for q in qids]
    r = [[a for a in refs[q] if a] for q in qids]
    out = {"bleu": evaluate.load("bleu").compute(predictions=p, references=r)["bleu"]}
    out.update(evaluate.load("rouge").compute(predictions=p, references=r))
    out["meteor"] = evaluate.load("meteor").compute(predictions=p, references=r)["meteor"]
    out["n_answerable"] = len(qids)
    out["variants"] = {"all": "evaluate Hub modules (bleu, rouge, meteor with WordNet)"}
    return out


def score(examples, feats, start, end, refs, exp, use_hub: bool):
    """Decode and score; returns (metrics, predictions, na_scores, nbest)."""
    raw, na_scores, nbest = postprocess_qa(
        examples,
        feats,
        start,
        end,
        n_best_size=exp.n_best_size,
        max_answer_length=exp.max_answer_length,
        null_score_diff_threshold=math.inf,
    )
    thresh = exp.null_score_diff_threshold
    preds = {q: ("" if na_scores[q] > thresh else raw[q]) for q in raw}
    metrics = dict(squad_v2_score(raw, refs, na_scores, na_prob_thresh=thresh))
    text = hub_text_metrics(preds, refs) if use_hub else answer_text_metrics(preds, refs)
    metrics.update({k: v for k, v in text.items()})
    n_noans = metrics["NoAns_total"]
    metrics["empty_baseline_f1"] = 100.0 * n_noans / max(metrics["total"], 1)
    # share of questions answered "no answer" (0-1): 0 or 1 flags a degenerate model (engine.metrics.flags)
    metrics["no_answer_rate"] = sum(1 for v in preds.values() if v == "") / max(len(preds), 1)
    return metrics, preds, na_scores, nbest


def load_squad_splits(inputs: TaskInputs):
    """(train, eval) splits of a SQuAD-style dataset, cut to ``max_train_samples`` / ``max_eval_samples``."""
    exp = inputs.exp
    train_ds, eval_ds = inputs.split(exp.train_split), inputs.split(exp.eval_split)
    for col in ("question", "context", "answers", "id"):
        if col not in train_ds.column_names:
            raise JobError(
                f"column {col!r} not in {exp.dataset}: a SQuAD-style dataset needs id, question, context, answers",
                "point dataset at a SQuAD v2 layout",
            )
    if exp.max_train_samples:
        train_ds = train_ds.select(range(min(exp.max_train_samples, len(train_ds))))
    if exp.max_eval_samples:
        eval_ds = eval_ds.select(range(min(exp.max_eval_samples, len(eval_ds))))
    return train_ds, eval_ds


def qa_tokenizer(ctx: TaskContext, inputs: TaskInputs, train_ds):
    """The experiment's tokenizer (a trained one learns from contexts and questions); it must be fast."""

    def corpus():
        return iter([list(train_ds["context"]), list(train_ds["question"])])

    tok = get_tokenizer(ctx, inputs, corpus, inputs.dataset_key(inputs.exp.train_split) + "qa")
    if not getattr(tok, "is_fast", False):
        raise JobError("question answering needs a fast tokenizer (offset mappings)", "use a model with tokenizer.json")
    return tok


def predict_logits(model, eval_ids: list, eval_types: list, pad: int, batch_size: int, device):
    """Start and end logits of every evaluation feature, as [features, longest] float32 arrays (-1e4 beyond a row)."""
    width = max(len(x) for x in eval_ids)
    start = np.full((len(eval_ids), width), -1e4, dtype=np.float32)
    end = np.full((len(eval_ids), width), -1e4, dtype=np.float32)
    order = sorted(range(len(eval_ids)), key=lambda i: len(eval_ids[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        x = pad_batch([eval_ids[j] for j in idx], pad).to(device)
        tt = pad_batch([eval_types[j] for j in idx], 0).to(device)
        out = model(input_ids=x, attention_mask=(x != pad).long(), token_type_ids=tt)
        sl, el = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
        for k, j in enumerate(idx):
            n = len(eval_ids[j])
            start[j, :n], end[j, :n] = sl[k, :n], el[k, :n]
    return start, end


def qa_loss(model, b):
    out = model(
        input_ids=b["input_ids"],
        attention_mask=b["attention_mask"],
        token_type_ids=b["token_type_ids"],
        start_positions=b["start_positions"],
        end_positions=b["end_positions"],
    )
    return out.loss, {}


def epoch_rows(preds: dict, na_scores: dict, nbest: dict) -> list[dict]:
    """One evaluation's answers as saved per epoch (the n-best lists stay out: they are the bulk)."""
    return [
        {
            "id": q,
            "prediction": p,
            "na_score": round(float(na_scores[q]), 6),
            "confidence": round(chosen_probability(nbest.get(q, []), p), 6),
        }
        for q, p in preds.items()
    ]


def qa_spec(ctx: TaskContext, model, tok, device, train_ds, eval_ds, use_hub: bool) -> TaskSpec:
    """The loop's view of QA: features, batches, span loss, SQuAD v2 decoding and scores, predictions."""
    import torch

    exp = ctx.exp
    ctx.emit(PhaseStarted(phase="data", detail="building features"))
    tf = train_features(tok, train_ds, exp.max_seq_length, exp.doc_stride)
    feats, eval_ids, eval_types = eval_features(tok, eval_ds, exp.max_seq_length, exp.doc_stride)
    examples = [{"id": i, "context": c} for i, c in zip(eval_ds["id"], eval_ds["context"])]
    refs = {q: list(a["text"]) for q, a in zip(eval_ds["id"], eval_ds["answers"])}
    lengths = [len(x) for x in tf["input_ids"]]
    ctx.log(
        f"train: {len(train_ds):,} questions -> {len(lengths):,} features; "
        f"eval ({exp.eval_split}): {len(examples):,} questions -> {len(feats):,} features"
    )
    batches = EpochBatches(lengths, exp.batch_size, exp.seed, accumulation=exp.gradient_accumulation_steps)

    def get_batch(epoch, i):
        idx = batches.of(epoch)[i]
        x = pad_batch([tf["input_ids"][j] for j in idx], tok.pad_token_id)
        return {
            "input_ids": x,
            "attention_mask": (x != tok.pad_token_id).long(),
            "token_type_ids": pad_batch([tf["token_type_ids"][j] for j in idx], 0),
            "start_positions": torch.tensor([tf["start"][j] for j in idx]),
            "end_positions": torch.tensor([tf["end"][j] for j in idx]),
            "n_tokens": sum(lengths[j] for j in idx),
            "n_samples": len(idx),
        }

    last: dict = {}

    def evaluate(model, epoch):
        start, end = predict_logits(model, eval_ids, eval_types, tok.pad_token_id, exp.eval_batch_size, device)
        metrics, preds, na_scores, nbest = score(examples, feats, start, end, refs, exp, use_hub)
        last.update(preds=preds, na=na_scores, nbest=nbest)
        save_epoch(ctx.run.path, epoch, epoch_rows(preds, na_scores, nbest))
        return metrics

    def save_final(model, folder):
        model.save_pretrained(str(folder))
        tok.save_pretrained(str(folder))
        atomic_write_json(ctx.run.path / "predictions.json", last.get("preds", {}))
        atomic_write_json(ctx.run.path / "na_scores.json", last.get("na", {}))
        atomic_write_json(ctx.run.path / "nbest.json", last.get("nbest", {}))

    return TaskSpec(
        model=model,
        n_batches=lambda e: len(batches.of(e)),
        get_batch=get_batch,
        loss=qa_loss,
        evaluate=evaluate,
        table_columns=COLUMNS,
        eval_split=exp.eval_split,
        save_final=save_final,
        eval_each_epoch=exp.eval_each_epoch,
        eval_before=exp.eval_each_epoch,
        table_title=f"Fine-tuning {exp.name}: SQuAD v2 metrics on {exp.eval_split}",
        notes=(
            "squad_v2 scores 0-100 with per-question no-answer scores (null - best span); "
            "BLEU/ROUGE/METEOR over answerable questions only, 0-1; sacrebleu 0-100",
        ),
    )


def run(ctx: TaskContext) -> dict:
    """Resolve the inputs, load the splits, tokenizer and model, then train."""
    exp = ctx.exp
    device, amp = setup_job(exp)
    inputs = task_inputs(ctx)
    train_ds, eval_ds = load_squad_splits(inputs)
    use_hub = exp.text_metrics == "hub" and hub_reachable()
    if exp.text_metrics == "hub" and not use_hub:
        ctx.log('text_metrics = "hub" but the Hub is unreachable: computing the offline variants instead', "warning")
    tok = qa_tokenizer(ctx, inputs, train_ds)
    model = load_head_model(ctx, "qa", inputs, len(tok))
    check_positions(exp, model.config)
    return train(ctx, qa_spec(ctx, model, tok, device, train_ds, eval_ds, use_hub), device, amp)
