"""How much memory one training job needs per device, before it starts.

:func:`estimate_memory` is a pure function of a model's shape (:class:`ModelShape`) and the
experiment's manifest values; :func:`experiment_shape` finds the shape without loading any
weights or importing torch (a preset, a run's or a folder's ``config.json``). ``lmconsole
check``, the console, the run's ``config.json`` and the scheduler's placement by memory use it.

The terms, in bytes per device (P parameters, b ``batch_size``, s ``max_seq_length``, h hidden
size, a attention heads, L layers, V vocabulary, e bytes per activation: 2 under bf16/fp16
autocast, 4 in fp32):

* weights 4P (fp32 master weights), gradients 4P, AdamW moments 8P; under autocast the
  16-bit copies of the weights that autocast caches during a forward, 2P; under a launcher
  with more than one process, DDP's gradient buckets, 4P;
* activations kept for the backward pass, per layer ``s·b·h·(16e + 2)`` (Korthikanti et al.
  2022, "Reducing Activation Recomputation in Large Transformer Models": 34 bytes in 16-bit,
  i.e. 16 tensors of s·b·h elements and two 1-byte dropout masks; under autocast the two
  LayerNorm inputs stay fp32, +4) plus, where attention is not a fused kernel (CPU),
  the attention probabilities ``a·s²·b·(2e + 1)``; the embeddings' LayerNorm input and
  dropout (fp32, 5 bytes per element of s·b·h) and the attention mask (b·s², 4 bytes); and
  the backward pass's gradient buffers of one layer at its peak, the larger of two of the
  attention probabilities (``2·a·s²·b·e``, unfused only) and two of the MLP's 4h-wide
  intermediates (``8·s·b·h·e``);
* the MLM head (pretraining): vocabulary logits at the M masked positions only
  (M = ``max_predictions_per_seq``, else round(``mlm_probability`` · s)), b·M·V elements
  kept as logits, their fp32 copy, the log-softmax and its gradient;
* on a GPU, the CUDA context (about 0.5 GiB, outside ``torch.cuda.max_memory_allocated``) and
  the caching allocator's slack (10 % of the rest): :attr:`MemoryEstimate.total` includes them,
  :attr:`MemoryEstimate.allocated` does not (it is what ``max_memory_allocated`` measures).

``gradient_accumulation_steps`` does not change the peak (activations are per micro-batch;
gradients are counted whole either way). The engine does not offer gradient checkpointing,
so activations of every layer are counted. The estimate takes the longest sequences
(``max_seq_length``); batches of shorter sequences need less. BENCHMARKS.md ("Memory
estimate") compares it with measured peaks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

GIB = 2**30
CUDA_CONTEXT = 0.5 * GIB  # the CUDA context and cuBLAS workspace: not in max_memory_allocated
ALLOCATOR_SLACK = 0.10  # the caching allocator's fragmentation and rounding, over what is allocated

# What a task trains (the head of its model).
TASK_HEADS = {"pretrain": "pretraining", "classify": "classification", "qa": "qa"}


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a BERT config that decide its size (``BertConfig()`` defaults = bert-base-uncased)."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    vocab_size: int = 30522
    max_position_embeddings: int = 512
    type_vocab_size: int = 2

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelShape | None:
        """The shape of a ``config.json``'s values; None when it is not a BERT-like encoder (a size is missing).
        Positions and token types default to BERT's (512, 2) when the config leaves them out."""
        values = {}
        for f in fields(cls):
            v = config.get(f.name)
            if v is None and f.name in ("max_position_embeddings", "type_vocab_size"):
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                return None
            values[f.name] = v
        return cls(**values)


def parameter_count(shape: ModelShape, head: str, num_labels: int = 2) -> int:
    """Trainable parameters of a BERT model with ``head`` (tied decoder weights counted once).

    ``base`` 109,482,240 at bert-base; ``pretraining`` 110,106,428; ``mlm`` 109,514,298;
    ``classification`` (2 labels) 109,483,778; ``qa`` 108,893,186.
    """
    h, i, v = shape.hidden_size, shape.intermediate_size, shape.vocab_size
    embeddings = (v + shape.max_position_embeddings + shape.type_vocab_size) * h + 2 * h
    # q, k, v, output projections (4 h² + 4 h), two LayerNorms (4 h), the MLP (2 h·i + i + h)
    layer = 4 * h * h + 2 * h * i + 9 * h + i
    encoder = embeddings + shape.num_hidden_layers * layer
    pooler = h * h + h
    mlm_head = h * h + h + 2 * h + v  # transform dense + LayerNorm; the decoder's weight is the word embeddings
    return {
        "base": encoder + pooler,
        "pretraining": encoder + pooler + mlm_head + 2 * h + 2,
        "mlm": encoder + mlm_head,
        "classification": encoder + pooler + h * num_labels + num_labels,
        "qa": encoder + 2 * h + 2,
    }[head]


@dataclass(frozen=True)
class MemoryEstimate:
    """One training job's memory per device, in bytes, by term (see the module doc)."""

    parameters: int
    device: str  # "cuda" or "cpu": where the figures apply
    precision: str  # "bf16", "fp16" or "fp32": the activations' precision assumed
    weights: float
    gradients: float
    optimizer: float
    autocast_copies: float
    ddp_buckets: float
    activations: float
    head: float
    overhead: float  # CUDA context and allocator slack (0 on a CPU)

    @property
    def allocated(self) -> float:
        """Bytes held by tensors at the peak: what ``torch.cuda.max_memory_allocated`` measures."""
        return (
            self.weights
            + self.gradients
            + self.optimizer
            + self.autocast_copies
            + self.ddp_buckets
            + self.activations
            + self.head
        )

    @property
    def total(self) -> float:
        """Bytes the job takes from its device, overhead included: what placement compares with free memory."""
        return self.allocated + self.overhead

    @property
    def total_gib(self) -> float:
        return self.total / GIB

    def terms(self) -> list[tuple[str, float]]:
        """(name, GiB) of each nonzero term, in the order of the module doc."""
        named = [
            ("weights", self.weights),
            ("gradients", self.gradients),
            ("AdamW", self.optimizer),
            ("autocast copies", self.autocast_copies),
            ("DDP buckets", self.ddp_buckets),
            ("activations", self.activations),
            ("MLM logits", self.head),
            ("CUDA context + slack", self.overhead),
        ]
        return [(k, v / GIB) for k, v in named if v > 0]

    def line(self) -> str:
        """``5.12 GiB per GPU (bf16: weights 418 MiB, ...)``: for ``check``, the console and messages."""
        where = "per GPU" if self.device == "cuda" else "of host RAM"
        return f"{size_text(self.total)} {where} ({self.breakdown()})"

    def breakdown(self) -> str:
        """``bf16: weights 418 MiB, gradients 418 MiB, ...``: the precision and each term."""
        return f"{self.precision}: " + ", ".join(f"{k} {size_text(v * GIB)}" for k, v in self.terms())

    def to_dict(self) -> dict[str, Any]:
        """The run's ``config.json`` key ``memory_estimate``: GiB per term, rounded to MiB."""
        out: dict[str, Any] = {"device": self.device, "precision": self.precision, "parameters": self.parameters}
        out |= {f"{k.replace(' ', '_').replace('+', 'and')}_gib": round(v, 3) for k, v in self.terms()}
        out |= {"allocated_gib": round(self.allocated / GIB, 3), "total_gib": round(self.total_gib, 3)}
        return out


def size_text(n: float) -> str:
    """Bytes as ``1.23 GiB`` from 1 GiB on, else ``418 MiB`` (``0.4 MiB`` below 10 MiB)."""
    if n >= GIB:
        return f"{n / GIB:.2f} GiB"
    return f"{n / 2**20:.0f} MiB" if n >= 10 * 2**20 else f"{n / 2**20:.1f} MiB"


def activation_bytes(precision: str) -> int:
    """Bytes per activation element: 2 under bf16/fp16 autocast, 4 in fp32."""
    return 2 if precision in ("bf16", "fp16") else 4


def job_precision(exp, on_gpu: bool) -> str:
    """The precision a job of ``exp`` trains in: ``auto`` is bf16 on a GPU (Ampere or newer assumed), fp32 on a CPU."""
    if exp.precision == "auto":
        return "bf16" if on_gpu else "fp32"
    return str(exp.precision)


def mlm_predictions(exp) -> int:
    """Masked positions per sequence whose vocabulary logits are computed (as the pretraining task)."""
    return int(exp.max_predictions_per_seq or max(1, round(exp.mlm_probability * exp.max_seq_length)))


def estimate_memory(exp, shape: ModelShape, on_gpu: bool, num_labels: int = 2) -> MemoryEstimate:
    """Memory of one training step of ``exp`` (a manifest experiment of a training task) per device."""
    head = TASK_HEADS[exp.task]
    p = parameter_count(shape, head, num_labels)
    precision = job_precision(exp, on_gpu)
    e = activation_bytes(precision)
    amp = e == 2
    b, s, h = exp.batch_size, min(exp.max_seq_length, shape.max_position_embeddings), shape.hidden_size
    a, n_layers = shape.num_attention_heads, shape.num_hidden_layers
    sbh = s * b * h
    per_layer = sbh * (16 * e + 2 + (4 if amp else 0))
    if not on_gpu:  # no fused attention kernel in training on a CPU: the probabilities are kept
        per_layer += a * s * s * b * (2 * e + 1)
    # the backward pass of one layer holds gradients of its largest intermediates at once: the attention
    # probabilities' (unfused) or the MLP's 4h-wide ones, two buffers each
    transient = max(2 * a * s * s * b * e if not on_gpu else 0, 2 * 4 * sbh * e)
    activations = n_layers * per_layer + 5 * sbh + 4 * b * s * s + transient
    logits = 0.0
    if head == "pretraining":
        m = min(mlm_predictions(exp), s)
        logits = b * m * shape.vocab_size * ((2 if amp else 0) + 4 + 4 + 4) + b * m * h * (3 * e + 4)
    world = exp.nproc_per_node * exp.nnodes if exp.launcher != "none" else 1
    allocated = 16.0 * p + (2.0 * p if amp else 0.0) + (4.0 * p if world > 1 else 0.0) + activations + logits
    return MemoryEstimate(
        parameters=p,
        device="cuda" if on_gpu else "cpu",
        precision=precision,
        weights=4.0 * p,
        gradients=4.0 * p,
        optimizer=8.0 * p,
        autocast_copies=2.0 * p if amp else 0.0,
        ddp_buckets=4.0 * p if world > 1 else 0.0,
        activations=float(activations),
        head=float(logits),
        overhead=(CUDA_CONTEXT + ALLOCATOR_SLACK * allocated) if on_gpu else 0.0,
    )


# -- the shape of an experiment's model, without weights ------------------------------------------

_LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
# The published configs of Google's BERT checkpoints on the Hub (google-bert/<name>), so that the manifest's
# default models have an estimate before they are downloaded; a local config.json always wins.
KNOWN_SHAPES: dict[str, ModelShape] = {
    "bert-base-uncased": ModelShape(),
    "bert-base-cased": ModelShape(vocab_size=28996),
    "bert-large-uncased": ModelShape(**_LARGE),
    "bert-large-cased": ModelShape(**_LARGE, vocab_size=28996),
    "bert-base-multilingual-cased": ModelShape(vocab_size=119547),
}


def _read_config(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _local_model_folder(spec: str, mirror: str) -> Path | None:
    """A folder with the model's ``config.json``: the folder itself, a mirror's or the HF cache's copy.
    Never the network: an estimate must not hang on it."""
    from engine.hub.resolve import _cached_snapshot, id_spellings, looks_local, mirror_root

    local = Path(spec).expanduser()
    if (local / "config.json").is_file():
        return local
    if looks_local(spec):
        return None
    root = mirror_root(mirror)
    for name in id_spellings(spec):
        if root is not None and (root / name / "config.json").is_file():
            return root / name
    for name in id_spellings(spec):
        try:
            cached = _cached_snapshot(name, "model")
        except Exception:  # noqa: BLE001 - an odd cache layout only means "not found"
            cached = None
        if cached is not None and (cached / "config.json").is_file():
            return cached
    return None


def experiment_shape(manifest, exp, store=None, _seen: tuple[str, ...] = ()) -> tuple[ModelShape | None, str]:
    """(shape of ``exp``'s model, "") or (None, why it is not known yet), reading only small files.

    A preset is its config (a small preset's vocabulary is ``vocab_size``, that of its trained
    tokenizer; bert-base keeps its 30,522 unless the tokenizer is larger); ``run:<experiment>``
    the latest finished run's ``model/config.json``, else that experiment's own shape; a folder,
    a mirror or the Hugging Face cache its ``config.json``.
    """
    from engine.manifest import PRESETS

    spec = exp.model
    if spec in PRESETS:
        preset = ModelShape(**{k: v for k, v in PRESETS[spec].items() if k in {f.name for f in fields(ModelShape)}})
        trained = exp.tokenizer in ("auto", "train")
        vocab = exp.vocab_size if spec != "bert-base" else max(preset.vocab_size, exp.vocab_size if trained else 0)
        return replace(preset, vocab_size=vocab), ""
    if spec.startswith("run:"):
        name = spec[4:]
        if store is not None:
            run = store.latest(name, status="finished")
            folder = run.final_model() if run is not None else None
            config = _read_config(folder) if folder is not None else None
            if config is not None:
                found = ModelShape.from_config(config)
                return (found, "") if found else (None, f"the model of {name}'s run is not a BERT-like encoder")
        if name in manifest.names and name not in _seen:
            return experiment_shape(manifest, manifest.get(name), store, (*_seen, exp.name))
        return None, f"{name} has no finished run yet"
    folder = _local_model_folder(spec, manifest.settings.data_mirror)
    if folder is None:
        known = KNOWN_SHAPES.get(spec.split("/")[-1])
        if known is not None:  # a well-known checkpoint whose config is not here (yet): its published shape
            return known, ""
        return None, f"{spec}: no local config.json (mirror or cache) to read its size from"
    config = _read_config(folder)
    found = ModelShape.from_config(config) if config is not None else None
    return (found, "") if found else (None, f"{spec}: its config.json is not a BERT-like encoder's")


def experiment_estimate(manifest, exp, on_gpu: bool, store=None) -> tuple[MemoryEstimate | None, str]:
    """(estimate, "") for a training experiment, or (None, why not): not a training task, or an unknown shape."""
    if exp.task not in TASK_HEADS:
        return None, f"{exp.task} does not train"
    shape, why = experiment_shape(manifest, exp, store)
    if shape is None:
        return None, why
    return estimate_memory(exp, shape, on_gpu), ""


def memory_note(manifest, exp, on_gpu: bool, store=None) -> str:
    """``memory ≈ 5.12 GiB per GPU (bf16: ...)`` for a training experiment, ``""`` for other steps: the console."""
    if exp.task not in TASK_HEADS:
        return ""
    est, why = experiment_estimate(manifest, exp, on_gpu, store)
    return f"memory ≈ {est.line()}" if est is not None else f"memory: not estimated ({why})"
