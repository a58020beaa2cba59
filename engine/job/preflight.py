"""Checks run before a job starts, so it fails in seconds, not after tokenising for an hour.

* the runs directory is writable and has room for a checkpoint (estimated from
  the parameter count: fp32 weights + two AdamW moments, twice, for the rolling
  checkpoints, plus the final model);
* the dataset and the starting model can be resolved (Hub reachable, cached,
  mirrored, local or embedded);
* settings agree with the model (``max_seq_length`` within its positions, QA
  stride shorter than the window);
* the run's ``checkpoints`` is a folder, if it exists (a file there would make a
  resume start over and the first checkpoint fail after the training it cost).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from engine.errors import JobError, ResolveError
from engine.hub.resolve import resolve_dataset
from engine.manifest import ALL_TRAIN, PRESETS
from engine.models.source import check_positions, experiment_config
from engine.train.context import TaskContext

BYTES_PER_PARAM_CHECKPOINT = 4 * 3  # weights + Adam m + v, fp32


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".preflight-"):
            pass
    except OSError as exc:
        raise JobError(
            f"cannot write to {folder}: {exc.strerror or exc}",
            "fix its permissions or set settings.runs_dir to a writable folder",
        ) from None


def check_space(folder: Path, n_params: int, free_bytes: int | None = None) -> int:
    need = n_params * BYTES_PER_PARAM_CHECKPOINT * 2 + n_params * 4
    free = shutil.disk_usage(folder).free if free_bytes is None else free_bytes
    if free < need:
        raise JobError(
            f"not enough disk space in {folder}: {free / 2**30:.2f} GiB free, "
            f"about {need / 2**30:.2f} GiB needed for checkpoints",
            "free some space or point settings.runs_dir at a bigger disk",
        )
    return need


def check_checkpoints_folder(folder: Path) -> None:
    """``folder`` (a run's ``checkpoints``) is missing or a real folder; a JobError naming it otherwise."""
    folder = Path(folder)
    if not folder.is_symlink() and (folder.is_dir() or not folder.exists()):
        return
    kind = "a symbolic link" if folder.is_symlink() else "a file, not a folder"
    raise JobError(
        f"{folder} is {kind}: checkpoints can be neither saved nor resumed from it",
        "move it out of the run folder (it holds no checkpoint lmconsole wrote), then run again",
    )


def run_preflight(ctx: TaskContext) -> dict:
    """Raises :class:`JobError` / :class:`ResolveError` with a clear message; returns facts."""
    exp = ctx.exp
    check_writable(ctx.run.path)
    if exp.task in ALL_TRAIN:
        check_checkpoints_folder(ctx.run.checkpoints)
    try:
        config = experiment_config(ctx)
    except ResolveError:
        raise
    except (OSError, ValueError) as exc:
        raise JobError(
            f"model {exp.model!r} cannot be loaded: {str(exc).splitlines()[0]}",
            "check the model id or folder (a folder needs config.json)",
        ) from None
    from engine.models.params import rows_for

    n_params = sum(r.count for r in rows_for(config, "base"))
    need = check_space(ctx.run.path, n_params)
    trains_vocab = exp.tokenizer == "train" or (exp.tokenizer == "auto" and exp.model in PRESETS)
    if exp.task in ALL_TRAIN:
        assert exp.dataset is not None  # the manifest requires it of a training task
        resolve_dataset(exp.dataset, ctx.manifest.settings.data_mirror)
        check_positions(exp, config)
        if exp.task == "qa" and exp.doc_stride >= exp.max_seq_length - 16:
            raise JobError(
                f"doc_stride = {exp.doc_stride} leaves no room in max_seq_length = {exp.max_seq_length}",
                "use a doc_stride well below max_seq_length (e.g. 128 for 384)",
            )
    return {"parameters": n_params, "checkpoint_bytes": need, "vocabulary_trained": trains_vocab}


def preflight_line(facts: dict, vocab_size: int) -> str:
    """The log line of a passed preflight; a vocabulary still to be trained makes the count an upper bound."""
    count = f"{facts['parameters']:,} parameters (base)"
    if facts.get("vocabulary_trained"):
        count = (
            f"at most {count}: the WordPiece vocabulary is trained next, up to vocab_size = {vocab_size:,} "
            "tokens (fewer on a small corpus)"
        )
    return f"preflight ok: {count}, about {facts['checkpoint_bytes'] / 2**20:,.0f} MiB per checkpoint set"
