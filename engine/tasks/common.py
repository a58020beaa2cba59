"""Helpers shared by the training tasks: tokenizers, starting models, batching."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.errors import JobError
from engine.files import atomic_write_json, read_json
from engine.hub.resolve import folder_identity, load_dataset_split, resolve_dataset, resolve_model_path
from engine.models.presets import train_wordpiece
from engine.models.source import ModelSource, model_source
from engine.train.context import TaskContext


@dataclass(frozen=True)
class TaskInputs:
    """A training task's inputs, resolved once: experiment, data mirror, where the model starts.

    ``kind`` says how the model is built: ``preset`` (a config, random weights),
    ``pretrained`` (weights from ``path``) or ``scratch-config`` (``path``'s config,
    random weights: ``init = "scratch"``). ``source`` is None where only data is needed.
    """

    exp: Any
    mirror: str
    source: ModelSource | None = None
    kind: str = ""

    @property
    def path(self) -> str:
        """The preset's name, or the folder / Hub id the model (and by default the tokenizer) loads from."""
        return self.source.path if self.source is not None else ""

    def split(self, name: str):
        """One split of the experiment's dataset (``datasets.Dataset``)."""
        return load_dataset_split(self.exp.dataset, self.exp.dataset_config, name, self.mirror)

    def dataset_key(self, split: str) -> str:
        """A stable identity of a dataset split: its source folder/id, config, split and files' sizes."""
        exp = self.exp
        source = resolve_dataset(exp.dataset, self.mirror)
        ident = [source, exp.dataset_config, split]
        if Path(source).is_dir():
            ident.append(folder_identity(Path(source)))
        return hashlib.sha256(json.dumps(ident, default=str).encode()).hexdigest()[:16]


def data_inputs(ctx: TaskContext) -> TaskInputs:
    """The inputs of a job that only reads data (no model source): experiment and data mirror."""
    return TaskInputs(exp=ctx.exp, mirror=ctx.manifest.settings.data_mirror)


def task_inputs(ctx: TaskContext) -> TaskInputs:
    """Resolve the job's inputs once: mirror and where the model starts (:func:`engine.models.source.model_source`)."""
    inputs = data_inputs(ctx)
    source = model_source(ctx.exp.model, inputs.mirror, ctx.store)
    if source.run is not None:
        ctx.log(f"starting from {source.run_ref}")
        ctx.start_model = source.run_ref
    if source.is_preset:
        kind = "preset"
    else:
        kind = "scratch-config" if ctx.exp.init == "scratch" else "pretrained"
    return replace(inputs, source=source, kind=kind)


def get_tokenizer(ctx: TaskContext, inputs: TaskInputs, corpus_texts=None, corpus_key: str = ""):
    """The experiment's tokenizer: the model's, a named one, or WordPiece trained on ``corpus_texts()`` (cached).

    Its SHA-256 (of the fast tokenizer's ``tokenizer.json`` text) goes into the run's
    ``environment.json`` as ``tokenizer_sha256``: two runs with equal hashes split text alike.
    """
    tok = _get_tokenizer(ctx, inputs, corpus_texts, corpus_key)
    record_tokenizer(ctx, tok)
    return tok


def record_tokenizer(ctx, tok) -> None:
    """Add the tokenizer's hash to the run's ``environment.json`` (contexts without a run directory: skipped)."""
    backend = getattr(tok, "backend_tokenizer", None)
    run = getattr(ctx, "run", None)
    if backend is None or run is None:
        return
    path = run.path / "environment.json"
    env = read_json(path, None)
    if isinstance(env, dict):
        env["tokenizer_sha256"] = hashlib.sha256(backend.to_str().encode()).hexdigest()
        atomic_write_json(path, env)


def _get_tokenizer(ctx: TaskContext, inputs: TaskInputs, corpus_texts=None, corpus_key: str = ""):
    """:func:`get_tokenizer` before its hash is recorded."""
    exp = inputs.exp
    if exp.tokenizer == "train" or (exp.tokenizer == "auto" and inputs.kind == "preset"):
        if corpus_texts is None:
            raise JobError("a trained tokenizer needs a text corpus", "set tokenizer to a Hub id or folder")
        tok = train_wordpiece(corpus_texts(), exp.vocab_size, corpus_key, log=ctx.log)
        ctx.log(f"WordPiece tokenizer: {len(tok):,} tokens (trained on the training split, cached)")
        return tok
    from transformers import AutoTokenizer

    named = exp.tokenizer != "auto"
    source = resolve_model_path(exp.tokenizer, inputs.mirror, what="tokenizer") if named else inputs.path
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=exp.trust_remote_code)
    except (OSError, ValueError) as exc:
        which = "tokenizer" if named else "the model's tokenizer"
        raise JobError(
            f"{which} {source!r} cannot be loaded: {first_line(exc, 200)}",
            'set tokenizer to a Hub id or folder with tokenizer files, or "train"',
        ) from None


def first_line(exc: BaseException, limit: int) -> str:
    """An exception's first line (at most ``limit`` characters), or its type's name when it has no text."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def length_batches(
    lengths: list[int], batch_size: int, seed: int, shuffle: bool = True, ranks: int = 1
) -> list[list[int]]:
    """Length-bucketed batches: shuffle, sort within mega-batches of 50 batches, shuffle batches.

    Sequences of similar length share a batch, so dynamic padding wastes little,
    while the order stays random from epoch to epoch. With ``ranks`` > 1 (a DDP job,
    whose rank r takes batches r, r + ranks, ...) the batches are shuffled in runs of
    ``ranks`` neighbours of one mega-batch, so the ranks of one step get batches of
    similar length and no all-reduce waits for one long batch (with ``ranks = 1``
    the order is the same as before).
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
    # Whole runs of `ranks` batches are shuffled; a last, shorter run stays last (the loop leaves
    # those batches out: every rank takes the same number), so every step's batches are one run.
    whole = len(batches) - len(batches) % ranks
    groups = [batches[j : j + ranks] for j in range(0, whole, ranks)]
    if shuffle:
        rng.shuffle(groups)
    return [b for group in groups for b in group] + batches[whole:]


def check_epoch_fits(n_examples: int, batch_size: int, accumulation: int, ranks: int = 1) -> None:
    """A JobError naming the key when one optimizer step would take more than an epoch: a batch larger
    than the training set, or more accumulated batches than an epoch has (each rank's share in a DDP
    job). Either way training silently became one step per epoch over the whole set."""
    if not n_examples:
        return  # an empty training set has its own message where the data is built
    if batch_size * ranks > n_examples:
        share = f" across {ranks} processes" if ranks > 1 else ""
        raise JobError(
            f"batch_size = {batch_size}{share} is larger than the training set ({n_examples:,} examples)",
            f"use batch_size <= {max(1, n_examples // ranks)} (or train on more data)",
        )
    per_rank = math.ceil(n_examples / batch_size) // ranks
    if accumulation > per_rank:
        raise JobError(
            f"gradient_accumulation_steps = {accumulation} is more than the {per_rank:,} batches of an epoch "
            f"({n_examples:,} examples, batch_size = {batch_size})",
            f"use gradient_accumulation_steps <= {per_rank} (or a smaller batch_size)",
        )


class EpochBatches:
    """The length-bucketed batches of one epoch (:func:`length_batches`, seed ``seed * 1000 + epoch``), the last
    epoch's kept: the loop asks for every batch of an epoch in turn. ``ranks``: the processes of a DDP job
    (default: torchrun's ``WORLD_SIZE``), whose batches of one step come from one length bucket."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, ranks: int | None = None, accumulation: int = 1):
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.ranks = ranks if ranks is not None else max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
        check_epoch_fits(len(lengths), batch_size, accumulation, self.ranks)
        self._epoch, self._batches = -1, []  # type: tuple[int, list[list[int]]]

    def of(self, epoch: int) -> list[list[int]]:
        if epoch != self._epoch:
            self._batches = length_batches(self.lengths, self.batch_size, self.seed * 1000 + epoch, ranks=self.ranks)
            self._epoch = epoch
        return self._batches


def pad_batch(seqs: list[list[int]], pad: int, multiple: int = 8):
    """Right-pad to the longest sequence (rounded up to a multiple of 8 for tensor cores)."""
    import torch

    width = max(len(s) for s in seqs)
    width = -(-width // multiple) * multiple
    out = torch.full((len(seqs), width), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def load_head_model(ctx: TaskContext, head: str, inputs: TaskInputs, vocab_size: int, **config_overrides):
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

    from engine.events import TableWritten
    from engine.models.params import diff_table, grouped_table, param_rows, rows_for
    from engine.models.presets import HEAD_CLASSES, model_class, preset_config

    kind, src = inputs.kind, inputs.path
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
                # fp32 master weights whatever dtype the checkpoint stores (transformers 5 defaults to
                # dtype="auto": a half-precision checkpoint would train in half precision); autocast
                # gives the mixed precision.
                model, info = cls.from_pretrained(
                    src,
                    config=config,
                    output_loading_info=True,
                    trust_remote_code=ctx.exp.trust_remote_code,
                    dtype=torch.float32,
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
