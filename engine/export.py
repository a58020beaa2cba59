"""Export the tables of one or more runs, plus a side-by-side comparison of their results."""

from __future__ import annotations

from pathlib import Path

from .tables import FORMATS, Table, export_tables


def flat_results(results: dict, prefix: str = "") -> dict:
    """Nested results flattened to ``a.b`` keys with scalar values (lists/matrices skipped)."""
    out = {}
    for k, v in results.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_results(v, key + "."))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[key] = v
    return out


def comparison_table(runs) -> Table:
    """One row per metric, one column per run: the final results side by side
    (runs of a seed group are followed by the group's mean, std and n: engine.seeds)."""
    from .seeds import with_group_columns

    flats = [flat_results(r.results()) for r in runs]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    cols = ("metric",) + tuple(f"{r.experiment}/{r.run_id}" for r in runs)
    rows = [(k,) + tuple(f.get(k) for f in flats) for k in keys]
    return with_group_columns(Table(name="comparison", columns=cols, rows=rows, title="Final results by run"), list(runs))


def group_tables(runs) -> list[Table]:
    """One ``seeds_<group>`` table (mean, sample std, n, each seed's value) per seed group among ``runs``."""
    from .seeds import group_table, groups_in

    return [group_table(g, rs) for g, rs in groups_in(runs).items()]


def export_runs(runs, out: Path, formats=FORMATS, problems: list | None = None) -> list[Path]:
    """Write every table of ``runs`` under ``out/<experiment>/<run-id>/`` plus ``out/comparison.*``.

    Nothing is written outside ``out``: file names come from the tables' file names
    (checked safe names), never from names inside a run's files. A table that cannot
    be read is skipped and reported in ``problems`` ("unreadable: <file>: <reason>").
    """
    from .runs import SAFE_NAME

    out = Path(out)
    written: list[Path] = []
    problems = [] if problems is None else problems
    for run in runs:
        where = f"{run.experiment}/{run.run_id}"
        if not (SAFE_NAME.match(run.experiment) and SAFE_NAME.match(run.run_id)):
            problems.append(f"{where}: not a safe run name, skipped")
            continue
        problems.extend(f"{where}: {p}" for p in run.problems())
        tables = []
        for name in run.table_names():
            try:
                tables.append(run.read_table(name))
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
        written += export_tables(tables, out / run.experiment / run.run_id, formats)
    if runs:
        written += export_tables([comparison_table(runs)], out, formats)
        written += export_tables(group_tables(runs), out, formats)
    return written
