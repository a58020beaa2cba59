"""The experiment manifest (``experiments.toml``): schema, parsing and validation.

Every key is declared once, as a field of the typed, frozen config dataclasses
(:class:`Experiment` combines one per concern: data, optimisation, QA decoding,
launcher, ...; :class:`Settings`), with its type, default, the tasks it applies to
and a one-line meaning. :data:`EXPERIMENT_KEYS` / :data:`SETTINGS_KEYS` are built
from those fields; the parser, the validator, the README's manifest reference and
the JSON schema all read them.
Errors never raise a traceback at the user: :class:`ManifestError` carries one
line per problem, naming the experiment and the key and saying what was expected.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from engine.errors import ManifestError
from engine.files import SAFE_NAME

TASKS = ("inspect", "pretrain", "classify", "qa")
# Pipeline steps that build no model: ``push`` uploads a finished run, ``study``
# names a group of steps that one action runs in dependency order. Keys whose ``tasks``
# is the default (the four model tasks, "all" in the reference) do not apply to them.
STEP_TASKS = ("push", "study")
HEADS = ("base", "pretraining", "mlm", "classification", "qa")
TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")

# Model presets the `model` key accepts: name -> BertConfig keyword arguments (engine.models.presets
# builds them; vocab_size of the small presets follows the tokenizer)
PRESETS: dict[str, dict] = {
    "bert-base": {},
    "bert-tiny": dict(
        hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512, max_position_embeddings=512
    ),
    "bert-micro": dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256, max_position_embeddings=512
    ),
}


@dataclass(frozen=True)
class Key:
    """One manifest key as the validator, the README reference and the JSON schema read it.

    Not written by hand: :func:`_keys` builds one per field of the config dataclasses
    below, the type from the field's annotation, the default from its default (none
    means required), the rest from its metadata (:func:`_meta`).
    """

    type: str  # "str" | "int" | "float" | "bool" | "list[str]" | "list[int]"
    default: Any
    help: str
    tasks: tuple[str, ...] = TASKS
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    required: bool = False
    maximum: float | None = None  # probabilities and seeds have an upper bound too


ALL_TRAIN = ("pretrain", "classify", "qa")


def _meta(
    help: str,
    *,
    tasks: tuple[str, ...] = TASKS,
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
) -> dict[str, Any]:
    """A config field's metadata: its one-line meaning, the tasks it applies to, and its allowed values."""
    return {"help": help, "tasks": tasks, "choices": choices, "minimum": minimum, "maximum": maximum}


# -- the experiment, one dataclass per concern ---------------------------------------
# Every manifest key is a field here, with its type, its default and (in ``metadata``)
# its help, tasks and bounds. :data:`EXPERIMENT_KEYS` is built from these fields, so the
# parser, the validator, the README reference and the JSON schema read the same facts.
# A field without a default is required. Lists in TOML are tuples here (frozen).


@dataclass(frozen=True, kw_only=True)
class IdentityConfig:
    """What the experiment is called and what it does."""

    name: str = field(metadata=_meta("Unique experiment name; also the run directory name (letters, digits, . _ -)."))
    task: str = field(metadata=_meta("What the experiment does.", choices=TASKS + STEP_TASKS))
    description: str = field(default="", metadata=_meta("Free text shown in the console."))


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Where the model and its tokenizer come from."""

    model: str = field(
        metadata=_meta(
            "Preset (`bert-base`, `bert-tiny`, `bert-micro`), Hub id, local folder, or `run:<experiment>` (that "
            "experiment's final model; makes it a dependency)."
        )
    )
    init: str = field(
        default="auto",
        metadata=_meta(
            "`pretrained` loads weights; `scratch` builds the model from its config with random weights; `auto` = "
            "scratch for presets, pretrained otherwise.",
            choices=("auto", "scratch", "pretrained"),
        ),
    )
    tokenizer: str = field(
        default="auto",
        metadata=_meta(
            "`auto` = the model's own tokenizer (presets: WordPiece trained on the training split, cached); `train` "
            "forces training one; or a Hub id / local folder."
        ),
    )
    vocab_size: int = field(
        default=8000, metadata=_meta("Vocabulary size of a trained WordPiece tokenizer.", minimum=100)
    )
    trust_remote_code: bool = field(
        default=False,
        metadata=_meta("Allow custom model code from the Hub (off unless you opt in; a warning is shown)."),
    )
    heads: tuple[str, ...] = field(
        default=("base", "pretraining", "classification", "qa"),
        metadata=_meta(
            "Heads whose parameter tables an `inspect` experiment writes.", tasks=("inspect",), choices=HEADS
        ),
    )


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """The dataset, its splits and columns, and how much of it to use."""

    dataset: str | None = field(
        default=None,
        metadata=_meta(
            "Hub id (`Salesforce/wikitext`), local folder in the Hub layout, or `embedded:<wikitext|sst2|squad_v2>`.",
            tasks=ALL_TRAIN,
        ),
    )
    dataset_config: str = field(
        default="",
        metadata=_meta(
            "Dataset configuration (`wikitext-2-raw-v1`, `sst2`, `squad_v2`); empty = the default one.", tasks=ALL_TRAIN
        ),
    )
    train_split: str = field(default="train", metadata=_meta("Split to train on.", tasks=ALL_TRAIN))
    eval_split: str = field(
        default="validation",
        metadata=_meta("Split to evaluate on (hidden-label splits fall back to `validation`).", tasks=ALL_TRAIN),
    )
    text_column: str = field(
        default="text",
        metadata=_meta("Text column (`text` for wikitext, `sentence` for SST-2).", tasks=("pretrain", "classify")),
    )
    label_column: str = field(default="label", metadata=_meta("Label column for classification.", tasks=("classify",)))
    max_train_samples: int = field(
        default=0, metadata=_meta("Use at most this many training rows (0 = all).", tasks=ALL_TRAIN, minimum=0)
    )
    max_eval_samples: int = field(
        default=0, metadata=_meta("Evaluate on at most this many rows (0 = all).", tasks=ALL_TRAIN, minimum=0)
    )
    num_proc: int = field(
        default=0,
        metadata=_meta(
            "Processes that prepare pretraining data (tokenise, assemble NSP pairs); 0 = every available core. "
            "The pairs are the same for any value.",
            tasks=("pretrain",),
            minimum=0,
        ),
    )


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """Optimisation and schedule: epochs, AdamW, batches, sequence length, seed, logging."""

    epochs: int = field(default=3, metadata=_meta("Training epochs.", tasks=ALL_TRAIN, minimum=1))
    max_steps: int = field(
        default=0,
        metadata=_meta("Stop after this many optimizer steps (0 = run all epochs).", tasks=ALL_TRAIN, minimum=0),
    )
    learning_rate: float = field(
        default=5e-5,
        metadata=_meta("Peak learning rate of AdamW (linear warmup, then linear decay).", tasks=ALL_TRAIN, minimum=0),
    )
    warmup: float = field(
        default=0.06,
        metadata=_meta("Warmup: a ratio of all steps when < 1, else a number of steps.", tasks=ALL_TRAIN, minimum=0),
    )
    weight_decay: float = field(
        default=0.01,
        metadata=_meta("AdamW weight decay (not applied to biases and LayerNorm).", tasks=ALL_TRAIN, minimum=0),
    )
    batch_size: int = field(
        default=32,
        metadata=_meta("Sequences per micro-batch (per device).", tasks=ALL_TRAIN, minimum=1, maximum=65536),
    )
    eval_batch_size: int = field(
        default=64, metadata=_meta("Sequences per evaluation batch.", tasks=ALL_TRAIN, minimum=1, maximum=65536)
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata=_meta("Micro-batches per optimizer step.", tasks=ALL_TRAIN, minimum=1, maximum=65536)
    )
    max_grad_norm: float = field(
        default=1.0, metadata=_meta("Gradient clipping norm (0 = off).", tasks=ALL_TRAIN, minimum=0)
    )
    max_seq_length: int = field(
        default=128,
        metadata=_meta("Maximum tokens per sequence, special tokens included.", tasks=ALL_TRAIN, minimum=16),
    )
    seed: int = field(
        default=42,
        metadata=_meta(
            "Random seed (data order, masking, initialisation).", tasks=ALL_TRAIN, minimum=0, maximum=2**32 - 1
        ),
    )
    logging_steps: int = field(
        default=20,
        metadata=_meta("Emit a training-metrics event every N optimizer steps.", tasks=ALL_TRAIN, minimum=1),
    )
    full_determinism: bool = field(
        default=False,
        metadata=_meta(
            "Deterministic algorithms only (HF `enable_full_determinism`): `torch.use_deterministic_algorithms`, "
            "cuDNN deterministic, `CUBLAS_WORKSPACE_CONFIG=:4096:8` on GPUs. Bit-identical GPU reruns at some "
            "speed; an op with no deterministic kernel stops the job with its name.",
            tasks=ALL_TRAIN,
        ),
    )


@dataclass(frozen=True, kw_only=True)
class RuntimeConfig:
    """Device, precision, data loading workers, and what a non-finite loss does."""

    device: str = field(
        default="auto", metadata=_meta("`auto` (CUDA if available, else CPU), `cpu`, `cuda`, `cuda:N`.")
    )
    precision: str = field(
        default="auto",
        metadata=_meta(
            "`auto` = bf16 autocast on GPUs that support it, else fp32; `bf16` also on CPUs with native bf16 "
            "(AVX512-BF16 or AMX), an opt-in there; `fp16` is GPU only.",
            choices=("auto", "bf16", "fp16", "fp32"),
        ),
    )
    num_workers: int = field(default=0, metadata=_meta("DataLoader worker processes.", tasks=ALL_TRAIN, minimum=0))
    nan_policy: str = field(
        default="stop",
        metadata=_meta(
            "On a NaN/inf loss: `stop` the job (failed) or `skip` the step.", tasks=ALL_TRAIN, choices=("stop", "skip")
        ),
    )
    auto_find_batch_size: bool = field(
        default=False,
        metadata=_meta(
            "On out of memory (HF name): halve the per-device batch and double the gradient accumulation (same "
            "effective batch, data order and schedule), restart from the last checkpoint, record it in "
            "`config.json`; fail below a batch of 1. Not with a launcher.",
            tasks=ALL_TRAIN,
        ),
    )


@dataclass(frozen=True, kw_only=True)
class LauncherConfig:
    """Running the job under torchrun or accelerate (DDP)."""

    launcher: str = field(
        default="none",
        metadata=_meta(
            "Run the job as a process under `torchrun` or `accelerate` (DDP; rank 0 writes the run directory).",
            tasks=ALL_TRAIN,
            choices=("none", "torchrun", "accelerate"),
        ),
    )
    nproc_per_node: int = field(
        default=1,
        metadata=_meta(
            "Processes per node under the launcher (GPUs per node; CPU processes with gloo).",
            tasks=ALL_TRAIN,
            minimum=1,
        ),
    )
    nnodes: int = field(
        default=1,
        metadata=_meta("Nodes under the launcher (multi-node needs `rdzv_endpoint`).", tasks=ALL_TRAIN, minimum=1),
    )
    rdzv_endpoint: str = field(
        default="",
        metadata=_meta("Rendezvous `host:port` for multi-node torchrun (`--rdzv-endpoint`).", tasks=ALL_TRAIN),
    )
    launcher_args: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            'Extra arguments passed to the launcher as they are (e.g. `["--rdzv-id=job7"]`).', tasks=ALL_TRAIN
        ),
    )


@dataclass(frozen=True, kw_only=True)
class CheckpointConfig:
    """Checkpoints inside an epoch and how many to keep (preemption and long epochs)."""

    save_steps: int = field(
        default=0,
        metadata=_meta(
            "Also save a checkpoint every N optimizer steps inside an epoch (0 = off; epoch ends, `save_minutes` and "
            "stop signals still save).",
            tasks=ALL_TRAIN,
            minimum=0,
        ),
    )
    save_minutes: float = field(
        default=30.0,
        metadata=_meta(
            "Save a checkpoint once this many minutes passed since the last one (0 = off): what a SIGKILL can cost "
            "at most.",
            tasks=ALL_TRAIN,
            minimum=0,
        ),
    )
    save_total_limit: int = field(
        default=2,
        metadata=_meta("Checkpoints kept per run: the newest N (0 = keep all).", tasks=ALL_TRAIN, minimum=0),
    )


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """Evaluations inside an epoch, the best model and early stopping (the TrainingArguments names)."""

    eval_steps: int = field(
        default=0,
        metadata=_meta(
            "Also evaluate every N optimizer steps inside an epoch (0 = at epoch ends only).",
            tasks=ALL_TRAIN,
            minimum=0,
        ),
    )
    metric_for_best_model: str = field(
        default="",
        metadata=_meta(
            "Evaluation metric that picks the best model; empty = the task's headline: `mlm_perplexity` (pretrain), "
            "`accuracy` (classify), `f1` (qa, SQuAD v2). An `eval_` prefix is allowed.",
            tasks=ALL_TRAIN,
        ),
    )
    greater_is_better: bool | None = field(
        default=None,
        metadata=_meta(
            "Whether a larger `metric_for_best_model` is better; unset = from the metric (perplexity, loss: lower).",
            tasks=ALL_TRAIN,
        ),
    )
    load_best_model_at_end: bool = field(
        default=False,
        metadata=_meta(
            "The final model is the best evaluation's weights (a checkpoint after every evaluation; retention "
            "keeps the best one); results name its epoch and step and keep the last evaluation beside.",
            tasks=ALL_TRAIN,
        ),
    )
    early_stopping_patience: int = field(
        default=0,
        metadata=_meta(
            "Stop training after this many evaluations in a row without improvement of `metric_for_best_model` "
            "(0 = off); the run ends `finished`, the reason recorded.",
            tasks=ALL_TRAIN,
            minimum=0,
        ),
    )
    early_stopping_threshold: float = field(
        default=0.0,
        metadata=_meta(
            "How much the metric must improve on the best so far to count as an improvement (early stopping).",
            tasks=ALL_TRAIN,
            minimum=0,
        ),
    )


@dataclass(frozen=True, kw_only=True)
class QueueConfig:
    """When and where the queue runs the job: its dependencies and its GPUs."""

    depends_on: tuple[str, ...] = field(
        default=(),
        metadata=_meta('Experiments that must finish first (besides the one named by `model = "run:..."`).'),
    )
    gpus: int = field(
        default=-1,
        metadata=_meta(
            "GPUs the scheduler hands this job (`CUDA_VISIBLE_DEVICES`); -1 = auto: 1 where CUDA is present, else 0; "
            "more than 1 needs a launcher (one process uses one GPU); a torchrun/accelerate job takes "
            "`nproc_per_node`.",
            minimum=-1,
        ),
    )


@dataclass(frozen=True, kw_only=True)
class PretrainConfig:
    """Pretraining: masked-LM and next-sentence data, pseudo-perplexity."""

    mlm_probability: float = field(
        default=0.15,
        metadata=_meta(
            "Fraction of tokens selected for masked-LM prediction (80% [MASK], 10% random, 10% kept).",
            tasks=("pretrain",),
            minimum=0,
            maximum=1,
        ),
    )
    short_seq_prob: float = field(
        default=0.1,
        metadata=_meta(
            "Probability of a shorter target length when building NSP pairs (BERT recipe).",
            tasks=("pretrain",),
            minimum=0,
            maximum=1,
        ),
    )
    max_predictions_per_seq: int = field(
        default=0,
        metadata=_meta(
            "Cap on masked positions per sequence (0 = round(mlm_probability * max_seq_length)).",
            tasks=("pretrain",),
            minimum=0,
        ),
    )
    pseudo_perplexity_samples: int = field(
        default=0,
        metadata=_meta(
            "Also compute pseudo-perplexity (Salazar et al. 2020) on this many eval sequences each epoch (0 = off; "
            "costs one forward per token).",
            tasks=("pretrain",),
            minimum=0,
        ),
    )


@dataclass(frozen=True, kw_only=True)
class QAConfig:
    """Question answering: windows over long contexts, answer decoding, and evaluation."""

    doc_stride: int = field(
        default=128, metadata=_meta("Overlap between windows of a long context.", tasks=("qa",), minimum=1)
    )
    n_best_size: int = field(
        default=20,
        metadata=_meta("Start/end candidates per feature when decoding answers.", tasks=("qa",), minimum=1),
    )
    max_answer_length: int = field(
        default=30, metadata=_meta("Longest answer span in tokens.", tasks=("qa",), minimum=1)
    )
    null_score_diff_threshold: float = field(
        default=0.0,
        metadata=_meta("Predict no answer when null score - best span score exceeds this.", tasks=("qa",)),
    )
    eval_each_epoch: bool = field(
        default=True,
        metadata=_meta(
            "Evaluate after every epoch (else only at the end; SQuAD evaluation is costly).", tasks=("qa", "classify")
        ),
    )
    text_metrics: str = field(
        default="offline",
        metadata=_meta(
            "`offline` = BLEU/ROUGE/METEOR computed locally; `hub` = the `evaluate` modules (needs the Hub).",
            tasks=("qa",),
            choices=("offline", "hub"),
        ),
    )


@dataclass(frozen=True, kw_only=True)
class PushConfig:
    """A ``push`` step: where a finished run is uploaded on the Hub."""

    hub_model_id: str | None = field(
        default=None,
        metadata=_meta(
            '`push`: Hub repository to upload `model = "run:<experiment>"` to, `OWNER/NAME` or `NAME` (your '
            "namespace); the token comes from `HF_TOKEN` / `hf auth login`.",
            tasks=("push",),
        ),
    )
    hub_private_repo: bool = field(
        default=False,
        metadata=_meta(
            "`push`: create the repository as private (an existing one keeps its visibility).", tasks=("push",)
        ),
    )
    hub_revision: str = field(
        default="",
        metadata=_meta("`push`: branch to upload to (created if missing); empty = main.", tasks=("push",)),
    )


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """A ``study`` step's experiments, and seeds that repeat an experiment."""

    steps: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "`study`: experiments that make up the study; running it runs every step without a finished run, "
            "dependencies first.",
            tasks=("study",),
        ),
    )
    seeds: tuple[int, ...] = field(
        default=(),
        metadata=_meta(
            "Run the experiment once per seed (replaces `seed`); the runs form a group whose mean ± sample std and n "
            "per metric are shown next to each run.",
            tasks=ALL_TRAIN,
        ),
    )


@dataclass(frozen=True, kw_only=True)
class TrackerConfig:
    """Experiment trackers that receive the job's metrics too."""

    report_to: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "Experiment trackers that also receive the job's metrics, evaluations, results and config (the "
            "TrainingArguments name): `tensorboard`, `wandb`, `mlflow`, `trackio`; each needs its extra (`pip "
            "install lmconsole[tensorboard]`).",
            tasks=ALL_TRAIN,
            choices=TRACKERS,
        ),
    )


@dataclass(frozen=True, kw_only=True)
class ExecutorConfig:
    """Where the job runs: this machine or Slurm, and what it asks Slurm for."""

    executor: str = field(
        default="auto",
        metadata=_meta(
            "Where the job runs: `local` (this machine), `slurm` (submitted with sbatch; the run directory must be "
            "on a filesystem both see), `auto` = `settings.executor`.",
            choices=("auto", "local", "slurm"),
        ),
    )
    slurm_partition: str = field(
        default="",
        metadata=_meta(
            "Slurm partition (`--partition`); empty = `settings.slurm_partition`, else the cluster default."
        ),
    )
    slurm_account: str = field(
        default="",
        metadata=_meta("Slurm account (`--account`); empty = `settings.slurm_account`, else none."),
    )
    slurm_time: str = field(
        default="",
        metadata=_meta('Slurm time limit (`--time`, e.g. `"04:00:00"`); empty = the partition default.'),
    )
    slurm_gpus: int = field(
        default=0, metadata=_meta("GPUs per node to request (`--gpus-per-node`; 0 = none).", minimum=0)
    )
    slurm_cpus_per_task: int = field(
        default=0, metadata=_meta("CPUs to request (`--cpus-per-task`; 0 = the cluster default).", minimum=0)
    )
    slurm_requeue: bool = field(
        default=True,
        metadata=_meta(
            "Requeue on preemption or before the time limit: the job checkpoints on SIGTERM/SIGUSR1 and the requeued "
            "job resumes from that checkpoint."
        ),
    )
    slurm_args: tuple[str, ...] = field(
        default=(),
        metadata=_meta('Extra sbatch options as they are (e.g. `["--qos=high", "--mem=64G"]`).'),
    )


# -- [experiment.sweep]: a hyperparameter search over the experiment's own keys ------
SWEEP_METHODS = ("grid", "random", "tpe")
SWEEP_PRUNERS = ("none", "median", "hyperband")
SWEEP_KEYS = ("method", "objective", "direction", "trials", "parallel", "pruner", "storage", "parameters")
# What each task reports per evaluation (EvalFinished metrics): what a sweep may optimise.
SWEEP_OBJECTIVES: dict[str, tuple[str, ...]] = {
    "classify": ("accuracy", "precision", "recall", "f1", "macro_f1"),
    "qa": ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "best_exact", "best_f1"),
    "pretrain": ("mlm_perplexity", "mlm_accuracy", "nsp_accuracy", "mlm_loss"),
}
# Keys a sweep cannot vary: who the experiment is, its pipeline and its repetitions.
UNSWEPT = frozenset({"name", "task", "description", "depends_on", "steps", "seeds", "model", "dataset"})
_RANGE_KEYS = ("low", "high", "log", "step")


@dataclass(frozen=True)
class SweepParam:
    """One swept key: ``values`` (categorical: a list in the manifest) or a range ``low``..``high``."""

    name: str
    values: tuple[Any, ...] = ()  # categorical (the grid's points); empty for a range
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    integer: bool = False  # the key is an int: the range samples whole numbers

    @property
    def is_range(self) -> bool:
        return not self.values

    def grid_points(self) -> tuple[Any, ...]:
        """Every value the grid tries: the list, or a range's ``low, low + step, ...`` up to ``high``."""
        if self.values:
            return self.values
        assert self.low is not None and self.high is not None and self.step
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        pts = [self.low + i * self.step for i in range(n)]
        return tuple(int(round(p)) if self.integer else round(p, 12) for p in pts)

    def describe(self) -> str:
        if self.values:
            return f"{self.name} in [{', '.join(_toml(v) for v in self.values)}]"
        how = ", log" if self.log else (f", step {self.step:g}" if self.step else "")
        return f"{self.name} in {self.low:g}..{self.high:g}{how}"


@dataclass(frozen=True)
class SweepSpec:
    """``[experiment.sweep]``: how trials of the experiment search its keys (Optuna runs the search)."""

    method: str = "tpe"
    objective: str = ""
    direction: str = "maximize"
    trials: int = 10
    parallel: int = 1
    pruner: str = "none"
    storage: str = ""  # an SQLAlchemy URL; empty = SQLite in the sweep's folder of the runs directory
    parameters: tuple[SweepParam, ...] = ()

    def space_size(self) -> int | None:
        """Combinations of the search space; None when a range without a step makes it continuous."""
        n = 1
        for p in self.parameters:
            if p.is_range and not p.step:
                return None
            n *= len(p.grid_points())
        return n

    def plan_text(self, name: str) -> str:
        """What ``lmconsole check`` prints for the sweep: method, space, trials, objective, pruner, storage."""
        size = self.space_size()
        space = f"{size} combinations" if size is not None else "continuous"
        where = self.storage.split("://", 1)[0] + " (shared)" if self.storage else "SQLite in the runs directory"
        lines = [
            f"sweep {name}: {self.method}, {self.trials} trials ({self.parallel} at once), space {space}; "
            f"objective {self.objective} ({self.direction}), pruner {self.pruner}, study in {where}"
        ]
        lines += [f"  {p.describe()}" for p in self.parameters]
        return "\n".join(lines)


@dataclass(frozen=True, kw_only=True)
class SweepConfig:
    """``[experiment.sweep]``, a sub-table rather than a key: parsed by :func:`_parse_sweep`."""

    sweep: SweepSpec | None = field(
        default=None,
        metadata={"table": True, "help": "A hyperparameter search over the experiment's keys ([experiment.sweep])."},
    )


# A dataclass collects its fields from the end of its MRO, so the groups are listed last
# first: the fields (and the README reference, the schema, ``config.json``) run from
# IdentityConfig's ``name`` to ExecutorConfig's ``slurm_args``.
@dataclass(frozen=True, kw_only=True)
class Experiment(
    SweepConfig,
    ExecutorConfig,
    TrackerConfig,
    StudyConfig,
    PushConfig,
    QAConfig,
    PretrainConfig,
    QueueConfig,
    EvalConfig,
    CheckpointConfig,
    LauncherConfig,
    RuntimeConfig,
    OptimConfig,
    DataConfig,
    ModelConfig,
    IdentityConfig,
):
    """One validated experiment: every manifest key as a flat, typed field (``exp.doc_stride``).

    The fields come from the groups it combines; their meanings are in each field's
    ``metadata["help"]`` and in :data:`EXPERIMENT_KEYS`.
    """

    @property
    def model_run(self) -> str | None:
        """The experiment whose final model this one starts from (``model = "run:<experiment>"``), else None."""
        return self.model[4:] if self.model.startswith("run:") else None

    @property
    def dependencies(self) -> tuple[str, ...]:
        """Experiments that must finish first: the ``run:`` model's, then ``depends_on`` (a study's: its steps)."""
        if self.task == "study":
            return tuple(self.steps)  # a study is its steps; it runs nothing itself
        deps = list(self.depends_on)
        if self.model_run and self.model_run not in deps:
            deps.insert(0, self.model_run)
        return tuple(deps)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (tuples as lists), in manifest order: a run's ``config.json``."""
        # The sweep is not a run's setting: a trial's config.json records its own part of it (``sweep``).
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "sweep"}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}


# Keys of the model tasks that the pipeline steps take too (besides their own keys above).
STEP_KEYS: dict[str, tuple[str, ...]] = {
    "push": ("name", "task", "description", "model", "depends_on"),
    "study": ("name", "task", "description"),
}


@dataclass(frozen=True, kw_only=True)
class Settings:
    """``[settings]``: what holds for the whole manifest."""

    runs_dir: str = field(default="runs", metadata=_meta("Where run directories go (relative to the manifest)."))
    data_mirror: str = field(
        default="",
        metadata=_meta(
            "Folder with offline copies of Hub datasets/models as `<owner>/<name>` (also `LMCONSOLE_MIRROR`)."
        ),
    )
    max_parallel_jobs: int = field(
        default=1,
        metadata=_meta("Jobs of this runs directory that run at the same time, whoever queued them.", minimum=1),
    )
    # queue and GPU scheduling
    gpus: str = field(
        default="all",
        metadata=_meta("GPUs the scheduler may hand out: `all` (every visible one), `none`, or indices like `0,1,3`."),
    )
    gpu_sharing: bool = field(
        default=False,
        metadata=_meta(
            "Let the scheduler start a job on a GPU another queue job uses when both memory estimates fit in its "
            "free memory (raise `max_parallel_jobs` too); off: one job per GPU."
        ),
    )
    # the Slurm executor
    executor: str = field(
        default="local",
        metadata=_meta(
            'Default executor of experiments with `executor = "auto"`: `local` or `slurm`.', choices=("local", "slurm")
        ),
    )
    slurm_partition: str = field(default="", metadata=_meta("Default Slurm partition of Slurm jobs."))
    slurm_account: str = field(default="", metadata=_meta("Default Slurm account of Slurm jobs."))
    # the stall watchdog and notifications (engine/store/stall.py, engine/job/notify.py)
    stall_minutes: float = field(
        default=0.0,
        metadata=_meta(
            "A running job with no step, evaluation or heartbeat for this many minutes reads as `stalled` "
            "(fractions allowed); 0: the larger of 15 minutes and 20 median step times.",
            minimum=0,
        ),
    )
    notify: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "Apprise URLs told when a job finishes, fails, stops on NaN or stalls, and when a sweep or study is "
            "done (`ntfy://topic`, `slack://...`, `mailto://...`, `json://host:port/path`); needs "
            "`pip install 'lmconsole[notify]'`; `lmconsole notify --test` sends one."
        ),
    )
    console_alerts: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "What an open console adds to its toast on those events: `bell` (the terminal bell), `osc9` / `osc777` "
            "(a desktop notification escape; through tmux when its `allow-passthrough` is on).",
            choices=("bell", "osc9", "osc777"),
        ),
    )


# The manifest's word for each field type (tuples are TOML arrays; ``X | None`` is an X that may be unset).
_TYPE_NAMES: dict[Any, str] = {
    str: "str",
    int: "int",
    float: "float",
    bool: "bool",
    tuple[str, ...]: "list[str]",
    tuple[int, ...]: "list[int]",
}


def _type_name(hint: Any) -> str:
    args = typing.get_args(hint)
    if type(None) in args:  # ``str | None``: a key without a default value
        (hint,) = (a for a in args if a is not type(None))
    return _TYPE_NAMES[hint]


def _keys(cls: type) -> dict[str, Key]:
    """One :class:`Key` per field of a config dataclass, in field order."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("table"):
            continue  # a sub-table ([experiment.sweep]) has its own parser and schema
        required = f.default is dataclasses.MISSING
        default = None if required else (list(f.default) if isinstance(f.default, tuple) else f.default)
        out[f.name] = Key(type=_type_name(hints[f.name]), default=default, required=required, **f.metadata)
    return out


EXPERIMENT_KEYS: dict[str, Key] = _keys(Experiment)
SETTINGS_KEYS: dict[str, Key] = _keys(Settings)


@dataclass(frozen=True)
class Manifest:
    path: Path
    settings: Settings
    experiments: tuple[Experiment, ...]

    def get(self, name: str) -> Experiment:
        for exp in self.experiments:
            if exp.name == name:
                return exp
        names = ", ".join(e.name for e in self.experiments)
        raise KeyError(f"no experiment named {name!r} in {self.path} (have: {names})")

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.experiments]

    @property
    def runs_dir(self) -> Path:
        p = Path(self.settings.runs_dir).expanduser()
        return p if p.is_absolute() else (self.path.parent / p)

    def expand_studies(self, names: list[str]) -> list[str]:
        """Each study replaced by its steps in plan order (for commands that read runs: report, verify)."""
        out = [s for n in names for s in (self.job_plan([n]) if self.get(n).task == "study" else [n])]
        return list(dict.fromkeys(out))

    def job_plan(self, names: list[str]) -> list[str]:
        """:meth:`plan` without the studies: the experiments that run as jobs, in order."""
        return [n for n in self.plan(names) if self.get(n).task != "study"]

    def plan(self, names: list[str]) -> list[str]:
        """The named experiments plus their dependencies, dependencies first (a study's are its steps)."""
        order: list[str] = []

        def visit(n: str):
            if n in order:
                return
            for dep in self.get(n).dependencies:
                visit(dep)
            order.append(n)

        for n in names:
            visit(n)
        return order


_TYPE_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list[str]": "a list of strings",
    "list[int]": "a list of integers",
}


def _describe(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value).replace("'", '"') if len(value) < 40 else f'"{value[:37]}..."'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _check_value(where: str, name: str, key: Key, value, problems: list[str]):
    """Type-check one value; returns the normalized value or None on error."""
    t = key.type
    ok = True
    if t == "str":
        ok = isinstance(value, str)
    elif t == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif t == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            try:
                value = float(value)
            except OverflowError:
                value = math.inf
            if not math.isfinite(value):
                problems.append(f"{where}.{name}: expected a finite number, got {value!r}")
                return None
    elif t == "bool":
        ok = isinstance(value, bool)
    elif t == "list[str]":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if ok:
            value = tuple(value)
    elif t == "list[int]":
        ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        if ok:
            value = tuple(value)
    if not ok:
        problems.append(f"{where}.{name}: expected {_TYPE_WORDS[t]}, got {_describe(value)}")
        return None
    if key.choices:
        vals = value if isinstance(value, tuple) else (value,)
        bad = [v for v in vals if v not in key.choices]
        if bad:
            problems.append(
                f"{where}.{name}: {_describe(bad[0])} is not allowed; expected one of "
                + ", ".join(f'"{c}"' for c in key.choices)
            )
            return None
    if key.minimum is not None and isinstance(value, (int, float)) and value < key.minimum:
        problems.append(f"{where}.{name}: expected a value >= {key.minimum:g}, got {value!r}")
        return None
    if key.maximum is not None and isinstance(value, (int, float)) and value > key.maximum:
        problems.append(f"{where}.{name}: expected a value <= {key.maximum:g}, got {value!r}")
        return None
    if t == "int" and abs(value) >= 2**63:
        problems.append(f"{where}.{name}: {value} is too large (at most {2**63 - 1})")
        return None
    problem = _check_text(name, value) if t == "str" else _check_range(name, value)
    if problem:
        problems.append(f"{where}.{name}: {problem}")
        return None
    return value


# Control characters in a path, a device or a Slurm time end up in file names, command lines and
# terminals; tab and newline may only appear in prose (descriptions).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PROSE = frozenset({"description"})
_NOT_EMPTY = frozenset({"runs_dir"})  # "" would put run folders beside the manifest, the queue among them
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d{1,2}|mps)$")


def _check_text(name: str, value: str) -> str:
    """Why a string value is unusable ("" when it is fine)."""
    if (_CONTROL if name in _PROSE else _LINE_CONTROL).search(value):
        return "contains control characters; use printable text"
    if name in _NOT_EMPTY and not value.strip():
        return 'must not be empty (a folder name or path, e.g. "runs")'
    if name == "device" and not _DEVICE.match(value):
        return f"{_describe(value)} is not a device; expected auto, cpu, cuda, cuda:N or mps"
    return ""


def _check_range(name: str, value) -> str:
    """Why a number is out of its sensible range ("" when it is fine)."""
    if name == "mlm_probability" and isinstance(value, float) and value <= 0:
        return "expected a fraction above 0 and below 1: with 0 no token is masked and perplexity is undefined"
    if name == "mlm_probability" and isinstance(value, float) and value >= 1:
        return (
            "expected a fraction above 0 and below 1 (BERT uses 0.15): with 1 every token is selected, "
            "so the model predicts each one without its context"
        )
    return ""


def parse_gpu_list(value: str) -> tuple[int, ...] | str | None:
    """``settings.gpus``: "all" -> "all", "none"/"" -> (), "0,1,3" -> (0, 1, 3); None when malformed."""
    text = value.strip().lower()
    if text == "all":
        return "all"
    if text in ("none", ""):
        return ()
    try:
        out = tuple(int(p) for p in text.replace(" ", "").split(","))
    except ValueError:
        return None
    return out if all(g >= 0 for g in out) and len(set(out)) == len(out) else None


def _suggest(name: str, known) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_text(text: str, path: Path | str = "experiments.toml") -> Manifest:
    """Parse and validate manifest text; raises :class:`ManifestError` on any problem."""
    path = Path(path)
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise ManifestError(
            path,
            [
                "nested too deeply (arrays or tables inside each other): "
                "a manifest needs [settings] and [[experiment]] tables of plain values"
            ],
        ) from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            line, col = m.groups()
            msg = msg[: m.start()].strip()
            raise ManifestError(path, [f"TOML syntax error at line {line}, column {col}: {msg}"]) from None
        raise ManifestError(path, [f"TOML syntax error: {msg}"]) from None
    try:
        return parse_data(data, path)
    except ManifestError as exc:
        raise ManifestError(path, [with_line(text, p) for p in exc.problems]) from None


_PROBLEM_AT = re.compile(r'^(?:experiment (\d+)(?: "[^"]*")?|settings)(?:\.([A-Za-z_][A-Za-z0-9_]*))?')
_TABLE = re.compile(r"^\s*\[\[?\s*([A-Za-z_]+)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=")


def with_line(text: str, problem: str) -> str:
    """``problem`` (``experiment 3 "x".lr: ...``, ``settings.gpus: ...``) prefixed with the line of
    the manifest it is about: the key's line in that table, else the table's header line."""
    m = _PROBLEM_AT.match(problem)
    if not m:
        return problem
    table, index = ("experiment", int(m.group(1))) if m.group(1) else ("settings", 1)
    seen, header, key_line = 0, None, None
    for n, line in enumerate(text.splitlines(), 1):
        t = _TABLE.match(line)
        if t:
            if header is not None:
                break  # the table's end
            if t.group(1) == table:
                seen += 1
                header = n if seen == index else None
            continue
        k = _KEY.match(line)
        if header is not None and k and k.group(1) == m.group(2):
            key_line = n
    line_no = key_line or header
    return f"line {line_no}: {problem}" if line_no else problem


def missing_folders(manifest: Manifest) -> list[str]:
    """Datasets and models named as local folders (``./data``, ``/scratch/x``) that do not exist,
    one problem each with its line: ``lmconsole check`` reports them before any run starts."""
    from engine.hub.resolve import looks_local

    try:
        text = manifest.path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    problems = []
    for i, exp in enumerate(manifest.experiments, 1):
        for key in ("dataset", "model"):
            spec = getattr(exp, key, None)
            if isinstance(spec, str) and looks_local(spec) and not Path(spec).expanduser().is_dir():
                problems.append(
                    with_line(
                        text,
                        f'experiment {i} "{exp.name}".{key}: local folder {spec!r} does not exist '
                        f"(relative paths start from {Path.cwd()}); create it or fix the path",
                    )
                )
    return problems


def unavailable_devices(manifest: Manifest, gpu_count: int) -> list[str]:
    """Experiments whose ``device`` names a GPU this machine does not have (``cuda`` with none,
    ``cuda:N`` beyond its count), one problem each with its line: ``lmconsole check`` reports them."""
    try:
        text = manifest.path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    problems = []
    for i, exp in enumerate(manifest.experiments, 1):
        device = getattr(exp, "device", "auto")
        if not isinstance(device, str) or not device.startswith("cuda"):
            continue
        index = int(device.split(":")[1]) if ":" in device else 0
        if index < gpu_count:
            continue
        have = f"{gpu_count} GPU(s), numbered from 0" if gpu_count else "no GPU"
        problems.append(
            with_line(
                text,
                f'experiment {i} "{exp.name}".device: {device!r} does not exist on this machine ({have}); '
                'use "auto" (a GPU when there is one), "cpu", or cuda:N below the count',
            )
        )
    return problems


def load(path: Path | str) -> Manifest:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(path, ["file not found: create it or pass --manifest PATH"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(path, [f"cannot read the manifest: {exc}"]) from None
    return parse_text(text, path)


def parse_data(data: dict, path: Path | str = "experiments.toml") -> Manifest:
    path = Path(path)
    problems: list[str] = []
    for top in data:
        if top not in ("settings", "experiment"):
            problems.append(
                f"{top}: unknown top-level key{_suggest(top, ('settings', 'experiment'))}; "
                "expected [settings] and [[experiment]] tables"
            )

    settings_raw = data.get("settings", {})
    settings_vals: dict[str, Any] = {}
    if not isinstance(settings_raw, dict):
        problems.append("settings: expected a table ([settings])")
        settings_raw = {}
    for k, v in settings_raw.items():
        if k not in SETTINGS_KEYS:
            problems.append(
                f"settings.{k}: unknown key{_suggest(k, SETTINGS_KEYS)}; known keys: {', '.join(SETTINGS_KEYS)}"
            )
            continue
        val = _check_value("settings", k, SETTINGS_KEYS[k], v, problems)
        if k == "gpus" and val is not None and parse_gpu_list(val) is None:
            problems.append(f'settings.gpus: {val!r} is not "all", "none" or a list of GPU indices like "0,1,3"')
            val = None
        if k == "notify" and val is not None:
            for url in val:
                if "://" not in url:
                    problems.append(
                        f"settings.notify: {url[:60]!r} is not an Apprise URL; write it as SERVICE://..., "
                        'e.g. "ntfy://my-topic" or "json://localhost:8000/hook"'
                    )
                    val = None
                    break
        if val is not None:
            settings_vals[k] = val
    settings = Settings(**settings_vals)

    raw_exps = data.get("experiment", [])
    if not isinstance(raw_exps, list):
        problems.append("experiment: expected an array of tables, written [[experiment]]")
        raw_exps = []
    if not raw_exps and "experiment" not in data and not problems:
        problems.append("no experiments: add at least one [[experiment]] table with name, task and model")

    experiments = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_exps):
        exp = _parse_experiment(i, raw, problems, seen)
        if exp is not None:
            experiments.append(exp)

    if not problems:
        _check_graph(experiments, problems)
    if problems:
        raise ManifestError(path, problems)
    return Manifest(path=path, settings=settings, experiments=tuple(experiments))


def _parse_experiment(i: int, raw: Any, problems: list[str], seen: dict[str, int]) -> Experiment | None:
    where = f"experiment {i + 1}"  # counted from 1, as a reader counts the [[experiment]] tables
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a table, got {_describe(raw)}")
        return None
    name = raw.get("name")
    if isinstance(name, str):
        where = f'experiment {i + 1} "{name}"'
    n_before = len(problems)
    for req in ("name", "task", "model"):
        if req == "model" and raw.get("task") == "study":
            continue  # a study names steps, not a model
        if req not in raw:
            problems.append(f"{where}: missing required key {req!r} ({EXPERIMENT_KEYS[req].help})")
    if isinstance(name, str):
        if not SAFE_NAME.match(name):
            problems.append(
                f"{where}.name: {_describe(name)} is not a safe directory name; use 1-64 letters, digits, "
                "'.', '_' or '-', starting with a letter or digit"
            )
        elif name in seen:
            problems.append(f"{where}.name: duplicate name, already used by experiment {seen[name] + 1}")
        else:
            seen[name] = i
    task = raw.get("task") if raw.get("task") in TASKS + STEP_TASKS else None
    values = {}
    for k, v in raw.items():
        if k == "sweep":
            continue  # the [experiment.sweep] sub-table: _parse_sweep below
        key = EXPERIMENT_KEYS.get(k)
        if key is None:
            problems.append(f"{where}.{k}: unknown key{_suggest(k, EXPERIMENT_KEYS)}")
            continue
        val = _check_value(where, k, key, v, problems)
        if val is None:
            continue
        if task and task not in key.tasks and k not in STEP_KEYS.get(task, ()):
            problems.append(f"{where}.{k}: not used by task {task!r} (applies to: {', '.join(_applies_to(k, key))})")
            continue
        values[k] = val
    _check_steps(where, task, raw, values, problems)
    if task in ALL_TRAIN:
        _check_best(where, task, values, problems)
    if "sweep" in raw:
        spec = _parse_sweep(f"{where}.sweep", task, raw["sweep"], values, problems)
        if spec is not None:
            values["sweep"] = spec
    if task in ALL_TRAIN and "dataset" not in raw:
        problems.append(
            f"{where}: missing required key 'dataset' for task {task!r} ({EXPERIMENT_KEYS['dataset'].help})"
        )
    dataset = values.get("dataset")
    if isinstance(dataset, str) and dataset.startswith("embedded:"):
        from engine.data.embedded import EMBEDDED_NAMES

        known = [f"embedded:{n}" for n in EMBEDDED_NAMES]
        if dataset not in known:
            problems.append(
                f"{where}.dataset: {_describe(dataset)} is no embedded corpus{_suggest(dataset, known)}; "
                f"expected one of {', '.join(known)}"
            )
    model = values.get("model")
    if isinstance(model, str):
        if model.startswith("run:") and not SAFE_NAME.match(model[4:]):
            problems.append(f"{where}.model: {_describe(model)} must name an experiment, as run:<experiment>")
        if values.get("init") == "pretrained" and model in _preset_names():
            problems.append(
                f'{where}.init: "pretrained" needs weights, but {model!r} is a preset (a config only); '
                'use init = "scratch" or a Hub id such as "google-bert/bert-base-uncased"'
            )
        if model.startswith("run:") and values.get("init") == "scratch":
            problems.append(f'{where}.init: "scratch" discards the weights of {model!r}; use "pretrained" or "auto"')
        if values.get("tokenizer") == "train" and model not in _preset_names() and values.get("init") != "scratch":
            # a new WordPiece vocabulary numbers its tokens afresh: the loaded embeddings would mean other words
            problems.append(
                f'{where}.tokenizer: "train" builds a new vocabulary, but {model!r} brings weights trained with '
                'its own; use tokenizer = "auto" (the model\'s tokenizer) or init = "scratch" to train both anew'
            )
    if isinstance(values.get("device"), str):
        from engine.device import device_problem

        why = device_problem(values["device"], str(values.get("launcher", "none")))
        if why:
            problems.append(f"{where}.device: {why}")
    gpus = values.get("gpus")
    if isinstance(gpus, int) and gpus > 1 and values.get("launcher", "none") == "none":
        # one process uses one GPU: the others would be reserved by the scheduler and sit idle
        fix = f'launcher = "torchrun" with nproc_per_node = {gpus} (DDP), or ' if task in ALL_TRAIN else ""
        problems.append(f"{where}.gpus: {gpus} GPUs for one process, which uses only one; set {fix}gpus = 1")
    if values.get("trust_remote_code") is True:
        pass  # allowed; the job warns at start
    if len(problems) > n_before:
        return None
    if task == "study":
        values.setdefault("model", "")
    return Experiment(**values)


def _applies_to(name: str, key: Key) -> list[str]:
    return list(key.tasks) + [t for t, keys in STEP_KEYS.items() if name in keys]


def _check_steps(where: str, task, raw: dict, values: dict, problems: list[str]) -> None:
    """Keys of push steps, studies and seeds."""
    if task == "push":
        if "hub_model_id" not in raw:
            problems.append(
                f"{where}: missing required key 'hub_model_id' for task 'push' ({EXPERIMENT_KEYS['hub_model_id'].help})"
            )
        repo = values.get("hub_model_id")
        if isinstance(repo, str) and (repo.count("/") > 1 or not all(repo.split("/"))):
            problems.append(
                f"{where}.hub_model_id: {_describe(repo)} is not a repository id; expected OWNER/NAME or NAME"
            )
        model = values.get("model")
        if isinstance(model, str) and not model.startswith("run:"):
            problems.append(
                f"{where}.model: a push step uploads a finished run; expected run:<experiment>, got {_describe(model)}"
            )
    if task == "study":
        steps = values.get("steps", ())
        if not steps:
            problems.append(f"{where}.steps: a study needs at least one step (the experiments it runs)")
        elif len(set(steps)) != len(steps):
            problems.append(f"{where}.steps: {_describe(next(s for s in steps if steps.count(s) > 1))} is listed twice")
    seeds = values.get("seeds", ())
    if seeds and len(set(seeds)) != len(seeds):
        problems.append(
            f"{where}.seeds: seed {next(s for s in seeds if seeds.count(s) > 1)} is listed twice; each seed runs once"
        )
    if seeds and "seed" in raw:
        problems.append(f"{where}: set seed or seeds, not both (seeds = [...] runs once per seed)")


def _check_best(where: str, task: str, values: dict, problems: list[str]) -> None:
    """The best-model, early-stopping and out-of-memory keys of a training experiment, together."""
    from engine.metrics.best import BEST_METRICS, metric_name

    metric = metric_name(str(values.get("metric_for_best_model", "")))
    known = BEST_METRICS[task]
    if metric and metric not in known:
        problems.append(
            f"{where}.metric_for_best_model: {_describe(metric)} is not a metric a {task} evaluation reports"
            f"{_suggest(metric, known)}; expected one of {', '.join(known)}"
        )
    elif metric == "pseudo_perplexity" and not values.get("pseudo_perplexity_samples"):
        problems.append(
            f"{where}.metric_for_best_model: pseudo_perplexity is computed only with pseudo_perplexity_samples > 0; "
            "set it, or pick another metric"
        )
    patience = values.get("early_stopping_patience", 0)
    if values.get("early_stopping_threshold", 0) and not patience:
        problems.append(
            f"{where}.early_stopping_threshold: has no effect without early stopping; "
            "set early_stopping_patience (evaluations without improvement before stopping)"
        )
    if patience and values.get("eval_each_epoch") is False and not values.get("eval_steps"):
        problems.append(
            f"{where}.early_stopping_patience: needs evaluations during training, but eval_each_epoch = false "
            "evaluates only at the end; set eval_each_epoch = true or eval_steps"
        )
    if values.get("auto_find_batch_size") and values.get("launcher", "none") != "none":
        problems.append(
            f"{where}.auto_find_batch_size: works in a single training process only; "
            'set launcher = "none", or lower batch_size by hand'
        )


def _parse_sweep(where: str, task, raw: Any, values: dict, problems: list[str]) -> SweepSpec | None:
    """``[experiment.sweep]`` checked key by key; every problem is one line naming ``where.key``."""
    n_before = len(problems)
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a table ([experiment.sweep]), got {_describe(raw)}")
        return None
    if task is not None and task not in ALL_TRAIN:
        problems.append(f"{where}: not used by task {task!r} (applies to: {', '.join(ALL_TRAIN)})")
        return None
    if values.get("seeds"):
        problems.append(
            f"{where}: a sweep does not take seeds (each trial is one run); drop seeds, or sweep `seed` as a "
            "parameter (seed = [1, 2, 3]) to see the spread"
        )
    for k in raw:
        if k not in SWEEP_KEYS:
            known = ", ".join(SWEEP_KEYS)
            problems.append(f"{where}.{_shown_key(k)}: unknown key{_suggest(k, SWEEP_KEYS)}; known keys: {known}")

    def get(name: str, key: Key):
        return _check_value(where, name, key, raw[name], problems) if name in raw else key.default

    method = get("method", Key("str", "tpe", "", choices=SWEEP_METHODS))
    pruner = get("pruner", Key("str", "none", "", choices=SWEEP_PRUNERS))
    direction = get("direction", Key("str", None, "", choices=("maximize", "minimize")))
    parallel = get("parallel", Key("int", 1, "", minimum=1, maximum=1024))
    trials = get("trials", Key("int", None, "", minimum=1, maximum=100_000))
    storage = get("storage", Key("str", "", ""))
    if isinstance(storage, str) and storage and not re.match(r"^[a-z][a-z0-9+]*://", storage):
        problems.append(
            f"{where}.storage: {_describe(storage)} is not a database URL; expected e.g. "
            '"postgresql://user@host/db" (or leave it out: SQLite in the runs directory)'
        )
    objectives = SWEEP_OBJECTIVES.get(task or "", ())
    objective = get("objective", Key("str", None, ""))
    if objective is None and objectives:
        objective = objectives[0]
    elif isinstance(objective, str) and objectives and objective not in objectives:
        problems.append(
            f"{where}.objective: {_describe(objective)} is not a metric task {task!r} reports per evaluation"
            f"{_suggest(objective, objectives)}; expected one of {', '.join(objectives)}"
        )
    if direction is None and isinstance(objective, str):
        from engine.metrics.scale import metric_scale

        direction = "minimize" if metric_scale(objective, task or "").higher_is_better is False else "maximize"
    params = _parse_parameters(f"{where}.parameters", task, raw.get("parameters"), problems)
    if len(problems) > n_before or params is None:
        return None
    spec = SweepSpec(
        method=method,
        objective=objective or "",
        direction=direction or "maximize",
        trials=trials or 10,
        parallel=parallel,
        pruner=pruner,
        storage=storage,
        parameters=params,
    )
    if method == "grid":
        stepless = [p.name for p in params if p.is_range and not p.step]
        if stepless:
            problems.append(
                f"{where}.parameters.{stepless[0]}: a grid needs a list of values or a range with `step`; "
                'give a list, add step, or use method = "random" / "tpe"'
            )
            return None
        size = spec.space_size() or 0
        if trials is None:
            spec = dataclasses.replace(spec, trials=size)
        elif trials > size:
            problems.append(
                f"{where}.trials: {trials} trials, but the grid has only {size} combinations; "
                f"set trials <= {size} or leave it out (all of them)"
            )
            return None
    return spec


def _shown_key(name: str) -> str:
    """A key as a problem line shows it: a bare name, or quoted when it holds anything else (a newline)."""
    return name if re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", name) else _describe(name)


def _parse_parameters(where: str, task, raw: Any, problems: list[str]) -> tuple[SweepParam, ...] | None:
    """``[experiment.sweep.parameters]``: manifest keys of the task, each a list (categorical) or a range."""
    if raw is None:
        problems.append(f"{where}: missing; name the keys to search: learning_rate = {{ low = 1e-5, high = 1e-3 }}")
        return None
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a table of keys, got {_describe(raw)}")
        return None
    if not raw:
        problems.append(f"{where}: empty; name at least one key to search")
        return None
    out = []
    for name, value in raw.items():
        key = EXPERIMENT_KEYS.get(name)
        if key is None:
            problems.append(f"{where}.{_shown_key(name)}: unknown key{_suggest(name, EXPERIMENT_KEYS)}")
            continue
        if name in UNSWEPT or key.type not in ("str", "int", "float", "bool"):
            problems.append(f"{where}.{name}: cannot be swept (a sweep varies settings of one experiment)")
            continue
        if task and task not in key.tasks:
            problems.append(f"{where}.{name}: not used by task {task!r} (applies to: {', '.join(key.tasks)})")
            continue
        param = _parse_parameter(where, name, key, value, problems)
        if param is not None:
            out.append(param)
    return tuple(out)


def _parse_parameter(where: str, name: str, key: Key, value: Any, problems: list[str]) -> SweepParam | None:
    n_before = len(problems)
    if isinstance(value, list):
        checked = []
        for v in value:  # the first bad value says it all
            checked.append(_check_value(where, name, key, v, problems))
            if len(problems) > n_before:
                return None
        if len(checked) < 2:
            problems.append(
                f"{where}.{name}: a list of {len(checked)} value{'s' if len(checked) != 1 else ''} is no search; "
                f"give two or more values, or set {name} in the experiment itself"
            )
            return None
        if len(set(map(repr, checked))) != len(checked):
            problems.append(f"{where}.{name}: a value is listed twice; each value is tried once")
            return None
        return SweepParam(name=name, values=tuple(checked))
    if not isinstance(value, dict):
        problems.append(
            f"{where}.{name}: expected a list of values (categorical) or a range {{ low = ..., high = ... }}, "
            f"got {_describe(value)}"
        )
        return None
    if key.type not in ("int", "float"):
        what = _TYPE_WORDS[key.type]
        problems.append(f"{where}.{name}: a range needs a number key, and {name} is {what}; give a list")
        return None
    for k in value:
        if k not in _RANGE_KEYS:
            hint = _suggest(k, _RANGE_KEYS)
            problems.append(f"{where}.{name}.{_shown_key(k)}: unknown key{hint}; a range has low, high, log, step")
    for k in ("low", "high"):
        if k not in value:
            problems.append(f"{where}.{name}: a range needs {k}")
    if len(problems) > n_before:
        return None
    low = _check_value(f"{where}.{name}", "low", dataclasses.replace(key, choices=()), value["low"], problems)
    high = _check_value(f"{where}.{name}", "high", dataclasses.replace(key, choices=()), value["high"], problems)
    log = _check_value(f"{where}.{name}", "log", Key("bool", False, ""), value.get("log", False), problems)
    step = None
    if "step" in value:
        step = _check_value(f"{where}.{name}", "step", Key(key.type, None, "", minimum=0), value["step"], problems)
        if step is not None and step <= 0:
            problems.append(f"{where}.{name}.step: expected a step above 0, got {step!r}")
    if len(problems) > n_before:
        return None
    if low >= high:
        problems.append(
            f"{where}.{name}: low {low!r} must be below high {high!r} (an empty range); "
            "swap them, or set the key in the experiment itself"
        )
        return None
    if log and step is not None:
        problems.append(f"{where}.{name}: log and step do not go together; drop one")
        return None
    if log and low <= 0:
        problems.append(f"{where}.{name}: a log range needs low above 0, got {low!r}")
        return None
    return SweepParam(name=name, low=low, high=high, log=bool(log), step=step, integer=key.type == "int")


def _preset_names():
    return PRESETS


def _check_graph(experiments: list[Experiment], problems: list[str]) -> None:
    by_name = {e.name: e for e in experiments}
    for i, exp in enumerate(experiments):
        for dep in exp.dependencies:
            if dep not in by_name:
                key = "steps" if exp.task == "study" else ("model" if dep == exp.model_run else "depends_on")
                problems.append(
                    f'experiment {i + 1} "{exp.name}".{key}: unknown experiment {dep!r}'
                    f"{_suggest(dep, by_name)}; expected one of: {', '.join(by_name)}"
                )
            elif dep == exp.name:
                problems.append(f'experiment {i + 1} "{exp.name}".depends_on: an experiment cannot depend on itself')
    if problems:
        return
    # Cycle detection (DFS with colours); report the cycle as a path.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> bool:
        state[n] = 1
        stack.append(n)
        for dep in by_name[n].dependencies:
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep]
                idx = [e.name for e in experiments].index(cycle[0])
                problems.append(
                    f'experiment {idx + 1} "{cycle[0]}": dependency cycle {" -> ".join(cycle)}; '
                    "remove one of these links"
                )
                return True
            if state.get(dep) is None and visit(dep):
                return True
        stack.pop()
        state[n] = 2
        return False

    for exp in experiments:
        if state.get(exp.name) is None and visit(exp.name):
            return


def reference_markdown() -> str:
    """The manifest reference table used in the README (kept in sync by a test)."""
    lines = ["| key | type | default | tasks | meaning |", "|---|---|---|---|---|"]
    for name, key in EXPERIMENT_KEYS.items():
        default = "required" if key.required else ("—" if key.default is None else f"`{_toml(key.default)}`")
        tasks = "all" if key.tasks == TASKS else ", ".join(key.tasks)
        lines.append(f"| `{name}` | {key.type} | {default} | {tasks} | {key.help} |")
    lines += ["", "| `[settings]` key | type | default | meaning |", "|---|---|---|---|"]
    for name, key in SETTINGS_KEYS.items():
        lines.append(f"| `{name}` | {key.type} | `{_toml(key.default)}` | {key.help} |")
    return "\n".join(lines) + "\n"


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return repr(v)


# -- JSON Schema for editors: generated from the same key tables ---------

_SCHEMA_TYPES = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
}


def _type_schema(type_name: str) -> dict:
    if type_name.startswith("list[") and type_name.endswith("]"):
        return {"type": "array", "items": _type_schema(type_name[5:-1])}
    if "|" in type_name:  # e.g. "int|float"
        return {"anyOf": [_type_schema(t) for t in type_name.split("|")]}
    return dict(_SCHEMA_TYPES[type_name])


def _key_schema(key: Key) -> dict:
    out = _type_schema(key.type)
    out["description"] = key.help
    if key.choices:
        if key.type.startswith("list["):
            out["items"]["enum"] = list(key.choices)
        else:
            out["enum"] = list(key.choices)
    if key.minimum is not None:
        out["minimum"] = key.minimum
    if key.default is not None and not key.required:
        out["default"] = list(key.default) if isinstance(key.default, tuple) else key.default
    return out


def _schema_tasks() -> tuple[tuple[str, ...], dict]:
    """Every task and, per pipeline-step task, the model keys it takes too (when the table has them)."""
    module = sys.modules[__name__]
    return TASKS + tuple(getattr(module, "STEP_TASKS", ())), dict(getattr(module, "STEP_KEYS", {}))


def json_schema() -> dict:
    """A JSON Schema (draft-07) of ``experiments.toml``: types, defaults, choices, help, per-task keys.

    Built from :data:`EXPERIMENT_KEYS` / :data:`SETTINGS_KEYS`, the tables the
    validator reads, so the two cannot drift apart: a key that does not apply to
    the experiment's task is rejected, a required key is required where it applies,
    and training tasks require ``dataset``. What a schema cannot say (dependency
    graph, duplicate names) stays with ``lmconsole check``.
    """
    tasks, step_keys = _schema_tasks()
    exp_props = {name: _key_schema(key) for name, key in EXPERIMENT_KEYS.items()}
    exp_props["name"]["pattern"] = SAFE_NAME.pattern
    exp_props["sweep"] = sweep_schema()

    def applies(name: str, key: Key, task: str) -> bool:
        return task in key.tasks or name in step_keys.get(task, ())

    per_task = []
    for task in tasks:
        then: dict = {}
        banned = {
            name: {"not": {}, "description": f"not used by task {task!r}"}
            for name, key in EXPERIMENT_KEYS.items()
            if not applies(name, key, task)
        }
        if task not in ALL_TRAIN:
            banned["sweep"] = {"not": {}, "description": f"not used by task {task!r}"}
        if banned:
            then["properties"] = banned
        required = [
            name
            for name, key in EXPERIMENT_KEYS.items()
            if key.required and name not in ("name", "task") and applies(name, key, task)
        ]
        if task in ALL_TRAIN:
            required.append("dataset")
        if required:
            then["required"] = required
        if then:
            per_task.append({"if": {"properties": {"task": {"const": task}}, "required": ["task"]}, "then": then})
    experiment = {
        "type": "object",
        "description": "One experiment; keys that do not apply to its task are rejected.",
        "properties": exp_props,
        "required": ["name", "task"],
        "additionalProperties": False,
        "allOf": per_task,
    }
    settings = {
        "type": "object",
        "description": "Settings for the whole manifest.",
        "properties": {name: _key_schema(key) for name, key in SETTINGS_KEYS.items()},
        "additionalProperties": False,
    }
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://lmconsole.invalid/experiments.schema.json",
        "title": "lmconsole experiments.toml",
        "description": "Experiment manifest of lmconsole (generated by `lmconsole check --schema`).",
        "type": "object",
        "properties": {"settings": settings, "experiment": {"type": "array", "items": experiment}},
        "additionalProperties": False,
    }


def sweep_schema() -> dict:
    """JSON Schema of ``[experiment.sweep]``; what it cannot say (low < high, the grid's size) ``check`` says."""
    number = {"type": "number"}
    swept = sorted(
        n for n, k in EXPERIMENT_KEYS.items() if n not in UNSWEPT and k.type in ("str", "int", "float", "bool")
    )
    param = {
        "anyOf": [
            {"type": "array", "minItems": 2, "description": "categorical: each value is tried (the grid's points)"},
            {
                "type": "object",
                "description": "a range: low..high, `log` for a log scale, `step` for a grid or whole steps",
                "properties": {"low": number, "high": number, "log": {"type": "boolean"}, "step": number},
                "required": ["low", "high"],
                "additionalProperties": False,
            },
        ]
    }
    return {
        "type": "object",
        "description": "A hyperparameter search over this experiment's keys (Optuna); each trial is a run.",
        "properties": {
            "method": {"enum": list(SWEEP_METHODS), "default": "tpe"},
            "objective": {
                "enum": sorted({m for ms in SWEEP_OBJECTIVES.values() for m in ms}),
                "description": "a metric the task reports per evaluation; default: the task's first",
            },
            "direction": {"enum": ["maximize", "minimize"], "description": "default: from the metric"},
            "trials": {"type": "integer", "minimum": 1, "description": "grid: all combinations unless fewer"},
            "parallel": {"type": "integer", "minimum": 1, "default": 1},
            "pruner": {"enum": list(SWEEP_PRUNERS), "default": "none"},
            "storage": {"type": "string", "description": "SQLAlchemy URL of a shared study; default SQLite"},
            "parameters": {
                "type": "object",
                "minProperties": 1,
                "propertyNames": {"enum": swept},
                "additionalProperties": param,
            },
        },
        "required": ["parameters"],
        "additionalProperties": False,
    }
