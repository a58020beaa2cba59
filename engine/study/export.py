"""Export the tables of one or more runs, plus a side-by-side comparison of their results.

Every export gets a folder of its own under the export root
(``exports/20261201-203000-demo-sst2/``, never reused), so one comparison never
overwrites another. Inside::

    runs.*                 one row per exported run: status, task, model, tags, note, path
    comparison.*           numeric final results only: one row per metric, one column per run
    comparison_info.*      the non-numeric results (notes, splits...) in long form: run, key, value
    <exp>/<run-id>/*       each run's tables, tidy: totals in ``<table>_totals``, repeats as integers,
                           and ``confusion_matrix`` (true class x predicted class) for classifiers

CSVs are tidy: every column holds one kind of value, so ``pandas.read_csv``
gives numeric dtypes for numbers, and no row is a total. An export that fails part way
(a full disk) removes its folder: a folder that exists is a whole export.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import re
import shutil
from pathlib import Path

from engine.secrets import redact_values
from engine.status import LIVE
from engine.tables import FORMATS, Table, flat_results
from engine.tables import export_tables as _write_tables

TOTAL_LABELS = ("total",)
_REPEAT = re.compile(r"^x(\d+)$")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def run_label(run) -> str:
    return f"{run.experiment}/{run.run_id}"


def comparison_table(runs) -> Table:
    """One row per numeric metric, one column per run: the final results side by side
    (runs of a seed group are followed by the group's mean, std and n: engine.store.seeds)."""
    from engine.store.seeds import with_group_columns

    flats = [{k: v for k, v in flat_results(r.results()).items() if _is_number(v)} for r in runs]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    cols = ("metric",) + tuple(run_label(r) for r in runs)
    rows = [(k,) + tuple(f.get(k) for f in flats) for k in keys]
    return with_group_columns(
        Table(name="comparison", columns=cols, rows=rows, title="Final results by run"), list(runs)
    )


def with_scales(table: Table, runs) -> Table:
    """The comparison as a reader gets it in a file: each metric named with its scale (``f1 (0-1)``)
    and, where the runs' tasks put one metric on two scales (a classifier's f1 is 0-1, SQuAD's
    0-100), one row per scale, so no row mixes scales. The console scales such rows itself."""
    from engine.metrics.scale import metric_label

    tasks = [str(r.config().get("task", "")) for r in runs]
    n = len(runs)
    rows = []
    for row in table.rows:
        key, values, rest = row[0], list(row[1 : 1 + n]), list(row[1 + n :])
        labels = [metric_label(str(key), t) if v is not None else None for v, t in zip(values, tasks)]
        shown = list(dict.fromkeys(lab for lab in labels if lab is not None)) or [str(key)]
        for label in shown:
            own = [v if lab == label else None for v, lab in zip(values, labels)]
            rows.append((label, *own, *(rest if label == shown[0] else [None] * len(rest))))
    return Table(name=table.name, columns=table.columns, rows=rows, title=table.title, notes=table.notes)


def comparison_info_table(runs) -> Table:
    """The non-numeric results (notes, eval split, start model...) in long form."""
    rows = []
    for r in runs:
        for k, v in flat_results(r.results()).items():
            if v is not None and not _is_number(v):
                rows.append((run_label(r), k, str(v)))
    return Table(name="comparison_info", columns=("run", "key", "value"), rows=rows, title="Non-numeric results by run")


def runs_table(runs) -> Table:
    """What was exported: each run's status (runs still training are marked), task, model, tags, note."""
    from engine.store.meta import read_meta

    rows = []
    for r in runs:
        st = r.status()
        cfg = r.config()
        meta = read_meta(r)
        status = str(st.get("status", "queued"))
        rows.append(
            (
                r.experiment,
                r.run_id,
                status,
                status in LIVE,
                str(cfg.get("task", "")),
                str(cfg.get("model", "")),
                " ".join(meta["tags"]),
                meta["note"],
                str(st.get("reason", "") or ""),
                str(r.path),
            )
        )
    notes: tuple[str, ...] = ()
    active = [f"{r[0]}/{r[1]} ({r[2]})" for r in rows if r[3]]
    if active:
        notes = (f"still in progress when exported, results partial: {', '.join(active)}",)
    return Table(
        name="runs",
        columns=("experiment", "run_id", "status", "in_progress", "task", "model", "tags", "note", "reason", "path"),
        rows=rows,
        title="Exported runs",
        notes=notes,
    )


def tidy(table: Table) -> list[Table]:
    """``table`` without total rows (moved to ``<name>_totals``), repeats ``"x12"`` as the integer 12.

    Works on tables stored by any version (older runs carry a ``TOTAL`` row and ``"x12"`` strings).
    """
    body: list = []
    totals: list = []
    for row in table.rows:
        first = row[0] if row else None
        (totals if isinstance(first, str) and first.strip().lower() in TOTAL_LABELS else body).append(row)
    if "repeat" in table.columns:
        idx = table.columns.index("repeat")

        def rep(v):
            if v in (None, ""):
                return 1
            m = _REPEAT.match(str(v))
            return int(m.group(1)) if m else v

        body = [r[:idx] + (rep(r[idx]),) + r[idx + 1 :] for r in body]
    out = [Table(name=table.name, columns=table.columns, rows=body, title=table.title, notes=table.notes)]
    if totals:
        keep = [
            i
            for i, c in enumerate(table.columns)
            if i == 0 or any(_is_number(r[i]) or isinstance(r[i], bool) for r in totals)
        ]
        out.append(
            Table(
                name=f"{table.name}_totals",
                columns=tuple(table.columns[i] for i in keep),
                rows=[tuple(r[i] for i in keep) for r in totals],
                title=f"{table.title or table.name}: totals",
            )
        )
    return out


def confusion_table(run) -> Table | None:
    """The final confusion matrix as a table: one row per true class, one column per predicted class."""
    final = run.results().get("final")
    if not isinstance(final, dict):
        return None
    matrix = final.get("confusion_matrix")
    if not (isinstance(matrix, list) and matrix and all(isinstance(r, list) for r in matrix)):
        return None
    n = len(matrix)
    classes = final.get("classes")
    if not (isinstance(classes, list) and len(classes) == n):
        classes = list(range(n))
    names = final.get("class_names") or final.get("label_names")
    labels = [str(x) for x in (names if isinstance(names, list) and len(names) == n else classes)]
    cols = ("true",) + tuple(f"pred_{c}" for c in labels)
    rows = [(labels[i],) + tuple(row) for i, row in enumerate(matrix)]
    return Table(
        name="confusion_matrix",
        columns=cols,
        rows=rows,
        title=f"Confusion matrix of {run_label(run)}: rows true class, columns predicted class",
        notes=(f"{sum(map(sum, matrix)):,} examples; classes {', '.join(labels)}",),
    )


def group_tables(runs) -> list[Table]:
    """One ``seeds_<group>`` table (mean, sample std, n, each seed's value) per seed group among ``runs``."""
    from engine.store.seeds import group_table, groups_in

    return [group_table(g, rs) for g, rs in groups_in(runs).items()]


def sweep_tables(runs) -> list[Table]:
    """One ``sweep_<study>`` table (trial, status, parameters, objective, best epoch, best, run) per sweep
    study among ``runs``: the trials as ``lmconsole sweep`` lists them (:func:`engine.sweep.summary.sweep_summary`)."""
    from engine.store.trials import trial_record
    from engine.sweep.summary import sweep_summary

    studies: dict[tuple[str, str, str], None] = {}
    for run in runs:
        rec = trial_record(run)
        if rec is not None:
            studies.setdefault((str(run.path.parent.parent), run.experiment, rec["study"]), None)
    tables = []
    for runs_dir, name, study in studies:
        summary = sweep_summary(runs_dir, name, study)
        if summary is not None:
            tables.append(summary.table())
    return tables


def run_tables(run, problems: list | None = None) -> list[Table]:
    tables = []
    where = f"{run.experiment}/{run.run_id}"
    for name in run.table_names():
        try:
            tables += tidy(run.read_table(name))
        except (
            OSError,
            ValueError,
            KeyError,
        ) as exc:  # a table being rewritten or hand-broken: the others still export
            if problems is not None:
                problems.append(f"{where}: {exc}")
    cm = confusion_table(run)
    if cm is not None:
        tables.append(cm)
    return tables


def _slug(runs) -> str:
    exps = list(dict.fromkeys(r.experiment for r in runs))
    label = exps[0] if len(exps) == 1 else f"{len(runs)}-runs"
    return re.sub(r"[^A-Za-z0-9._-]", "-", label)[:48] or "export"


def new_export_dir(out: Path, runs) -> Path:
    """A fresh folder under ``out`` (exclusive mkdir: two exports never share one)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + _slug(runs)
    for n in range(1000):
        path = out / (stem if n == 0 else f"{stem}-{n + 1}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise OSError(f"could not make a new export folder under {out}")


def export_runs(runs, out: Path, formats=FORMATS, problems: list | None = None) -> list[Path]:
    """Export ``runs`` into a new folder under ``out``; returns the files written (the folder is their root).

    ``written[0]`` is always ``<folder>/runs.<first format>``. Nothing is written outside
    the folder: file names come from the tables' file names (checked safe names), never
    from names inside a run's files. A run or table that cannot be read is skipped and
    reported in ``problems`` ("unreadable: <file>: <reason>").
    """
    from engine.store.runs import SAFE_NAME

    runs = list(runs)
    problems = [] if problems is None else problems
    safe = []
    for run in runs:
        where = f"{run.experiment}/{run.run_id}"
        if not (SAFE_NAME.match(run.experiment) and SAFE_NAME.match(run.run_id)):
            problems.append(f"{where}: not a safe run name, skipped")
            continue
        problems.extend(f"{where}: {p}" for p in run.problems())
        safe.append(run)
    runs = safe
    folder = new_export_dir(out, runs)
    with _removed_on_failure(folder):
        written = export_tables([runs_table(runs)], folder, formats)
        for run in runs:
            written += export_tables(run_tables(run, problems), folder / run.experiment / run.run_id, formats)
        if runs:
            written += export_tables(
                [with_scales(comparison_table(runs), runs), comparison_info_table(runs)]
                + group_tables(runs)
                + sweep_tables(runs),
                folder,
                formats,
            )
    return written


def export_tables(tables: list[Table], out_dir: Path, formats=FORMATS, prefix: str = "") -> list[Path]:
    """``tables`` written as :func:`engine.tables.export_tables` does, with any token in their text
    redacted (a run made before config.json was redacted may still hold one)."""
    clean = [
        Table(t.name, t.columns, [redact_values(list(r)) for r in t.rows], t.title, redact_values(list(t.notes)))
        for t in tables
    ]
    return _write_tables(clean, out_dir, formats, prefix)


@contextlib.contextmanager
def _removed_on_failure(folder: Path):
    """An export that fails part way (a full disk) takes its new folder with it: a folder left
    behind would look like a whole export."""
    try:
        yield
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def export_table(run, table: Table, out: Path, formats=FORMATS) -> list[Path]:
    """One table of ``run`` (tidy, with its ``_totals`` when it has totals) into a new folder under ``out``."""
    folder = new_export_dir(out, [run])
    with _removed_on_failure(folder):
        return export_tables(tidy(table), folder, formats, prefix=f"{run.experiment}_{run.run_id}_")


def export_folder(written: list[Path]) -> Path | None:
    """The folder an :func:`export_runs` call made, from its return value."""
    return Path(written[0]).parent if written else None


def split_exportable(runs) -> tuple[list, list]:
    """(runs with a result to export, runs still queued/running/paused) for ``export --all``."""
    done: list = []
    active: list = []
    for r in runs:
        (active if r.status().get("status") in LIVE else done).append(r)
    return done, active
