"""Helpers shared by the training tasks: tokenizers, starting models, batching."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from ..hub import folder_identity, resolve_dataset
from ..models import PRESETS, train_wordpiece


def dataset_key(exp, split: str, mirror: str) -> str:
    """A stable identity of a dataset split: its source folder/id, config, split and files' sizes."""
    source = resolve_dataset(exp.dataset, mirror)
    ident = [source, exp.dataset_config, split]
    if Path(source).is_dir():
        ident.append(folder_identity(Path(source)))
    return hashlib.sha256(json.dumps(ident, default=str).encode()).hexdigest()[:16]


def start_point(ctx):
    """Where the model starts: (kind, path_or_preset). kind: preset | pretrained | scratch-config."""
    exp = ctx.exp
    mirror = ctx.manifest.settings.data_mirror
    if exp.model in PRESETS:
        return "preset", exp.model
    if exp.model_run:
        from ..errors import JobError
        from ..runs import dependency_run

        run = dependency_run(ctx.store, exp.model_run)
        path = run.final_model()
        if path is None:
            raise JobError(f"run {run.experiment}/{run.run_id} finished without a saved model", "re-run it")
        ctx.log(f"starting from {run.experiment}/{run.run_id}")
        ctx.start_model = f"{run.experiment}/{run.run_id}"
        return "pretrained", str(path)
    from ..hub import resolve_model_path

    path = resolve_model_path(exp.model, mirror)
    return ("scratch-config" if exp.init == "scratch" else "pretrained"), path


def get_tokenizer(ctx, kind: str, path: str, corpus_texts=None, corpus_key: str = ""):
    exp = ctx.exp
    if exp.tokenizer == "train" or (exp.tokenizer == "auto" and kind == "preset"):
        if corpus_texts is None:
            from ..errors import JobError

            raise JobError("a trained tokenizer needs a text corpus", "set tokenizer to a Hub id or folder")
        tok = train_wordpiece(corpus_texts(), exp.vocab_size, corpus_key, log=ctx.log)
        ctx.log(f"WordPiece tokenizer: {len(tok):,} tokens (trained on the training split, cached)")
        return tok
    from transformers import AutoTokenizer

    source = path if exp.tokenizer == "auto" else exp.tokenizer
    if exp.tokenizer not in ("auto", "train"):
        from ..hub import resolve_model_path

        source = resolve_model_path(exp.tokenizer, ctx.manifest.settings.data_mirror, what="tokenizer")
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=exp.trust_remote_code)
    except (OSError, ValueError) as exc:
        from ..errors import JobError

        which = "tokenizer" if exp.tokenizer not in ("auto", "train") else "the model's tokenizer"
        raise JobError(
            f"{which} {source!r} cannot be loaded: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__}",
            'set tokenizer to a Hub id or folder with tokenizer files, or "train"',
        ) from None


def length_batches(lengths: list[int], batch_size: int, seed: int, shuffle: bool = True) -> list[list[int]]:
    """Length-bucketed batches: shuffle, sort within mega-batches of 50 batches, shuffle batches.

    Sequences of similar length share a batch, so dynamic padding wastes little,
    while the order stays random from epoch to epoch.
    """
    idx = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(idx)
    mega = batch_size * 50
    batches = []
    for s in range(0, len(idx), mega):
        chunk = sorted(idx[s : s + mega], key=lambda i: lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


def pad_batch(seqs: list[list[int]], pad: int, multiple: int = 8):
    """Right-pad to the longest sequence (rounded up to a multiple of 8 for tensor cores)."""
    import torch

    width = max(len(s) for s in seqs)
    width = -(-width // multiple) * multiple
    out = torch.full((len(seqs), width), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def load_head_model(ctx, head: str, kind: str, src: str, vocab_size: int, **config_overrides):
    """Build or load a model with ``head``; report dropped/added modules as a parameter diff.

    Loading a pretraining checkpoint into a head model makes transformers warn
    about unused ``cls.*`` weights and newly initialised ``classifier.*``: we
    silence that wall and write the same facts as tables (``params_diff_start``:
    checkpoint architecture -> this model; ``params_diff_base``: BertModel -> this
    model) plus the grouped parameter table of the model being trained.
    """
    import dataclasses

    import torch
    import transformers

    from ..events import TableWritten
    from ..models import HEAD_CLASSES, model_class, preset_config
    from ..params import diff_table, grouped_table, param_rows, rows_for

    torch.manual_seed(ctx.exp.seed)
    if kind == "preset":
        config = preset_config(src, vocab_size=vocab_size)
        for k, v in config_overrides.items():
            setattr(config, k, v)
        model = model_class(head, config)(config)
        source_head = None
    else:
        config = transformers.AutoConfig.from_pretrained(
            src, trust_remote_code=ctx.exp.trust_remote_code, **config_overrides
        )
        cls = model_class(head, config)
        if kind == "scratch-config":
            model, source_head = cls(config), None
        else:
            level = transformers.logging.get_verbosity()
            transformers.logging.set_verbosity_error()
            try:
                model, info = cls.from_pretrained(
                    src, config=config, output_loading_info=True, trust_remote_code=ctx.exp.trust_remote_code
                )
            finally:
                transformers.logging.set_verbosity(level)
            arch = (getattr(config, "architectures", None) or ["BertModel"])[0]
            source_head = next((h for h, c in HEAD_CLASSES.items() if c == arch), "base")
            n_missing, n_unexpected = len(info.get("missing_keys", [])), len(info.get("unexpected_keys", []))
            ctx.log(
                f"loaded {arch} weights into a {head} model: {n_unexpected} checkpoint tensors unused, "
                f"{n_missing} new tensors initialised (see table params_diff_start)"
            )
    rows = param_rows(model)
    tables = [grouped_table(rows, head)]
    base_cfg = model.config
    tables.append(
        dataclasses.replace(diff_table(rows_for(base_cfg, "base"), rows, "base", head), name="params_diff_base")
    )
    if source_head is not None:
        t = diff_table(rows_for(base_cfg, source_head), rows, source_head, head)
        tables.append(dataclasses.replace(t, name="params_diff_start"))
    for t in tables:
        ctx.emit(TableWritten(name=t.name, path=str(ctx.writer.write_table(t))))
    return model
