"""The experiment manifest (``experiments.toml``): schema, parsing and validation.

Every key is declared once in :data:`EXPERIMENT_KEYS` / :data:`SETTINGS_KEYS`
with its type, default, the tasks it applies to and a one-line meaning; the
parser, the validator and the README's manifest reference all come from there.
Errors never raise a traceback at the user: :class:`ManifestError` carries one
line per problem, naming the experiment and the key and saying what was expected.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from .errors import ManifestError

TASKS = ("inspect", "pretrain", "classify", "qa")
# Pipeline steps that build no model (issue 14): ``push`` uploads a finished run, ``study``
# names a group of steps that one action runs in dependency order. Keys whose ``tasks``
# is the default (the four model tasks, "all" in the reference) do not apply to them.
STEP_TASKS = ("push", "study")
HEADS = ("base", "pretraining", "mlm", "classification", "qa")
TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Key:
    type: str  # "str" | "int" | "float" | "bool" | "list[str]" | "int|float"
    default: Any
    help: str
    tasks: tuple[str, ...] = TASKS
    choices: tuple = ()
    minimum: float | None = None
    required: bool = False
    maximum: float | None = None  # issue 13: probabilities and seeds have an upper bound too


ALL_TRAIN = ("pretrain", "classify", "qa")

EXPERIMENT_KEYS: dict[str, Key] = {
    "name": Key(
        "str", None, "Unique experiment name; also the run directory name (letters, digits, . _ -).", required=True
    ),
    "task": Key("str", None, "What the experiment does.", choices=TASKS + STEP_TASKS, required=True),
    "description": Key("str", "", "Free text shown in the console."),
    "model": Key(
        "str",
        None,
        "Preset (`bert-base`, `bert-tiny`, `bert-micro`), Hub id, local folder, or `run:<experiment>` (that experiment's final model; makes it a dependency).",
        required=True,
    ),
    "init": Key(
        "str",
        "auto",
        "`pretrained` loads weights; `scratch` builds the model from its config with random weights; `auto` = scratch for presets, pretrained otherwise.",
        choices=("auto", "scratch", "pretrained"),
    ),
    "tokenizer": Key(
        "str",
        "auto",
        "`auto` = the model's own tokenizer (presets: WordPiece trained on the training split, cached); `train` forces training one; or a Hub id / local folder.",
    ),
    "vocab_size": Key("int", 8000, "Vocabulary size of a trained WordPiece tokenizer.", minimum=100),
    "trust_remote_code": Key(
        "bool", False, "Allow custom model code from the Hub (off unless you opt in; a warning is shown)."
    ),
    "heads": Key(
        "list[str]",
        ["base", "pretraining", "classification", "qa"],
        "Heads whose parameter tables an `inspect` experiment writes.",
        tasks=("inspect",),
        choices=HEADS,
    ),
    "dataset": Key(
        "str",
        None,
        "Hub id (`Salesforce/wikitext`), local folder in the Hub layout, or `embedded:<wikitext|sst2|squad_v2>`.",
        tasks=ALL_TRAIN,
    ),
    "dataset_config": Key(
        "str",
        "",
        "Dataset configuration (`wikitext-2-raw-v1`, `sst2`, `squad_v2`); empty = the default one.",
        tasks=ALL_TRAIN,
    ),
    "train_split": Key("str", "train", "Split to train on.", tasks=ALL_TRAIN),
    "eval_split": Key(
        "str", "validation", "Split to evaluate on (hidden-label splits fall back to `validation`).", tasks=ALL_TRAIN
    ),
    "text_column": Key(
        "str", "text", "Text column (`text` for wikitext, `sentence` for SST-2).", tasks=("pretrain", "classify")
    ),
    "label_column": Key("str", "label", "Label column for classification.", tasks=("classify",)),
    "max_train_samples": Key("int", 0, "Use at most this many training rows (0 = all).", tasks=ALL_TRAIN, minimum=0),
    "max_eval_samples": Key("int", 0, "Evaluate on at most this many rows (0 = all).", tasks=ALL_TRAIN, minimum=0),
    "epochs": Key("int", 3, "Training epochs.", tasks=ALL_TRAIN, minimum=1),
    "max_steps": Key(
        "int", 0, "Stop after this many optimizer steps (0 = run all epochs).", tasks=ALL_TRAIN, minimum=0
    ),
    "learning_rate": Key(
        "float", 5e-5, "Peak learning rate of AdamW (linear warmup, then linear decay).", tasks=ALL_TRAIN, minimum=0
    ),
    "warmup": Key(
        "float", 0.06, "Warmup: a ratio of all steps when < 1, else a number of steps.", tasks=ALL_TRAIN, minimum=0
    ),
    "weight_decay": Key(
        "float", 0.01, "AdamW weight decay (not applied to biases and LayerNorm).", tasks=ALL_TRAIN, minimum=0
    ),
    "batch_size": Key("int", 32, "Sequences per micro-batch (per device).", tasks=ALL_TRAIN, minimum=1),
    "eval_batch_size": Key("int", 64, "Sequences per evaluation batch.", tasks=ALL_TRAIN, minimum=1),
    "gradient_accumulation_steps": Key("int", 1, "Micro-batches per optimizer step.", tasks=ALL_TRAIN, minimum=1),
    "max_grad_norm": Key("float", 1.0, "Gradient clipping norm (0 = off).", tasks=ALL_TRAIN, minimum=0),
    "max_seq_length": Key(
        "int", 128, "Maximum tokens per sequence, special tokens included.", tasks=ALL_TRAIN, minimum=16
    ),
    "seed": Key(
        "int", 42, "Random seed (data order, masking, initialisation).", tasks=ALL_TRAIN, minimum=0, maximum=2**32 - 1
    ),
    "logging_steps": Key(
        "int", 20, "Emit a training-metrics event every N optimizer steps.", tasks=ALL_TRAIN, minimum=1
    ),
    "device": Key("str", "auto", "`auto` (CUDA if available, else CPU), `cpu`, `cuda`, `cuda:N`."),
    "precision": Key(
        "str",
        "auto",
        "`auto` = bf16 autocast on GPUs that support it, else fp32; `bf16` also on CPUs with native bf16 (AVX512-BF16 or AMX), an opt-in there; `fp16` is GPU only.",
        choices=("auto", "bf16", "fp16", "fp32"),
    ),
    "num_workers": Key("int", 0, "DataLoader worker processes.", tasks=ALL_TRAIN, minimum=0),
    "nan_policy": Key(
        "str",
        "stop",
        "On a NaN/inf loss: `stop` the job (failed) or `skip` the step.",
        tasks=ALL_TRAIN,
        choices=("stop", "skip"),
    ),
    "launcher": Key(
        "str",
        "none",
        "Run the job as a process under `torchrun` or `accelerate` (DDP; rank 0 writes the run directory).",
        tasks=ALL_TRAIN,
        choices=("none", "torchrun", "accelerate"),
    ),
    "nproc_per_node": Key(
        "int",
        1,
        "Processes per node under the launcher (GPUs per node; CPU processes with gloo).",
        tasks=ALL_TRAIN,
        minimum=1,
    ),
    "nnodes": Key("int", 1, "Nodes under the launcher (multi-node needs `rdzv_endpoint`).", tasks=ALL_TRAIN, minimum=1),
    "rdzv_endpoint": Key(
        "str", "", "Rendezvous `host:port` for multi-node torchrun (`--rdzv-endpoint`).", tasks=ALL_TRAIN
    ),
    "launcher_args": Key(
        "list[str]",
        [],
        'Extra arguments passed to the launcher as they are (e.g. `["--rdzv-id=job7"]`).',
        tasks=ALL_TRAIN,
    ),
    # checkpoints inside an epoch and how many to keep (issue 12: preemption and long epochs)
    "save_steps": Key(
        "int",
        0,
        "Also save a checkpoint every N optimizer steps inside an epoch (0 = off; epoch ends, `save_minutes` and stop signals still save).",
        tasks=ALL_TRAIN,
        minimum=0,
    ),
    "save_minutes": Key(
        "float",
        30.0,
        "Save a checkpoint once this many minutes passed since the last one (0 = off): what a SIGKILL can cost at most.",
        tasks=ALL_TRAIN,
        minimum=0,
    ),
    "save_total_limit": Key(
        "int", 2, "Checkpoints kept per run: the newest N (0 = keep all).", tasks=ALL_TRAIN, minimum=0
    ),
    "depends_on": Key(
        "list[str]", [], 'Experiments that must finish first (besides the one named by `model = "run:..."`).'
    ),
    # queue and GPU scheduling (issue 12)
    "gpus": Key(
        "int",
        -1,
        "GPUs the scheduler hands this job (`CUDA_VISIBLE_DEVICES`); -1 = auto: 1 where CUDA is present, else 0; a torchrun/accelerate job takes `nproc_per_node`.",
        minimum=-1,
    ),
    # pretraining
    "mlm_probability": Key(
        "float",
        0.15,
        "Fraction of tokens selected for masked-LM prediction (80% [MASK], 10% random, 10% kept).",
        tasks=("pretrain",),
        minimum=0,
        maximum=1,
    ),
    "short_seq_prob": Key(
        "float",
        0.1,
        "Probability of a shorter target length when building NSP pairs (BERT recipe).",
        tasks=("pretrain",),
        minimum=0,
        maximum=1,
    ),
    "max_predictions_per_seq": Key(
        "int",
        0,
        "Cap on masked positions per sequence (0 = round(mlm_probability * max_seq_length)).",
        tasks=("pretrain",),
        minimum=0,
    ),
    "pseudo_perplexity_samples": Key(
        "int",
        0,
        "Also compute pseudo-perplexity (Salazar et al. 2020) on this many eval sequences each epoch (0 = off; costs one forward per token).",
        tasks=("pretrain",),
        minimum=0,
    ),
    # question answering
    "doc_stride": Key("int", 128, "Overlap between windows of a long context.", tasks=("qa",), minimum=1),
    "n_best_size": Key("int", 20, "Start/end candidates per feature when decoding answers.", tasks=("qa",), minimum=1),
    "max_answer_length": Key("int", 30, "Longest answer span in tokens.", tasks=("qa",), minimum=1),
    "null_score_diff_threshold": Key(
        "float", 0.0, "Predict no answer when null score - best span score exceeds this.", tasks=("qa",)
    ),
    "eval_each_epoch": Key(
        "bool",
        True,
        "Evaluate after every epoch (else only at the end; SQuAD evaluation is costly).",
        tasks=("qa", "classify"),
    ),
    "text_metrics": Key(
        "str",
        "offline",
        "`offline` = BLEU/ROUGE/METEOR computed locally; `hub` = the `evaluate` modules (needs the Hub).",
        tasks=("qa",),
        choices=("offline", "hub"),
    ),
    # the study as a pipeline (issue 14): push steps, studies, seeds
    "hub_model_id": Key(
        "str",
        None,
        '`push`: Hub repository to upload `model = "run:<experiment>"` to, `OWNER/NAME` or `NAME` (your namespace); the token comes from `HF_TOKEN` / `hf auth login`.',
        tasks=("push",),
    ),
    "hub_private_repo": Key(
        "bool",
        False,
        "`push`: create the repository as private (an existing one keeps its visibility).",
        tasks=("push",),
    ),
    "hub_revision": Key("str", "", "`push`: branch to upload to (created if missing); empty = main.", tasks=("push",)),
    "steps": Key(
        "list[str]",
        [],
        "`study`: experiments that make up the study; running it runs every step without a finished run, dependencies first.",
        tasks=("study",),
    ),
    "seeds": Key(
        "list[int]",
        [],
        "Run the experiment once per seed (replaces `seed`); the runs form a group whose mean ± sample std and n per metric are shown next to each run.",
        tasks=ALL_TRAIN,
    ),
    # issue 17: experiment trackers (report_to) and the Slurm executor
    "report_to": Key(
        "list[str]",
        [],
        "Experiment trackers that also receive the job's metrics, evaluations, results and config (the TrainingArguments name): `tensorboard`, `wandb`, `mlflow`, `trackio`; each needs its extra (`pip install lmconsole[tensorboard]`).",
        tasks=ALL_TRAIN,
        choices=TRACKERS,
    ),
    "executor": Key(
        "str",
        "auto",
        "Where the job runs: `local` (this machine), `slurm` (submitted with sbatch; the run directory must be on a filesystem both see), `auto` = `settings.executor`.",
        choices=("auto", "local", "slurm"),
    ),
    "slurm_partition": Key(
        "str", "", "Slurm partition (`--partition`); empty = `settings.slurm_partition`, else the cluster default."
    ),
    "slurm_account": Key("str", "", "Slurm account (`--account`); empty = `settings.slurm_account`, else none."),
    "slurm_time": Key("str", "", 'Slurm time limit (`--time`, e.g. `"04:00:00"`); empty = the partition default.'),
    "slurm_gpus": Key("int", 0, "GPUs per node to request (`--gpus-per-node`; 0 = none).", minimum=0),
    "slurm_cpus_per_task": Key("int", 0, "CPUs to request (`--cpus-per-task`; 0 = the cluster default).", minimum=0),
    "slurm_requeue": Key(
        "bool",
        True,
        "Requeue on preemption or before the time limit: the job checkpoints on SIGTERM/SIGUSR1 and the requeued job resumes from that checkpoint.",
    ),
    "slurm_args": Key("list[str]", [], 'Extra sbatch options as they are (e.g. `["--qos=high", "--mem=64G"]`).'),
}
# Keys of the model tasks that the pipeline steps take too (besides their own keys above).
STEP_KEYS: dict[str, tuple[str, ...]] = {
    "push": ("name", "task", "description", "model", "depends_on"),
    "study": ("name", "task", "description"),
}

SETTINGS_KEYS: dict[str, Key] = {
    "runs_dir": Key("str", "runs", "Where run directories go (relative to the manifest)."),
    "data_mirror": Key(
        "str", "", "Folder with offline copies of Hub datasets/models as `<owner>/<name>` (also `LMCONSOLE_MIRROR`)."
    ),
    "max_parallel_jobs": Key(
        "int", 1, "Jobs of this runs directory that run at the same time, whoever queued them.", minimum=1
    ),
    # queue and GPU scheduling (issue 12)
    "gpus": Key(
        "str", "all", "GPUs the scheduler may hand out: `all` (every visible one), `none`, or indices like `0,1,3`."
    ),
    # issue 17: the Slurm executor
    "executor": Key(
        "str",
        "local",
        'Default executor of experiments with `executor = "auto"`: `local` or `slurm`.',
        choices=("local", "slurm"),
    ),
    "slurm_partition": Key("str", "", "Default Slurm partition of Slurm jobs."),
    "slurm_account": Key("str", "", "Default Slurm account of Slurm jobs."),
}


def _field(name: str, key: Key):
    default = key.default
    if isinstance(default, list):
        default = tuple(default)
        return field(default=default)
    return field(default=default)


@dataclass(frozen=True)
class Settings:
    runs_dir: str = "runs"
    data_mirror: str = ""
    max_parallel_jobs: int = 1
    executor: str = "local"
    slurm_partition: str = ""
    slurm_account: str = ""
    gpus: str = "all"


def _experiment_fields():
    out = []
    for name, key in EXPERIMENT_KEYS.items():
        default = tuple(key.default) if isinstance(key.default, list) else key.default
        out.append((name, Any, field(default=default)))
    return out


Experiment = dataclasses.make_dataclass(
    "Experiment",
    _experiment_fields(),
    frozen=True,
    namespace={
        "__doc__": "One validated experiment; fields and meanings are listed in EXPERIMENT_KEYS.",
        "dependencies": property(lambda self: _dependencies(self)),
        "model_run": property(lambda self: self.model[4:] if str(self.model).startswith("run:") else None),
        "to_dict": lambda self: {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()
        },
    },
)


def _dependencies(exp) -> tuple[str, ...]:
    if exp.task == "study":
        return tuple(exp.steps)  # a study is its steps; it runs nothing itself
    deps = list(exp.depends_on)
    if exp.model_run and exp.model_run not in deps:
        deps.insert(0, exp.model_run)
    return tuple(deps)


@dataclass(frozen=True)
class Manifest:
    path: Path
    settings: Settings
    experiments: tuple

    def get(self, name: str):
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
    return value


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
    return parse_data(data, path)


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
                f"{top}: unknown top-level key{_suggest(top, ('settings', 'experiment'))}; expected [settings] and [[experiment]] tables"
            )

    settings_raw = data.get("settings", {})
    settings_vals = {}
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


def _parse_experiment(i: int, raw, problems: list[str], seen: dict[str, int]):
    where = f"experiment[{i}]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a table, got {_describe(raw)}")
        return None
    name = raw.get("name")
    if isinstance(name, str):
        where = f'experiment[{i}] "{name}"'
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
            problems.append(f"{where}.name: duplicate name, already used by experiment[{seen[name]}]")
        else:
            seen[name] = i
    task = raw.get("task") if raw.get("task") in TASKS + STEP_TASKS else None
    values = {}
    for k, v in raw.items():
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
    if task in ALL_TRAIN and "dataset" not in raw:
        problems.append(
            f"{where}: missing required key 'dataset' for task {task!r} ({EXPERIMENT_KEYS['dataset'].help})"
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
    """Keys of push steps, studies and seeds (issue 14)."""
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


def _preset_names():
    from .models import PRESETS

    return PRESETS


def _check_graph(experiments, problems: list[str]):
    by_name = {e.name: e for e in experiments}
    for i, exp in enumerate(experiments):
        for dep in exp.dependencies:
            if dep not in by_name:
                key = "steps" if exp.task == "study" else ("model" if dep == exp.model_run else "depends_on")
                problems.append(
                    f'experiment[{i}] "{exp.name}".{key}: unknown experiment {dep!r}'
                    f"{_suggest(dep, by_name)}; expected one of: {', '.join(by_name)}"
                )
            elif dep == exp.name:
                problems.append(f'experiment[{i}] "{exp.name}".depends_on: an experiment cannot depend on itself')
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
                    f'experiment[{idx}] "{cycle[0]}": dependency cycle {" -> ".join(cycle)}; remove one of these links'
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


# -- JSON Schema for editors (issue 17): generated from the same key tables ---------

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
