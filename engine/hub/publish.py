"""Publish a finished run to the Hugging Face Hub with a generated model card.

``stage(run, folder)`` writes exactly what would be uploaded (model weights in
safetensors, config, tokenizer, README.md model card); ``push`` stages into a
temporary folder outside the run and uploads it with ``HfApi.create_repo``
(``exist_ok=True``: an existing repo is reused, never deleted) and
``upload_folder``. A dry run stages into ``--out`` or a new temporary folder
(never the current directory) and only regular files are copied (no symlinks).
The run directory is never modified. The token comes from
``HF_TOKEN`` or the huggingface_hub login and is only handed to ``HfApi``.
"""

from __future__ import annotations

import math
import re
import shutil
import statistics
import tempfile
from pathlib import Path

from engine.events import StepLogged
from engine.files import read_regular_file
from engine.hub.resolve import hub_reachable
from engine.metrics.scale import metric_scale
from engine.secrets import hf_token, redact

TASK_META = {
    "pretrain": ("fill-mask", "Masked language modelling + next sentence prediction (BERT pretraining)"),
    "classify": ("text-classification", "Sequence classification"),
    "qa": ("question-answering", "Extractive question answering (SQuAD v2 style, with no-answer)"),
}
METRIC_KEYS = {
    "pretrain": ("mlm_perplexity", "mlm_accuracy", "nsp_accuracy"),
    "classify": ("accuracy", "precision", "recall", "f1", "macro_f1"),
    "qa": ("exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1", "bleu", "rougeL", "meteor"),
}


class PushError(Exception):
    """A one-line reason with what to do; the run is untouched."""


def _tokens_per_s(run) -> float | None:
    # events.jsonl is read as found: a hand-edited or damaged line may hold any type here
    vals = [
        float(v)
        for e in run.events()
        if isinstance(e, StepLogged)
        and isinstance(v := e.tokens_per_s, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and v > 0
    ]
    return statistics.median(vals) if vals else None


def _text(v) -> str:
    """A config value shown in the card as text: a wrong-typed one (a hand-edited config.json) as written."""
    return v if isinstance(v, str) else "" if v is None else str(v)


def card_data(run, repo_id: str):
    """The card's metadata as huggingface_hub ``ModelCardData`` with ``EvalResult``s.

    Evaluation results name the dataset by its real Hub id (``nyu-mll/glue``, config and
    split). A run on the embedded stand-in corpora has no Hub dataset: it gets no
    ``model-index`` (its metrics are in the card's text), never an ``embedded:`` dataset type.
    """
    from huggingface_hub import EvalResult, ModelCardData

    cfg = run.config()
    res = run.results()
    final = res.get("final", {}) if isinstance(res.get("final"), dict) else {}
    task = _text(cfg.get("task"))
    pipeline, task_text = TASK_META.get(task, ("", task))
    dataset = _text(cfg.get("dataset"))
    split = _text(final.get("eval_split") or res.get("eval_split") or cfg.get("eval_split"))
    real_dataset = bool(dataset) and not dataset.startswith("embedded:") and not Path(dataset).is_absolute()
    evals = [
        EvalResult(
            task_type=pipeline,
            task_name=task_text,
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_config=cfg.get("dataset_config") or None,
            dataset_split=split or None,
            metric_type=k,
            metric_name=f"{k} ({metric_scale(k, task).label})",
            metric_value=float(final[k]),
        )
        for k in METRIC_KEYS.get(task, ())
        if isinstance(final.get(k), (int, float)) and real_dataset
    ]
    base = _text(cfg.get("model"))
    return ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag=pipeline or None,
        tags=["lmconsole", "bert", task],
        datasets=[dataset] if real_dataset else None,
        model_name=repo_id.split("/")[-1] if evals else None,
        eval_results=evals or None,
        base_model=base
        if base and not base.startswith("run:") and ("/" in base or base.startswith("bert-base-"))
        else None,
    )


CARD_HYPERPARAMETERS = (
    "epochs",
    "max_steps",
    "learning_rate",
    "warmup",
    "weight_decay",
    "batch_size",
    "gradient_accumulation_steps",
    "max_seq_length",
    "seed",
    "mlm_probability",
    "doc_stride",
)


def model_card(run, repo_id: str) -> str:
    """The README.md of an upload: huggingface_hub ``ModelCard`` = ``card_data`` + the text below."""
    from huggingface_hub import ModelCard

    cfg = run.config()
    res = run.results()
    final = res.get("final", {}) if isinstance(res.get("final"), dict) else {}
    task = _text(cfg.get("task"))
    lines = [f"# {repo_id.split('/')[-1]}", ""]
    lines += [f"Trained with lmconsole, run `{run.experiment}/{run.run_id}`.", ""]
    lines += _card_origin(cfg, res, final, task)
    lines += ["## Hyperparameters", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {cfg[k]} |" for k in CARD_HYPERPARAMETERS if k in cfg and cfg[k] not in (None, 0, "")]
    lines.append("")
    lines += _card_tables(run)
    lines += _card_results(run, final, task)
    card = ModelCard(f"---\n{card_data(run, repo_id).to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")
    return str(card)


def _card_origin(cfg: dict, res: dict, final: dict, task: str) -> list[str]:
    """Base model, task, data and splits."""
    dataset = _text(cfg.get("dataset"))
    split = _text(final.get("eval_split") or res.get("eval_split") or cfg.get("eval_split"))
    base = _text(cfg.get("model"))
    start = _text(res.get("start_model"))
    origin = f" (the finished run `{start}` of this study)" if base.startswith("run:") and start else ""
    lines = ["## Base model", "", f"`{base}`{origin}, initialisation `{cfg.get('init', 'auto')}`.", ""]
    lines += ["## Task", "", TASK_META.get(task, ("", task))[1] + ".", ""]
    lines += [
        "## Data and splits",
        "",
        f"- dataset: `{dataset}` (config `{cfg.get('dataset_config', '')}`)",
        f"- trained on split `{cfg.get('train_split', 'train')}`, evaluated on `{split}`",
    ]
    if res.get("note", ""):
        lines.append(f"- note: {res['note']}")
    if dataset.startswith("embedded:"):
        lines.append(
            f"- `{dataset}` is lmconsole's generated offline stand-in, not a Hub dataset: "
            "the metrics below are not comparable with published results on the real one"
        )
    lines.append("")
    return lines


def _card_tables(run) -> list[str]:
    """Parameter tables (the diffs first) and the per-epoch metrics."""
    tables = run.table_names()
    lines = ["## Parameters", ""]
    shown = [t for t in tables if t.startswith("params_diff")] + [
        t for t in tables if t in ("params_classification", "params_qa", "params_pretraining")
    ]
    for name in shown[:3]:
        lines += [run.read_table(name).to_markdown(), ""]
    if not shown:
        lines += ["(no parameter table was recorded for this run)", ""]
    lines += ["## Metrics per epoch", ""]
    if "epochs" in tables:
        lines += [run.read_table("epochs").to_markdown(), ""]
    return lines


def _card_results(run, final: dict, task: str) -> list[str]:
    """Final metrics with their scales, the flags on degenerate results, throughput."""
    from engine.metrics.flags import run_flags

    lines = ["## Final metrics", "", "| metric | scale | value |", "|---|---|---:|"]
    for k, v in final.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            lines.append(f"| {k} | {metric_scale(k, task).label or '-'} | {v:.6g} |")
    lines.append("")
    lines += ["## Flags on degenerate results", ""]
    lines += [f"- **{f.metric}**: {f.message}" for f in run_flags(run)] or ["None raised."]
    lines.append("")
    tps = _tokens_per_s(run)
    lines += [
        "## Throughput",
        "",
        f"Median training throughput: {tps:,.0f} tokens/s (non-padding tokens)." if tps else "Not recorded.",
        "",
    ]
    return lines


def stage(run, folder: Path, repo_id: str) -> list[Path]:
    """Write the upload folder: model files + model card. Returns the files."""
    model = run.final_model()
    if model is None:
        raise PushError(
            f"run {run.experiment}/{run.run_id} has no final model (status {run.status().get('status')}); "
            "only finished training runs can be pushed"
        )
    folder = Path(folder)
    _check_run_dir(run)
    if model.is_symlink() or model.resolve().parent != run.path.resolve():
        raise PushError(
            f"{run.experiment}/{run.run_id}/model is a symlink: only a real model folder inside the run is pushed"
        )
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise PushError(f"{folder} already exists and is not empty: stage into a new folder (--out NEW) or delete it")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for f in sorted(model.iterdir()):
            if f.is_symlink() or not f.is_file():
                continue  # only regular files of the run itself: a symlink could lead anywhere (/etc/shadow)
            try:
                data = read_regular_file(f, run.path)
            except OSError:
                continue
            (folder / f.name).write_bytes(data)
            shutil.copystat(f, folder / f.name, follow_symlinks=False)
        (folder / "README.md").write_text(redact(model_card(run, repo_id)), encoding="utf-8")
        for f in ("epochs",):
            if f in run.table_names():
                (folder / "metrics_per_epoch.json").write_text(run.read_table(f).to_json())
    except BaseException:
        # a half-staged folder (a full disk) would look like one ready to upload: it goes, whole
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        else:  # it was empty before: empty again
            for p in folder.iterdir():
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
        raise
    return sorted(p for p in folder.iterdir() if p.is_file())


REPO_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")


def check_repo_id(repo_id: str) -> str:
    """Hub repo ids are OWNER/NAME: letters, digits, '-', '_', '.', no '..' or '--', no leading/trailing '.'/'-'."""
    parts = str(repo_id).split("/")
    if (
        len(parts) != 2
        or not all(REPO_PART.match(p) and ".." not in p and "--" not in p for p in parts)
        or parts[1].endswith(".git")
    ):
        raise PushError(
            f"--repo {repo_id!r} is not a Hub repo id: use OWNER/NAME with letters, digits, '-', '_' or '.' "
            "(no '..', no leading or trailing '.' or '-')"
        )
    return repo_id


def _check_run_dir(run) -> None:
    """Refuse a run directory (or its experiment folder) that is a symlink: it may point outside runs/."""
    for p in (run.path, run.path.parent):
        if p.is_symlink():
            raise PushError(f"{p} is a symlink: only runs in real folders under the runs directory are pushed")


def _hub_error(exc: Exception, repo_id: str) -> PushError:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 401:
        return PushError(
            "the Hugging Face token was rejected (401): create a new write token and set HF_TOKEN "
            "or run `hf auth login`"
        )
    if status == 403:
        return PushError(
            f"no write access to {repo_id} (403): use a namespace you own or a token with write permission"
        )
    if status == 404:
        return PushError(f"{repo_id} not found (404): check the owner name")
    return PushError(
        f"upload to {repo_id} failed: {redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__}"
    )


def push(
    run,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    dry_run: bool = False,
    out: Path | None = None,
    api=None,
) -> dict:
    check_repo_id(repo_id)
    if dry_run:
        # Never the current directory: --out, or a new temporary folder that stays for the user to inspect.
        folder = Path(out) if out else Path(tempfile.mkdtemp(prefix=f"lmconsole-push-{run.experiment}-{run.run_id}-"))
        files = stage(run, folder, repo_id)
        return {
            "dry_run": True,
            "folder": str(folder),
            "files": [f.name for f in files],
            "repo_id": repo_id,
            "private": private,
            "revision": revision,
        }
    if api is None:
        api = hub_api()
    message = f"Upload {run.experiment}/{run.run_id} from lmconsole"
    with tempfile.TemporaryDirectory(prefix="lmconsole-push-") as tmp:
        files = stage(run, Path(tmp), repo_id)
        info = upload(api, Path(tmp), repo_id, private=private, revision=revision, message=message)
    return {
        "dry_run": False,
        "repo_id": repo_id,
        "private": private,
        "revision": revision,
        "files": [f.name for f in files],
        "commit": commit_of(info),
    }


def hub_api(later: str = "push from a machine with access, or use --dry-run and upload the folder later"):
    """An ``HfApi`` with the user's token, or :class:`PushError`.

    No token or an unreachable Hub raises it; ``later`` says what to do then.
    """
    token = hf_token()
    if not token:
        raise PushError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)")
    if not hub_reachable():
        raise PushError(f"the Hugging Face Hub is unreachable (or HF_HUB_OFFLINE is set): {later}")
    from huggingface_hub import HfApi

    return HfApi(token=token)


def upload(api, folder: Path, repo_id: str, private: bool = False, revision: str | None = None, message: str = ""):
    """Create (or reuse) the repo and upload ``folder``; Hub errors become a one-line :class:`PushError`."""
    try:
        api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        return api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision, commit_message=message
        )
    except PushError:
        raise
    except Exception as exc:  # noqa: BLE001 - mapped to a one-line message
        raise _hub_error(exc, repo_id) from None


def commit_of(info) -> str:
    return str(getattr(info, "oid", "") or getattr(info, "commit_url", "") or "")
