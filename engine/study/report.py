"""``lmconsole report``: one document of the whole study in Markdown, LaTeX and HTML.

The study is the latest finished run of each chosen experiment (default: every experiment
of the manifest that has one). The report follows the original study's outline, with every
number taken from a run's results or tables and the run named next to it:

1. flags on degenerate results (engine.metrics.flags);
2. parameter counts: the grouped table (layer 0 shown once, ``xN`` layers) with totals,
   and the totals under each head;
3. pretraining: per-epoch MLM perplexity, MLM and NSP accuracy, as a table and a plot;
4. classification: accuracy / precision / recall / F1 next to the majority baseline, a
   labelled confusion matrix, per-epoch table and plot;
5. question answering: the full squad_v2 key set (0-100, as the official script) with the
   always-"no answer" baseline, the answer-text metrics (BLEU 0-1 and sacreBLEU 0-100
   with its signature, ROUGE, METEOR and its variant), per-epoch plot;
6. parameter diffs after fine-tuning; 7. pushed models (runs of ``push`` steps);
8. the environment of each run (device, versions).

Runs grouped by seeds (``config.json`` "group") show mean +- sample std (n) next to the run.
Every metric header says its scale (engine.metrics.scale); plots never share an axis
between 0-1 and 0-100 metrics. Plots are matplotlib PNGs: embedded (base64) in the HTML,
files next to the Markdown and LaTeX. ``report.json`` lists every number with its run and key.
"""

from __future__ import annotations

import base64
import dataclasses
import fnmatch
import html
import io
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.files import read_json
from engine.manifest import PRESETS
from engine.metrics.flags import run_flags
from engine.metrics.scale import metric_label, metric_scale
from engine.metrics.squad_v2 import SQUAD_V2_KEYS
from engine.tables import Table, fmt_num, latex_escape

FORMATS = ("md", "latex", "html")
CLASSIFY_KEYS = ("accuracy", "precision", "recall", "f1", "macro_f1", "majority_baseline")
QA_KEYS = (
    *SQUAD_V2_KEYS,
    "empty_baseline_f1",
    "no_answer_rate",
)
TEXT_KEYS = ("bleu", "sacrebleu", "rouge1", "rouge2", "rougeL", "rougeLsum", "meteor", "n_answerable")
PRETRAIN_KEYS = ("mlm_perplexity", "mlm_accuracy", "nsp_accuracy", "pseudo_perplexity")


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # paragraphs (plain text)
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, bytes, str]] = field(default_factory=list)  # (file stem, png, caption)


@dataclass
class Report:
    title: str
    sections: list[Section]
    facts: list[dict]  # {"run", "key", "value"} for every number shown


def ref(run) -> str:
    return f"{run.experiment}/{run.run_id}"


class _Facts:
    def __init__(self):
        self.items: list[dict] = []

    def add(self, run, key: str, value):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.items.append({"run": ref(run), "key": key, "value": value})
        return value


def study_runs(store, names) -> dict:
    """Latest finished run of each experiment name (missing ones left out)."""
    out = {}
    for name in names:
        run = store.latest(name, status="finished")
        if run is not None:
            out[name] = run
    return out


def select(names, patterns) -> list[str]:
    if not patterns:
        return list(names)
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    return chosen


def _group_stats(store, run, keys) -> dict:
    """mean, sample std and n per key over the finished runs of this run's seed group."""
    group = run.config().get("group")
    if not isinstance(group, str) or not group:
        return {}
    finals = [
        r.results().get("final", {})
        for r in store.runs(run.experiment)
        if r.config().get("group") == group and r.status().get("status") == "finished"
    ]
    out = {}
    for k in keys:
        vals = [float(f[k]) for f in finals if isinstance(f.get(k), (int, float)) and not isinstance(f.get(k), bool)]
        if len(vals) >= 2:
            out[k] = (statistics.mean(vals), statistics.stdev(vals), len(vals))
    return out


def _metric_table(name, title, run, final, keys, task, facts, store, baseline=None) -> Table:
    final = final if isinstance(final, dict) else {}  # results.json as found: "final" may be anything
    stats = _group_stats(store, run, keys)
    cols = ["metric", "scale", "value"] + (["seeds: mean +- std (n)"] if stats else []) + ["run"]
    rows = []
    for k in keys:
        if k not in final or not isinstance(final[k], (int, float)) or isinstance(final[k], bool):
            continue
        row = [k, metric_scale(k, task).label or "-", facts.add(run, f"final.{k}", final[k])]
        if stats:
            m = stats.get(k)
            row.append(f"{fmt_num(m[0], 4, fixed=True)} +- {fmt_num(m[1], 4, fixed=True)} ({m[2]})" if m else "")
        rows.append(row + [ref(run)])
    return Table(name=name, columns=tuple(cols), rows=tuple(rows), title=title)


def _history_table(name, title, run, keys, task, facts) -> Table:
    hist = run.results().get("history") or []
    hist = hist if isinstance(hist, list) else []  # results.json as found: entries that are not objects are skipped
    keys = [k for k in keys if any(isinstance(h, dict) and isinstance(h.get(k), (int, float)) for h in hist)]
    cols = ["epoch"] + [metric_label(k, task) for k in ["train_loss"] + keys]
    rows = []
    for i, h in enumerate(hist):
        if not isinstance(h, dict):
            continue  # its index stays: facts name history entries by their place in the file
        row = [h.get("epoch")]
        for k in ["train_loss"] + keys:
            v = h.get(k)
            row.append(facts.add(run, f"history.{i}.{k}", v) if isinstance(v, (int, float)) else None)
        rows.append(row)
    return Table(
        name=name,
        columns=tuple(cols),
        rows=tuple(rows),
        title=title,
        notes=(f"source: run {ref(run)}; epoch 0 = before training",),
    )


def _plot(series_by_axis, title) -> bytes:
    """One subplot per scale: [(ylabel, log, [(label, xs, ys, style)], (lo, hi))]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series_by_axis), figsize=(4.2 * len(series_by_axis), 3.2), squeeze=False)
    for ax, (ylabel, log, series, bounds) in zip(axes[0], series_by_axis):
        for label, xs, ys, style in series:
            ax.plot(xs, ys, style, label=label)
        if log:
            ax.set_yscale("log")
        if bounds and bounds[0] is not None and bounds[1] is not None:
            ax.set_ylim(bounds)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _series(run, keys, task):
    hist = run.results().get("history") or []
    hist = [h for h in hist if isinstance(h, dict)] if isinstance(hist, list) else []  # results.json as found
    out = []
    for k in keys:
        pts = [(h["epoch"], h[k]) for h in hist if isinstance(h.get(k), (int, float)) and h.get("epoch") is not None]
        if pts:
            out.append((metric_label(k, task), [p[0] for p in pts], [p[1] for p in pts], "o-"))
    return out


# -- sections ------------------------------------------------------------------------------


def flags_section(runs) -> Section:
    sec = Section("Flags on degenerate results")
    rows = [(r.experiment, ref(r), f.metric, f.message) for r in runs for f in run_flags(r)]
    if rows:
        sec.tables.append(Table("flags", ("experiment", "run", "metric", "flag"), rows, title="Flags raised"))
    else:
        sec.text.append(
            "No flag raised: no one-class classifier, no accuracy at the majority baseline, no recall of "
            "1.0 or 0.0, no QA model that never or always abstains or sits at the always-empty baseline, "
            "no answer-text metric near 0, no perplexity that does not fall or exceeds twice the vocabulary."
        )
    return sec


def _trained_vocabulary_note(run, pretrained) -> str:
    """Why a preset's count differs from the models pretrained from it: their vocabulary was trained."""
    cfg = run.config()
    model = cfg.get("model", "")
    if model not in PRESETS:
        return ""
    notes = []
    for p in pretrained:
        folder = p.final_model()
        trained = read_json(folder / "config.json", {}) if folder is not None else {}
        if p.config().get("model") == model and trained.get("vocab_size") not in (None, cfg.get("vocab_size")):
            notes.append(f"{ref(p)} trained a WordPiece vocabulary of {trained['vocab_size']:,} tokens")
    if not notes:
        return ""
    return (
        f"`{model}` is a preset: its word embeddings have `vocab_size` = {cfg.get('vocab_size', 0):,} rows here, "
        f"one per token. Pretraining trains its own vocabulary on the corpus, which can give fewer tokens than "
        f"asked ({'; '.join(notes)}), so those models have fewer parameters; see their own counts below."
    )


def params_section(runs, facts, pretrained=()) -> Section:
    sec = Section("Parameter counts")
    for run in runs:
        totals = run.results().get("parameters", {})
        model = run.config().get("model", "")
        if model.startswith("run:"):
            continue
        sec.text.append(f"Model `{model}` (run {ref(run)}); no weights loaded: counted from its configuration.")
        note = _trained_vocabulary_note(run, pretrained)
        if note:
            sec.text.append(note)
        if "params_base" in run.table_names():
            t = run.read_table("params_base")
            for i, row in enumerate(t.rows):
                if row[0] == "TOTAL":
                    facts.add(run, f"tables.params_base.{i}.subtotal", row[4])
            sec.tables.append(t)
        rows = [(h, facts.add(run, f"parameters.{h}", n), ref(run)) for h, n in totals.items()]
        sec.tables.append(
            Table("params_totals", ("head", "parameters", "run"), rows, title=f"Total parameters of {model} by head")
        )
    return sec


def pretrain_section(run, facts, store) -> Section:
    sec = Section(f"Pretraining: {run.experiment}")
    cfg = run.config()
    sec.text.append(
        f"MLM + NSP on `{cfg.get('dataset')}` ({cfg.get('dataset_config')}), evaluated on split "
        f"`{cfg.get('eval_split')}` after every epoch. MLM perplexity = exp(total masked-token NLL / masked "
        f"tokens), NSP accuracy separately (never exp of the combined loss). Run {ref(run)}."
    )
    final = run.results().get("final", {})
    sec.tables.append(_history_table("pretrain_epochs", "Per-epoch evaluation", run, PRETRAIN_KEYS, "pretrain", facts))
    sec.tables.append(
        _metric_table("pretrain_final", "Final evaluation", run, final, PRETRAIN_KEYS, "pretrain", facts, store)
    )
    ppl = _series(run, ("mlm_perplexity", "pseudo_perplexity"), "pretrain")
    acc = _series(run, ("mlm_accuracy", "nsp_accuracy"), "pretrain")
    axes = [
        a
        for a in (("perplexity (log scale, lower is better)", True, ppl, None), ("accuracy (0-1)", False, acc, (0, 1)))
        if a[2]
    ]
    if axes:
        sec.figures.append(
            (
                "pretrain",
                _plot(axes, f"{run.experiment}: per-epoch evaluation ({ref(run)})"),
                f"Per-epoch MLM perplexity and accuracies of {ref(run)}",
            )
        )
    return sec


def _class_names(run, classes, names=None):
    from engine.metrics.classification import class_labels

    return class_labels(classes, names, run.config())


def classify_section(run, facts, store) -> Section:
    sec = Section(f"Classification: {run.experiment}")
    cfg, res = run.config(), run.results()
    final = res.get("final", {})
    split = final.get("eval_split") or res.get("eval_split") or cfg.get("eval_split")
    sec.text.append(
        f"`{cfg.get('dataset')}` ({cfg.get('dataset_config')}), scored on split `{split}`"
        f"{' (' + final['note'] + ')' if final.get('note') else ''}. Precision, recall and F1 of label 1; "
        f"majority_baseline = accuracy of always predicting the most frequent training label "
        f"({final.get('majority_class')}). Run {ref(run)}."
    )
    sec.tables.append(
        _metric_table("classify_final", "Final metrics", run, final, CLASSIFY_KEYS, "classify", facts, store)
    )
    cm, classes = final.get("confusion_matrix"), final.get("classes")
    if isinstance(cm, list) and classes:
        names = _class_names(run, classes, final.get("class_names"))
        rows = [
            [f"true {names[i]}"] + [facts.add(run, f"final.confusion_matrix.{i}.{j}", v) for j, v in enumerate(r)]
            for i, r in enumerate(cm)
        ]
        sec.tables.append(
            Table(
                "confusion_matrix",
                ["", *[f"predicted {n}" for n in names]],
                rows,
                title=f"Confusion matrix on {split} (rows: true class, columns: predicted class; counts)",
                notes=(f"source: run {ref(run)}",),
            )
        )
    sec.tables.append(
        _history_table("classify_epochs", "Per-epoch evaluation", run, CLASSIFY_KEYS[:-1], "classify", facts)
    )
    series = _series(run, ("accuracy", "f1", "macro_f1"), "classify")
    if series:
        base = final.get("majority_baseline")
        if isinstance(base, (int, float)):
            xs = series[0][1]
            series.append(("majority_baseline (0-1)", [min(xs), max(xs)], [base, base], "k--"))
        sec.figures.append(
            (
                "classify",
                _plot([("0-1", False, series, (0, 1))], f"{run.experiment} ({ref(run)})"),
                f"Per-epoch metrics of {ref(run)} with the majority baseline",
            )
        )
    return sec


def qa_section(run, facts, store) -> Section:
    sec = Section(f"Question answering: {run.experiment}")
    cfg, final = run.config(), run.results().get("final", {})
    sec.text.append(
        f"`{cfg.get('dataset')}` ({cfg.get('dataset_config')}), split `{cfg.get('eval_split')}`. The "
        f"squad_v2 keys are 0-100 as the official evaluate-v2.0 script prints them, with a real "
        f"per-question no-answer score (null minus best span score); empty_baseline_f1 = always answering "
        f'"no answer". Run {ref(run)}.'
    )
    sec.tables.append(_metric_table("squad_v2", "squad_v2 keys", run, final, QA_KEYS, "qa", facts, store))
    sec.tables.append(
        _metric_table(
            "answer_text", "Answer-text metrics (answerable questions only)", run, final, TEXT_KEYS, "qa", facts, store
        )
    )
    variants = final.get("variants") or {}
    for k in ("bleu", "sacrebleu", "rouge", "meteor"):
        if k in variants:
            sec.text.append(f"{k}: {variants[k]}.")
    if final.get("sacrebleu_signature") and "sacrebleu" not in variants:
        sec.text.append(f"sacrebleu signature: {final['sacrebleu_signature']}.")
    sec.tables.append(
        _history_table(
            "qa_epochs",
            "Per-epoch evaluation",
            run,
            ("exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1", "rougeL", "meteor"),
            "qa",
            facts,
        )
    )
    pct = _series(run, ("exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1"), "qa")
    unit = _series(run, ("rougeL", "meteor"), "qa")
    if pct:
        base = final.get("empty_baseline_f1")
        if isinstance(base, (int, float)):
            xs = pct[0][1]
            pct.append(("always no-answer f1 (0-100)", [min(xs), max(xs)], [base, base], "k--"))
        axes = [("squad_v2 (0-100)", False, pct, (0, 100))] + (
            [("answer text (0-1)", False, unit, (0, 1))] if unit else []
        )
        sec.figures.append(
            ("qa", _plot(axes, f"{run.experiment} ({ref(run)})"), f"Per-epoch squad_v2 metrics of {ref(run)}")
        )
    return sec


def diffs_section(runs, facts) -> Section:
    sec = Section("Parameter diffs after fine-tuning")
    for run in runs:
        names = [n for n in run.table_names() if n.startswith("params_diff")]
        if not names:
            continue
        what = run.config().get("model", "")
        sec.text.append(
            f"Run {ref(run)} (model `{what}`"
            f"{', started from ' + run.results()['start_model'] if run.results().get('start_model') else ''})."
        )
        for n in names:
            t = run.read_table(n)
            if "delta" in t.columns:
                j = t.columns.index("delta")
                for i, row in enumerate(t.rows):
                    facts.add(run, f"tables.{n}.{i}.delta", row[j])
            sec.tables.append(dataclasses.replace(t, notes=(*t.notes, f"Source: {ref(run)}, tables/{n}.json")))
    if not sec.tables:
        sec.text.append("No fine-tuned model's parameter diff was recorded.")
    return sec


def push_section(runs) -> Section:
    sec = Section("Pushed models")
    rows = []
    for run in runs:
        res = run.results()
        if run.config().get("task") == "push" and res.get("url"):
            rows.append((res.get("start_model", ""), res.get("repo_id", ""), res["url"], ref(run)))
    if rows:
        sec.tables.append(
            Table("pushes", ("model run", "repository", "url", "push run"), rows, title="Models on the Hub")
        )
    else:
        sec.text.append("No model of this study has been pushed (no finished push step).")
    return sec


def sweep_section(store, name: str, exp=None) -> Section | None:
    """A sweep's space, best trial, parameter importances and trials table (None when it has no trials).

    ``exp``: the manifest's experiment, for the planned trial count and the importances (from its study).
    """
    from engine.sweep.summary import sweep_summary

    summary = sweep_summary(store.root, name, exp=exp)
    if summary is None:
        return None
    sec = Section(f"Sweep {name}")
    space = []
    for p in dict.fromkeys(k for t in summary.trials for k in t.parameters):
        values = sorted({t.parameters[p] for t in summary.trials if p in t.parameters}, key=str)
        nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        tried = (
            f"{fmt_num(min(nums))} .. {fmt_num(max(nums))}" if len(nums) == len(values) else ", ".join(map(str, values))
        )
        space.append(f"{p} ({len(values)} values tried: {tried})")
    sec.text.append(
        f"Study {summary.study}: {summary.progress_text()}; objective {summary.objective} ({summary.direction}, "
        f"the last evaluation of each trial). Space: {'; '.join(space)}."
    )
    best = summary.best
    if best is not None:
        params = ", ".join(f"{k} = {fmt_num(v) if isinstance(v, float) else v}" for k, v in best.parameters.items())
        sec.text.append(
            f"Best trial: {best.trial} ({best.run}), {summary.objective} {fmt_num(best.objective)} with {params}."
        )
    if summary.importances:
        sec.tables.append(
            Table(
                f"sweep_importances_{summary.table().name[6:]}",
                ("parameter", "importance"),
                list(summary.importances.items()),
                title="Parameter importances (Optuna)",
            )
        )
    elif summary.note:
        sec.text.append(f"No parameter importances: {summary.note}.")
    sec.tables.append(summary.table())
    return sec


def environment_section(runs) -> Section:
    sec = Section("Environment")
    keys = ("device", "gpu", "python", "torch", "transformers", "datasets", "huggingface_hub", "lmconsole", "platform")
    rows = []
    for run in runs:
        try:
            env = json.loads((run.path / "environment.json").read_text())
        except (OSError, ValueError):
            env = {}
        rows.append((ref(run),) + tuple(env.get(k, "") or ("not recorded" if not env else "") for k in keys))
    sec.tables.append(Table("environment", ("run",) + keys, rows, title="Where each run ran"))
    return sec


def error_analysis_section(run, mirror: str = "") -> Section:
    """A fine-tuned run's mistakes from its saved predictions: counts per kind, the five most confident.

    Kinds: for a classifier each off-diagonal confusion cell (gold -> predicted); for QA a wrong
    answer, an answer to an unanswerable question, "no answer" to an answerable one
    (:mod:`engine.study.examples`, the rows ``lmconsole examples`` lists).
    """
    from engine.errors import UserError
    from engine.study.examples import QA_MISTAKES, ClassExamples, QAExamples, load_examples

    sec = Section(f"Error analysis: {run.experiment}")
    try:
        ex = load_examples(run, mirror)
    except UserError as exc:
        sec.text.append(f"Not available: {exc}.")
        return sec
    stem = run.experiment.replace(".", "_")
    if isinstance(ex, ClassExamples):
        m = ex.counts()
        kinds = [
            (f"{ex.name(g)} predicted as {ex.name(p)}", m[g][p]) for g in range(len(m)) for p in range(len(m)) if g != p
        ]
        mistakes = ex.select(wrong_only=True)[:5]
        top = Table(
            f"errors_top_{stem}",
            ("index", "text", "gold", "predicted", "confidence"),
            [(r.index, r.text, ex.name(r.gold), ex.name(r.prediction), r.confidence) for r in mistakes],
            title="The five most confident mistakes",
            notes=(f"source: run {ref(run)}, predictions.jsonl (final evaluation)",),
        )
        total = len(ex.rows)
    elif isinstance(ex, QAExamples):
        counts = ex.counts()
        kinds = [(k, counts[k]) for k in QA_MISTAKES]
        qa_mistakes = ex.select(wrong_only=True)[:5]
        top = Table(
            f"errors_top_{stem}",
            ("question", "kind", "gold", "predicted", "confidence"),
            [
                (r.question, r.kind, " | ".join(r.gold), r.prediction or "(no answer)", r.confidence)
                for r in qa_mistakes
            ],
            title="The five most confident mistakes",
            notes=(
                f"source: run {ref(run)}, predictions.json, nbest.json (final evaluation)",
                "confidence: the n-best probability of the chosen answer (span or no answer)",
            ),
        )
        total = len(ex.rows)
    else:  # pretraining: no fine-tuned task to analyse
        sec.text.append(f"Not available: {run.experiment} is not a fine-tuned run.")
        return sec
    wrong = sum(n for _, n in kinds)
    sec.text.append(
        f"{wrong} of {total} evaluation examples are wrong; by kind below, then the mistakes the model was most "
        f"sure of (`lmconsole examples {run.experiment}` lists them all). Run {ref(run)}."
    )
    sec.tables.append(
        Table(
            f"errors_{stem}",
            ("kind of mistake", "count"),
            kinds,  # counted from the saved predictions, not results.json: no facts to look up there
            title="Mistakes per kind",
            notes=(f"source: run {ref(run)}, the predictions of its final evaluation",),
        )
    )
    sec.tables.append(top)
    return sec


def verification_section(runs) -> Section:
    """Whether each run's numbers were recomputed from its saved predictions (``lmconsole verify``)."""
    from engine.study.verify import read_summary

    sec = Section("Verification")
    rows, never = [], []
    for run in runs:
        if run.config().get("task") == "push":
            continue  # a push reports no numbers
        summary = read_summary(run)
        if summary is None:
            never.append(run.experiment)
            rows.append((ref(run), "not verified", "", ""))
            continue
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(summary.get("time", 0)))
        verdict = (
            "error: " + summary["error"]
            if summary.get("error")
            else ("all match" if not summary["mismatches"] else f"{summary['mismatches']} mismatch(es)")
        )
        rows.append((ref(run), verdict, summary["checks"], when))
        sec.text += [f"{ref(run)}: {line}" for line in summary.get("failed", [])]
    sec.tables.append(
        Table(
            "verification",
            ("run", "verify", "checks", "when"),
            rows,
            title="Every reported number recomputed from the saved predictions (lmconsole verify)",
        )
    )
    if never:
        sec.text.insert(0, f"Not verified yet: `lmconsole verify {' '.join(never)}` recomputes their numbers.")
    return sec


def provenance_notes(chosen: dict) -> list[str]:
    """A note per run fine-tuned from another run than the one this report shows for its upstream
    experiment (e.g. demo-pretrain was run again after demo-sst2 started from it)."""
    notes = []
    for run in chosen.values():
        start = run.results().get("start_model")
        upstream = chosen.get(str(start).split("/", 1)[0]) if start else None
        if upstream is not None and ref(upstream) != start:
            notes.append(
                f"{ref(run)} started from {start}, not from the {upstream.experiment} run this report shows "
                f"({ref(upstream)}); run {run.experiment} again to start it from that one."
            )
    return notes


def _drop_repeated_tables(sections: list[Section]) -> None:
    """Each table once: a table equal to one shown before (title, columns and rows) gives way to a line."""
    seen: dict[tuple, str] = {}
    for sec in sections:
        kept = []
        for t in sec.tables:
            key = (t.title, t.columns, t.rows)
            if key in seen:
                sec.text.append(f"{t.title or t.name}: the same table as in {seen[key]}, shown once.")
                continue
            seen[key] = f"section {sec.title!r}"
            kept.append(t)
        sec.tables = kept


def build_report(store, names, title: str = "Study report", mirror: str = "", manifest=None) -> Report:
    """The report of the latest finished run of each of ``names``; ``mirror`` is the data mirror the
    error analysis loads QA questions from (``settings.data_mirror``). A name that is a sweep gets a sweep
    section (its trials; with ``manifest``, the planned count and Optuna's importances too)."""
    chosen = study_runs(store, names)
    runs = list(chosen.values())
    facts = _Facts()
    by_task: dict[str, list] = {}
    for r in runs:
        by_task.setdefault(str(r.config().get("task", "")), []).append(r)
    sections = [flags_section(runs)]
    inspect = by_task.get("inspect", [])
    if any(not r.config().get("model", "").startswith("run:") for r in inspect):
        sections.append(params_section(inspect, facts, by_task.get("pretrain", [])))
    sections += [pretrain_section(r, facts, store) for r in by_task.get("pretrain", [])]
    sections += [classify_section(r, facts, store) for r in by_task.get("classify", [])]
    sections += [qa_section(r, facts, store) for r in by_task.get("qa", [])]
    finetuned = (
        [r for r in inspect if r.config().get("model", "").startswith("run:")]
        + by_task.get("classify", [])
        + by_task.get("qa", [])
    )
    sections += [error_analysis_section(r, mirror) for r in by_task.get("classify", []) + by_task.get("qa", [])]
    sections.append(diffs_section(finetuned, facts))
    for name in names:
        exp = manifest.get(name) if manifest is not None and name in manifest.names else None
        swept = sweep_section(store, name, exp)
        if swept is not None:
            sections.append(swept)
    sections.append(push_section(runs))
    sections.append(verification_section(runs))
    sections.append(environment_section(runs))
    missing = [n for n in names if n not in chosen]
    intro = Section("Runs", text=[f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by lmconsole report."])
    intro.tables.append(
        Table(
            "runs",
            ("experiment", "task", "run"),
            [(r.experiment, r.config().get("task", ""), ref(r)) for r in runs],
            title="The latest finished run of each experiment",
        )
    )
    if missing:
        intro.text.append("Without a finished run (not in this report): " + ", ".join(missing) + ".")
    intro.text += provenance_notes(chosen)
    _drop_repeated_tables(sections)
    return Report(title, [intro] + sections, facts.items)


# -- rendering ---------------------------------------------------------------------------


def _no_tags(text: str) -> str:
    # Markdown passes raw HTML through; without a "<" nothing opens a tag. ">=" and "&" stay readable.
    return text.replace("<", "&lt;")


def _md_text(text: str) -> str:
    """``text`` for Markdown with no raw HTML (a manifest value may hold ``<script>``), as the HTML and
    LaTeX reports escape theirs; code spans (between backticks) are shown literally by Markdown."""
    parts = text.split("`")  # odd indices are inside a span, but for the last after an unmatched backtick
    return "`".join(x if i % 2 and i < len(parts) - 1 else _no_tags(x) for i, x in enumerate(parts))


def _md_table(t: Table) -> str:
    def esc(v):
        return _no_tags(v) if isinstance(v, str) else v

    rows = [[esc(v) for v in row] for row in t.rows]
    return Table(t.name, [esc(c) for c in t.columns], rows, esc(t.title), [esc(n) for n in t.notes]).to_markdown()


def _md(report: Report, fig_dir: str) -> str:
    out = [f"# {_md_text(report.title)}", ""]
    for s in report.sections:
        out += [f"## {_md_text(s.title)}", ""]
        for p in s.text:
            out += [_md_text(p), ""]
        for t in s.tables:
            out += [_md_table(t), ""]
        for stem, _, caption in s.figures:
            out += [f"![{_md_text(caption)}]({fig_dir}/{stem}.png)", ""]
    return "\n".join(out)


def _tex_text(p: str) -> str:
    parts = p.split("`")
    return "".join(r"\texttt{" + latex_escape(x) + "}" if i % 2 else latex_escape(x) for i, x in enumerate(parts))


def _latex(report: Report, fig_dir: str) -> str:
    out = [
        r"\documentclass[10pt]{article}",
        r"\usepackage[margin=1.8cm]{geometry}",
        r"\usepackage{graphicx}",
        r"\usepackage[T1]{fontenc}",
        r"\usepackage{float}",
        r"\floatplacement{table}{H}",
        r"\title{" + latex_escape(report.title) + "}",
        r"\date{}",
        r"\begin{document}",
        r"\maketitle",
    ]
    for s in report.sections:
        out.append(r"\section*{" + latex_escape(s.title) + "}")
        for p in s.text:
            out += [_tex_text(p), ""]
        for t in s.tables:
            out.append(t.to_latex().replace("+-", r"$\pm$").replace(">=", r"$\geq$"))
        for stem, _, caption in s.figures:
            out += [
                r"\begin{figure}[H]\centering",
                r"\includegraphics[width=\textwidth]{" + f"{fig_dir}/{stem}.png" + "}",
                r"\caption{" + latex_escape(caption) + "}",
                r"\end{figure}",
            ]
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def _html_table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t.columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class={'num' if isinstance(v, (int, float)) and not isinstance(v, bool) else 'txt'}>"
            f"{html.escape(fmt_num(v, 4, fixed=True))}</td>"
            for v in row
        )
        + "</tr>"
        for row in t.rows
    )
    notes = "".join(f"<p class=note>{html.escape(n)}</p>" for n in t.notes)
    cap = f"<caption>{html.escape(t.title)}</caption>" if t.title else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}"


CSS = (
    "body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:13px}caption{font-weight:bold;text-align:left;padding:4px 0}"
    "th,td{border:1px solid #bbb;padding:3px 6px}th{background:#eee}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "p.note{font-size:12px;color:#555;margin:0}img{max-width:100%}code{background:#f3f3f3}"
)


def _html(report: Report) -> str:
    out = [
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(report.title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(report.title)}</h1>"
    ]
    for s in report.sections:
        out.append(f"<h2>{html.escape(s.title)}</h2>")
        for p in s.text:
            parts = html.escape(p).split("`")
            out.append("<p>" + "".join(f"<code>{x}</code>" if i % 2 else x for i, x in enumerate(parts)) + "</p>")
        out += [_html_table(t) for t in s.tables]
        for _, png, caption in s.figures:
            out.append(
                f'<figure><img alt="{html.escape(caption)}" '
                f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(report: Report, out: Path, formats=FORMATS) -> list[Path]:
    """Write the report in ``formats`` (with its plots under ``report_files/`` and ``report.json``)
    into ``out``, all or nothing: a full disk part way leaves the previous report as it was."""
    from engine.files import atomic_write_many

    out = Path(out)
    fig_dir = out / "report_files"
    files: list[tuple[Path, bytes]] = [
        (fig_dir / f"{stem}.png", png) for s in report.sections for stem, png, _ in s.figures
    ]
    render = {
        "md": ("report.md", lambda: _md(report, "report_files")),
        "latex": ("report.tex", lambda: _latex(report, "report_files")),
        "html": ("report.html", lambda: _html(report)),
    }
    for fmt in formats:
        name, fn = render[fmt]
        files.append((out / name, fn().encode("utf-8")))
    facts = json.dumps({"title": report.title, "facts": report.facts}, indent=1) + "\n"
    files.append((out / "report.json", facts.encode("utf-8")))
    made = [d for d in (out, fig_dir) if not d.exists()]
    try:
        atomic_write_many(files)
    except BaseException:
        for d in reversed(made):  # folders this call made and left empty go too
            try:
                d.rmdir()
            except OSError:
                pass
        raise
    return [path for path, _ in files]
