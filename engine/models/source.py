"""Where a model comes from: one decision, used by jobs, preflight, ``inspect``, ``verify`` and the CLI.

A model is named by a preset (``bert-tiny``: a config, random weights), a finished
run (``run:<experiment>``: its final model), a local folder, or a Hub id found in
a mirror folder, the Hugging Face cache or on the Hub (:func:`engine.hub.resolve.resolve_model_path`).
:func:`model_source` decides which, once; :meth:`ModelSource.config` reads the
config without loading weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.errors import JobError
from engine.hub.resolve import resolve_model_path
from engine.manifest import ALL_TRAIN
from engine.models.presets import PRESETS, preset_config
from engine.store.runs import Run, RunStore
from engine.store.trials import dependency_run


@dataclass(frozen=True)
class ModelSource:
    """A resolved model name: where its files are (or that it is a preset)."""

    origin: str  # "preset" | "run" | "path" (a folder, a mirror or HF cache copy, or a Hub id)
    path: str  # the preset's name, or the folder / Hub id that ``from_pretrained`` reads
    run: Run | None = None  # the finished run whose final model this is (origin "run")

    @property
    def is_preset(self) -> bool:
        return self.origin == "preset"

    @property
    def run_ref(self) -> str:
        """``<experiment>/<run-id>`` of the run it came from ("" otherwise)."""
        return f"{self.run.experiment}/{self.run.run_id}" if self.run is not None else ""

    def config(self, vocab_size: int | None = None, trust_remote_code: bool = False) -> Any:
        """The model's config, no weights (a preset's tiny vocabulary follows ``vocab_size``)."""
        if self.is_preset:
            return preset_config(self.path, vocab_size=vocab_size)
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(self.path, trust_remote_code=trust_remote_code)


def model_source(
    spec: str,
    mirror: str = "",
    store: RunStore | None = None,
    find_run: Callable[[str], Run] | None = None,
) -> ModelSource:
    """Decide where model ``spec`` comes from (no files are read besides existence checks).

    ``run:<ref>`` looks the run up with ``find_run(ref)`` (default: the latest finished
    run of experiment ``ref`` in ``store``) and fails with :class:`JobError` when it has
    no final model. Other names go through :func:`engine.hub.resolve.resolve_model_path`
    (``mirror`` = ``settings.data_mirror``), which raises ``ResolveError``.
    """
    if spec in PRESETS:
        return ModelSource("preset", spec)
    if spec.startswith("run:"):
        if find_run is None:
            if store is None:
                raise ValueError(f"model {spec!r}: a run reference needs the run store")
            run = dependency_run(store, spec[4:])
        else:
            run = find_run(spec[4:])
        folder = run.final_model()
        if folder is None:
            task = run.config().get("task", "")
            trains = task in ALL_TRAIN
            raise JobError(
                f"run {run.experiment}/{run.run_id} has no final model (status {run.status().get('status')})",
                f"run it again: lmconsole run {run.experiment}"
                if trains
                else f"{task or 'such'} runs save no model: name a pretrain, classify or qa run",
            )
        return ModelSource("run", resolve_model_path(str(folder)), run)
    return ModelSource("path", resolve_model_path(spec, mirror))


def experiment_config(ctx) -> Any:
    """The config of a job's model (``ctx.exp.model``), no weights: what preflight and ``inspect`` count."""
    exp = ctx.exp
    source = model_source(exp.model, ctx.manifest.settings.data_mirror, ctx.store)
    return source.config(exp.vocab_size, exp.trust_remote_code)


def check_positions(exp, config) -> None:
    """``max_seq_length`` must fit the model's position embeddings (preflight, and the tasks once loaded)."""
    positions = getattr(config, "max_position_embeddings", None)
    if positions and exp.max_seq_length > positions:
        raise JobError(
            f"max_seq_length = {exp.max_seq_length} exceeds the model's {positions} positions",
            f"set max_seq_length <= {positions} in experiment {exp.name!r}",
        )
