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

from ..errors import JobError
from ..events import PhaseStarted
from ..files import atomic_write_text
from ..hub import load_dataset_split
from ..metrics.classification import classification_metrics, labels_hidden
from ..train_loop import TaskSpec, setup_job, train
from .common import dataset_key, get_tokenizer, length_batches, load_head_model, pad_batch, start_point

COLUMNS = ("accuracy", "precision", "recall", "f1", "macro_f1", "majority_baseline")


def choose_eval_split(ctx, mirror: str):
    """The configured split, or ``validation`` when its labels are hidden. Returns (split, dataset, note)."""
    exp = ctx.exp
    ds = load_dataset_split(exp.dataset, exp.dataset_config, exp.eval_split, mirror)
    labels = list(ds[exp.label_column])
    if labels_hidden(labels):
        if exp.eval_split == "validation":
            raise JobError(
                f"the labels of split 'validation' of {exp.dataset} are hidden (all -1)",
                "set eval_split to a split with labels",
            )
        note = f"labels of split {exp.eval_split!r} are hidden (all -1, as in GLUE): evaluated on 'validation' instead"
        ctx.log(note, "warning")
        return "validation", load_dataset_split(exp.dataset, exp.dataset_config, "validation", mirror), note
    return exp.eval_split, ds, ""


def class_names(ds, column: str, num_labels: int) -> list[str] | None:
    """The names of a ``ClassLabel`` label column (``["negative", "positive"]``), or None (plain integers)."""
    names = getattr(ds.features.get(column), "names", None)
    return [str(n) for n in names] if isinstance(names, list) and len(names) == num_labels else None


def run(ctx):
    import torch

    exp = ctx.exp
    mirror = ctx.manifest.settings.data_mirror
    device, amp = setup_job(exp)

    train_ds = load_dataset_split(exp.dataset, exp.dataset_config, exp.train_split, mirror)
    for col in (exp.text_column, exp.label_column):
        if col not in train_ds.column_names:
            raise JobError(
                f"column {col!r} not in {exp.dataset} (columns: {', '.join(train_ds.column_names)})",
                "set text_column / label_column in the manifest",
            )
    if exp.max_train_samples:
        train_ds = train_ds.select(range(min(exp.max_train_samples, len(train_ds))))
    eval_split, eval_ds, note = choose_eval_split(ctx, mirror)
    if exp.max_eval_samples:
        eval_ds = eval_ds.select(range(min(exp.max_eval_samples, len(eval_ds))))
    train_labels = [int(x) for x in train_ds[exp.label_column]]
    if labels_hidden(train_labels) or min(train_labels) < 0:
        raise JobError(f"training split {exp.train_split!r} has hidden or negative labels", "train on a labelled split")
    num_labels = max(max(train_labels), max(int(x) for x in eval_ds[exp.label_column])) + 1
    names = class_names(train_ds, exp.label_column, num_labels)

    kind, src = start_point(ctx)
    tok = get_tokenizer(
        ctx,
        kind,
        src,
        lambda: iter([list(train_ds[exp.text_column])]),
        dataset_key(exp, exp.train_split, mirror) + exp.text_column,
    )
    model = load_head_model(ctx, "classification", kind, src, len(tok), num_labels=num_labels)

    ctx.emit(PhaseStarted(phase="data", detail="tokenising"))
    enc_train = tok(list(train_ds[exp.text_column]), truncation=True, max_length=exp.max_seq_length)["input_ids"]
    eval_texts = list(eval_ds[exp.text_column])
    eval_labels = [int(x) for x in eval_ds[exp.label_column]]
    enc_eval = tok(eval_texts, truncation=True, max_length=exp.max_seq_length)["input_ids"]
    lengths = [len(x) for x in enc_train]
    ctx.log(f"train: {len(enc_train):,} rows; eval ({eval_split}): {len(enc_eval):,} rows; {num_labels} labels")
    batches_by_epoch: dict = {}

    def epoch_batches(epoch):
        if epoch not in batches_by_epoch:
            batches_by_epoch.clear()
            batches_by_epoch[epoch] = length_batches(lengths, exp.batch_size, exp.seed * 1000 + epoch)
        return batches_by_epoch[epoch]

    def get_batch(epoch, i):
        idx = epoch_batches(epoch)[i]
        x = pad_batch([enc_train[j] for j in idx], tok.pad_token_id)
        return {
            "input_ids": x,
            "attention_mask": (x != tok.pad_token_id).long(),
            "labels": torch.tensor([train_labels[j] for j in idx]),
            "n_tokens": sum(lengths[j] for j in idx),
            "n_samples": len(idx),
        }

    def loss(model, batch):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        return out.loss, {}

    last_preds: dict = {}

    def evaluate(model, epoch):
        preds = [0] * len(enc_eval)
        probs = [0.0] * len(enc_eval)
        order = sorted(range(len(enc_eval)), key=lambda i: len(enc_eval[i]))
        for s in range(0, len(order), exp.eval_batch_size):
            idx = order[s : s + exp.eval_batch_size]
            x = pad_batch([enc_eval[j] for j in idx], tok.pad_token_id).to(device)
            logits = model(input_ids=x, attention_mask=(x != tok.pad_token_id).long()).logits.float()
            p = logits.softmax(-1)
            for k, j in enumerate(idx):
                preds[j] = int(p[k].argmax())
                probs[j] = float(p[k].max())
        m = classification_metrics(eval_labels, preds, positive=1, baseline_labels=train_labels, num_labels=num_labels)
        m["eval_split"] = eval_split
        if names:  # the label column's ClassLabel names (GLUE sst2: negative, positive), for labelled matrices
            m["class_names"] = names
        if note:
            m["note"] = note
        last_preds["preds"], last_preds["probs"] = preds, probs
        return m

    def save_final(model, folder):
        model.save_pretrained(str(folder))
        tok.save_pretrained(str(folder))
        rows = [
            json.dumps({"index": i, "text": t, "label": y, "prediction": p, "confidence": round(c, 6)})
            for i, (t, y, p, c) in enumerate(zip(eval_texts, eval_labels, last_preds["preds"], last_preds["probs"]))
        ]
        atomic_write_text(ctx.run.path / "predictions.jsonl", "\n".join(rows) + "\n")

    spec = TaskSpec(
        model=model,
        n_batches=lambda e: len(epoch_batches(e)),
        get_batch=get_batch,
        loss=loss,
        evaluate=evaluate,
        table_columns=COLUMNS,
        eval_split=eval_split,
        save_final=save_final,
        eval_each_epoch=exp.eval_each_epoch,
        table_title=f"Fine-tuning {exp.name}: classification metrics on {eval_split}",
        notes=tuple(
            x
            for x in (
                note,
                "precision/recall/f1 for label 1; majority_baseline = accuracy of always predicting the most frequent training label",
            )
            if x
        ),
    )
    result = train(ctx, spec, device, amp)
    result["eval_split"] = eval_split
    if note:
        result["note"] = note
    return result
