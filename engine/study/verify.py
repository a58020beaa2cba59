"""``lmconsole verify RUN|STUDY``: recompute every reported number from the saved predictions.

For each finished run, the evaluation split is loaded again exactly as the job loaded it
(dataset, config, split, ``max_eval_samples``) and the metrics are recomputed from what the
job saved, with the same metric functions the job used:

- classify: ``predictions.jsonl`` (text, label, prediction per example) -> accuracy,
  precision, recall, F1, macro F1, confusion matrix, majority baseline (majority class of
  the training split, loaded again too); the saved texts and labels must be the split's;
- qa: ``nbest.json`` + ``na_scores.json`` -> the thresholded ``predictions.json`` (checked),
  every squad_v2 key, the always-empty baseline and the answer-text metrics, against the
  split's gold answers;
- pretrain: the final model on the split's NSP pairs, masked once with the same seed
  (MLM perplexity, MLM accuracy, NSP accuracy of the last epoch);
- inspect: the parameter tables, counted again from the model's config.

Each reported number is compared with its recomputed value (floats within ``rel=1e-6``,
pretraining within 1e-4 since it runs the model again; ints and lists exactly). A mismatch
or a missing file is a failed check; the CLI exits 1 on any.

A rerun (``lmconsole rerun``: its ``environment.json`` names the run it repeats as
``rerun_of``) is also compared with its original: every final metric of the original must be
the rerun's within :data:`RERUN_REL` (equal on the same machine; other thread counts or CPU
kinds move floats in the fourth digit or so). A difference is a failed check, and
:func:`what_differs` names what the two runs did not share (code, data, environment, packages).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from engine.errors import VerifyError

__all__ = ["Check", "verify_run", "VerifyError", "save_summary", "read_summary"]

SUMMARY = "verify.json"  # in the run directory: the last verify's outcome, which the study report states


RERUN_REL = 1e-4  # relative tolerance of a rerun's final metrics against its original's


@dataclass(frozen=True)
class Check:
    run: str
    metric: str
    reported: object
    recomputed: object
    ok: bool
    words: tuple[str, str] = ("reported", "recomputed")  # what the two values are

    def _values(self) -> str:
        return f"{self.words[0]} {_show(self.reported)}, {self.words[1]} {_show(self.recomputed)}"

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark} {self.run} {self.metric}: {self._values()}"

    def short(self) -> str:
        """The check under its run's heading, in a line that fits 80 columns where it can: a
        match shows its value once (a long one, such as the text metrics' variants, not at all)."""
        if not self.ok:
            return f"  FAIL {self.metric}: {self._values()}"
        value = _show(self.reported)
        return f"  ok   {self.metric} = {value}" if len(value) <= 40 else f"  ok   {self.metric} (matches)"


def _show(v) -> str:
    return f"{v:.10g}" if isinstance(v, float) else json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def _same(a, b, rel: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        if math.isinf(a) or math.isinf(b) or math.isnan(a) or math.isnan(b):
            return str(a) == str(b)
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)
    return a == b


def _compare(name: str, reported: dict, recomputed: dict, keys, rel: float = 1e-6) -> list[Check]:
    out = []
    for k in keys:
        if k not in reported:
            continue
        out.append(
            Check(name, k, reported[k], recomputed.get(k), k in recomputed and _same(reported[k], recomputed[k], rel))
        )
    return out


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise VerifyError(
            f"{path.name} is missing from {path.parent}: the run saved no predictions to verify"
        ) from None
    except ValueError as exc:
        raise VerifyError(f"{path} is not valid JSON ({exc})") from None


def _eval_split(cfg: dict, split: str, mirror: str, limit_key: str = "max_eval_samples"):
    from engine.hub.resolve import load_dataset_split

    ds = load_dataset_split(cfg["dataset"], cfg.get("dataset_config", ""), split, mirror)
    limit = int(cfg.get(limit_key) or 0)
    return ds.select(range(min(limit, len(ds)))) if limit else ds


def _numeric_keys(final: dict) -> list[str]:
    return [k for k, v in final.items() if isinstance(v, (int, float, list)) and not isinstance(v, bool)]


def verify_classify(run, mirror: str = "") -> list[Check]:
    from engine.metrics.classification import classification_metrics

    cfg, final = run.config(), run.results().get("final", {})
    name = f"{run.experiment}/{run.run_id}"
    path = run.path / "predictions.jsonl"
    if not path.exists():
        raise VerifyError(f"{name}: predictions.jsonl is missing: the run saved no predictions to verify")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    split = final.get("eval_split") or run.results().get("eval_split") or cfg.get("eval_split", "validation")
    ds = _eval_split(cfg, split, mirror)
    texts = list(ds[cfg.get("text_column", "text")])
    labels = [int(x) for x in ds[cfg.get("label_column", "label")]]
    checks = [Check(name, "examples", len(rows), len(labels), len(rows) == len(labels))]
    same_rows = len(rows) == len(labels) and all(
        r["text"] == t and r["label"] == y for r, t, y in zip(rows, texts, labels)
    )
    checks.append(Check(name, "texts and labels = the split's", "saved", f"{cfg['dataset']}:{split}", same_rows))
    if not same_rows:
        return checks
    train = _eval_split(cfg, cfg.get("train_split", "train"), mirror, "max_train_samples")
    train_labels = [int(x) for x in train[cfg.get("label_column", "label")]]
    num_labels = max(max(train_labels), max(labels)) + 1
    m = classification_metrics(
        labels, [int(r["prediction"]) for r in rows], positive=1, baseline_labels=train_labels, num_labels=num_labels
    )
    from engine.tasks.classify import class_names

    names = class_names(train, cfg.get("label_column", "label"), num_labels)
    if names:
        m["class_names"] = names
    return checks + _compare(name, final, m, _numeric_keys(final))


def verify_qa(run, mirror: str = "") -> list[Check]:
    from engine.metrics.squad_v2 import squad_v2_score
    from engine.metrics.text import answer_text_metrics

    cfg, final = run.config(), run.results().get("final", {})
    name = f"{run.experiment}/{run.run_id}"
    preds = _read_json(run.path / "predictions.json")
    na = _read_json(run.path / "na_scores.json")
    nbest = _read_json(run.path / "nbest.json")
    raw = {q: next((c["text"] for c in cands if c["text"]), "") for q, cands in nbest.items()}
    thresh = float(cfg.get("null_score_diff_threshold", 0.0))
    thresholded = {q: ("" if na.get(q, math.inf) > thresh else raw[q]) for q in raw}
    checks = [
        Check(name, "predictions = n-best + no-answer threshold", len(preds), len(thresholded), preds == thresholded)
    ]
    ds = _eval_split(cfg, cfg.get("eval_split", "validation"), mirror)
    refs = {q: list(a["text"]) for q, a in zip(ds["id"], ds["answers"])}
    checks.append(Check(name, "questions = the split's", len(raw), len(refs), set(raw) == set(refs)))
    if set(raw) != set(refs):
        return checks
    m = dict(squad_v2_score(raw, refs, na, na_prob_thresh=thresh))
    m.update(answer_text_metrics(preds, refs))
    m["empty_baseline_f1"] = 100.0 * m["NoAns_total"] / max(m["total"], 1)
    m["no_answer_rate"] = sum(1 for v in preds.values() if v == "") / max(len(preds), 1)
    keys = _numeric_keys(final)
    checks += _compare(name, final, m, keys)
    if isinstance(final.get("variants"), dict):
        checks.append(
            Check(
                name,
                "text-metric variants",
                final["variants"],
                m.get("variants"),
                final["variants"] == m.get("variants"),
            )
        )
    return checks


def verify_pretrain(run, mirror: str = "") -> list[Check]:
    from engine.tasks.pretrain import reevaluate

    final = run.results().get("final", {})
    name = f"{run.experiment}/{run.run_id}"
    m = reevaluate(run, mirror)
    return _compare(
        name,
        final,
        m,
        [
            k
            for k in ("mlm_perplexity", "mlm_loss", "mlm_accuracy", "nsp_accuracy", "masked_tokens", "sequences")
            if k in final
        ],
        rel=1e-4,
    )


def verify_inspect(run, mirror: str = "") -> list[Check]:
    """Every parameter table and total counted again from the model's config (no weights)."""
    from engine.errors import JobError
    from engine.models.source import model_source
    from engine.store.runs import RunStore
    from engine.tasks.inspect import parameter_tables

    cfg = run.config()
    name = f"{run.experiment}/{run.run_id}"
    model = cfg.get("model", "")
    try:
        source = model_source(model, mirror, RunStore(run.path.parent.parent))
    except JobError:
        raise VerifyError(f"{name}: the model run {model[4:]!r} has no finished run with a saved model") from None
    config = source.config(cfg.get("vocab_size", 8000), bool(cfg.get("trust_remote_code")))
    tables, totals = parameter_tables(config, list(cfg.get("heads") or []))
    checks = _compare(name, run.results().get("parameters", {}), totals, list(totals))
    for t in tables:
        saved = run.read_table(t.name) if t.name in run.table_names() else None
        checks.append(
            Check(
                name,
                f"table {t.name}",
                len(saved.rows) if saved else None,
                len(t.rows),
                saved is not None and saved.rows == t.rows,
            )
        )
    return checks


VERIFIERS = {"classify": verify_classify, "qa": verify_qa, "pretrain": verify_pretrain, "inspect": verify_inspect}


def verify_run(run, mirror: str = "") -> list[Check]:
    status = run.status().get("status")
    if status != "finished":
        raise VerifyError(f"{run.experiment}/{run.run_id} is {status}, not finished: nothing to verify")
    task = run.config().get("task", "")
    fn = VERIFIERS.get(task) if isinstance(task, str) else None
    if fn is None:
        raise VerifyError(f"{run.experiment}/{run.run_id}: task {task!r} has no verifier")
    return fn(run, mirror) + against_original(run)


def original_of(run):
    """The run ``run`` is a rerun of (``rerun_of`` in its environment.json), None for other runs.

    VerifyError when the original is named but gone or unfinished.
    """
    from engine.errors import NotFound
    from engine.store.runs import RunStore

    env = _environment(run)
    ref = env.get("rerun_of")
    if not isinstance(ref, str) or not ref:
        return None
    try:
        original = RunStore(Path(run.path).parent.parent).get(ref)
    except (NotFound, ValueError, OSError):
        raise VerifyError(
            f"{run.experiment}/{run.run_id} is a rerun of {ref}, which is not in the runs directory"
        ) from None
    if original.status().get("status") != "finished":
        raise VerifyError(f"{run.experiment}/{run.run_id} is a rerun of {ref}, which is not finished")
    return original


def _environment(run) -> dict:
    from engine.files import read_json_object

    data, problem = read_json_object(str(Path(run.path) / "environment.json"))
    return {} if problem else data


def against_original(run, rel: float = RERUN_REL) -> list[Check]:
    """A rerun's final metrics against its original's (within ``rel``); [] when ``run`` is no rerun."""
    original = original_of(run)
    if original is None:
        return []
    name = f"{run.experiment}/{run.run_id}"
    mine, theirs = run.results().get("final", {}), original.results().get("final", {})
    checks = [
        Check(
            name,
            f"{key} = original's",
            mine.get(key),
            theirs[key],
            key in mine and _same(mine[key], theirs[key], rel),
            ("rerun", "original"),
        )
        for key in _numeric_keys(theirs)
    ]
    return checks


def what_differs(run) -> list[str]:
    """What a rerun and its original did not share, one ``section key: a -> b`` line each (config aside)."""
    from engine.job.environment import differences

    try:
        original = original_of(run)
    except VerifyError:
        return []
    if original is None:
        return []
    rows = differences(original.path, run.path)
    return [f"{section} {key}: {a} -> {b}" for section, key, a, b in rows if section != "config"]


def save_summary(run, checks: list[Check], error: str = "") -> None:
    """Record the outcome of verifying ``run`` in its ``verify.json`` (time, checks, mismatches
    and their lines, or the error that stopped it), so the report can say whether it verified."""
    import time

    from engine.files import atomic_write_json

    failed = [c.line() for c in checks if not c.ok]
    atomic_write_json(
        Path(run.path) / SUMMARY,
        {"time": time.time(), "checks": len(checks), "mismatches": len(failed), "failed": failed, "error": error},
    )


def read_summary(run) -> dict | None:
    """The last :func:`save_summary` of ``run``, or None when it was never verified (or the file is unreadable)."""
    from engine.files import read_json_object

    data, problem = read_json_object(str(Path(run.path) / SUMMARY))
    return data if not problem and isinstance(data.get("checks"), int) else None
