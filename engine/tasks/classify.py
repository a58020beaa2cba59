"""``task = "classify"``: sequence classification (SST-2 and any text/label dataset).

A split whose labels are hidden (all -1, as GLUE's test) is never scored: the
job evaluates on ``validation`` instead and says so in its results, its tables
and its log. Every evaluation reports accuracy, precision/recall/F1 for the
positive class (label 1), macro-F1, the confusion matrix and the majority-class
baseline (majority of the training labels), so a degenerate model that always
answers "positive" is obvious at a glance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from engine.errors import JobError
from engine.events import PhaseStarted
from engine.files import atomic_write_text
from engine.metrics.classification import classification_metrics, labels_hidden
from engine.store.predictions import save_epoch
from engine.tasks.common import EpochBatches, TaskInputs, get_tokenizer, load_head_model, pad_batch, task_inputs
from engine.train.context import TaskContext
from engine.train.loop import TaskSpec, setup_job, train

COLUMNS = ("accuracy", "precision", "recall", "f1", "macro_f1", "majority_baseline")


def choose_eval_split(ctx: TaskContext, inputs: TaskInputs):
    """The configured split, or ``validation`` when its labels are hidden. Returns (split, dataset, note)."""
    exp = inputs.exp
    ds = inputs.split(exp.eval_split)
    labels = list(ds[exp.label_column])
    if labels_hidden(labels):
        if exp.eval_split == "validation":
            raise JobError(
                f"the labels of split 'validation' of {exp.dataset} are hidden (all -1)",
                "set eval_split to a split with labels",
            )
        note = f"labels of split {exp.eval_split!r} are hidden (all -1, as in GLUE): evaluated on 'validation' instead"
        ctx.log(note, "warning")
        return "validation", inputs.split("validation"), note
    return exp.eval_split, ds, ""


def class_names(ds, column: str, num_labels: int) -> list[str] | None:
    """The names of a ``ClassLabel`` label column (``["negative", "positive"]``), or None (plain integers)."""
    names = getattr(ds.features.get(column), "names", None)
    return [str(n) for n in names] if isinstance(names, list) and len(names) == num_labels else None


@dataclass
class Splits:
    """The labelled training and evaluation rows (evaluation on ``validation`` when labels are hidden)."""

    train: Any
    eval: Any
    eval_split: str
    note: str  # why the evaluation split differs from the configured one ("" when it does not)
    train_labels: list[int]
    eval_labels: list[int]
    num_labels: int
    names: list[str] | None  # the label column's ClassLabel names


def load_splits(ctx: TaskContext, inputs: TaskInputs) -> Splits:
    exp = inputs.exp
    train_ds = inputs.split(exp.train_split)
    for col in (exp.text_column, exp.label_column):
        if col not in train_ds.column_names:
            raise JobError(
                f"column {col!r} not in {exp.dataset} (columns: {', '.join(train_ds.column_names)})",
                "set text_column / label_column in the manifest",
            )
    if exp.max_train_samples:
        train_ds = train_ds.select(range(min(exp.max_train_samples, len(train_ds))))
    eval_split, eval_ds, note = choose_eval_split(ctx, inputs)
    if exp.max_eval_samples:
        eval_ds = eval_ds.select(range(min(exp.max_eval_samples, len(eval_ds))))
    train_labels = [int(x) for x in train_ds[exp.label_column]]
    if labels_hidden(train_labels) or min(train_labels) < 0:
        raise JobError(f"training split {exp.train_split!r} has hidden or negative labels", "train on a labelled split")
    eval_labels = [int(x) for x in eval_ds[exp.label_column]]
    num_labels = max(max(train_labels), max(eval_labels)) + 1
    names = class_names(train_ds, exp.label_column, num_labels)
    return Splits(train_ds, eval_ds, eval_split, note, train_labels, eval_labels, num_labels, names)


def classify_spec(ctx: TaskContext, model, tok, device, data: Splits) -> TaskSpec:
    """The loop's view of classification: length-bucketed batches, the head's loss, metrics, predictions."""
    import torch

    exp = ctx.exp
    ctx.emit(PhaseStarted(phase="data", detail="tokenising"))
    enc_train = tok(list(data.train[exp.text_column]), truncation=True, max_length=exp.max_seq_length)["input_ids"]
    eval_texts = list(data.eval[exp.text_column])
    enc_eval = tok(eval_texts, truncation=True, max_length=exp.max_seq_length)["input_ids"]
    lengths = [len(x) for x in enc_train]
    ctx.log(
        f"train: {len(enc_train):,} rows; eval ({data.eval_split}): {len(enc_eval):,} rows; {data.num_labels} labels"
    )
    batches = EpochBatches(lengths, exp.batch_size, exp.seed, accumulation=exp.gradient_accumulation_steps)

    def get_batch(epoch, i):
        idx = batches.of(epoch)[i]
        x = pad_batch([enc_train[j] for j in idx], tok.pad_token_id)
        return {
            "input_ids": x,
            "attention_mask": (x != tok.pad_token_id).long(),
            "labels": torch.tensor([data.train_labels[j] for j in idx]),
            "n_tokens": sum(lengths[j] for j in idx),
            "n_samples": len(idx),
        }

    def loss(model, batch):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        return out.loss, {}

    last_preds: dict = {}

    def evaluate(model, epoch):
        preds, probs = predict(model, enc_eval, tok.pad_token_id, exp.eval_batch_size, device)
        m = classification_metrics(
            data.eval_labels, preds, positive=1, baseline_labels=data.train_labels, num_labels=data.num_labels
        )
        m["eval_split"] = data.eval_split
        if data.names:  # the label column's ClassLabel names (GLUE sst2: negative, positive), for labelled matrices
            m["class_names"] = data.names
        if data.note:
            m["note"] = data.note
        last_preds["preds"], last_preds["probs"] = preds, probs
        save_epoch(ctx.run.path, epoch, prediction_rows(eval_texts, data.eval_labels, preds, probs))
        return m

    def save_final(model, folder):
        model.save_pretrained(str(folder))
        tok.save_pretrained(str(folder))
        rows = prediction_rows(eval_texts, data.eval_labels, last_preds["preds"], last_preds["probs"])
        atomic_write_text(ctx.run.path / "predictions.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")

    notes = (
        data.note,
        "precision/recall/f1 for label 1; "
        "majority_baseline = accuracy of always predicting the most frequent training label",
    )
    return TaskSpec(
        model=model,
        n_batches=lambda e: len(batches.of(e)),
        get_batch=get_batch,
        loss=loss,
        evaluate=evaluate,
        table_columns=COLUMNS,
        eval_split=data.eval_split,
        save_final=save_final,
        eval_each_epoch=exp.eval_each_epoch,
        table_title=f"Fine-tuning {exp.name}: classification metrics on {data.eval_split}",
        notes=tuple(x for x in notes if x),
    )


def prediction_rows(texts: list[str], labels: list[int], preds: list[int], probs: list[float]) -> list[dict]:
    """One saved line per evaluation row: what the Examples tab, ``examples`` and ``verify`` read."""
    return [
        {"index": i, "text": t, "label": y, "prediction": p, "confidence": round(c, 6)}
        for i, (t, y, p, c) in enumerate(zip(texts, labels, preds, probs))
    ]


def class_probabilities(model, enc: list[list[int]], pad: int, batch_size: int, device) -> list[list[float]]:
    """Every class's probability per row (softmax of the logits), in batches of similar length.

    The one forward pass of classification: evaluation and ``lmconsole predict`` both use it, so
    a sentence gets the same answer from both when batched the same way.
    """
    probs: list[list[float]] = [[] for _ in enc]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        x = pad_batch([enc[j] for j in idx], pad).to(device)
        logits = model(input_ids=x, attention_mask=(x != pad).long()).logits.float()
        p = logits.softmax(-1).cpu().tolist()
        for k, j in enumerate(idx):
            probs[j] = p[k]
    return probs


def predict(model, enc_eval: list[list[int]], pad: int, batch_size: int, device) -> tuple[list[int], list[float]]:
    """Predicted label (the first most probable class) and its probability per row."""
    probs = class_probabilities(model, enc_eval, pad, batch_size, device)
    preds = [max(range(len(p)), key=p.__getitem__) for p in probs]
    return preds, [p[k] for p, k in zip(probs, preds)]


def run(ctx: TaskContext) -> dict:
    """Resolve the inputs, load the splits, tokenizer and model, then train."""
    exp = ctx.exp
    device, amp = setup_job(exp)
    inputs = task_inputs(ctx)
    data = load_splits(ctx, inputs)
    corpus_key = inputs.dataset_key(exp.train_split) + exp.text_column
    tok = get_tokenizer(ctx, inputs, lambda: iter([list(data.train[exp.text_column])]), corpus_key)
    model = load_head_model(ctx, "classification", inputs, len(tok), num_labels=data.num_labels)
    result = train(ctx, classify_spec(ctx, model, tok, device, data), device, amp)
    result["eval_split"] = data.eval_split
    if data.note:
        result["note"] = data.note
    return result
