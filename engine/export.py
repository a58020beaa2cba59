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
    """One row per metric, one column per run: the final results side by side."""
    flats = [flat_results(r.results()) for r in runs]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    cols = ("metric",) + tuple(f"{r.experiment}/{r.run_id}" for r in runs)
    rows = [(k,) + tuple(f.get(k) for f in flats) for k in keys]
    return Table(name="comparison", columns=cols, rows=rows, title="Final results by run")


def export_runs(runs, out: Path, formats=FORMATS) -> list[Path]:
    out = Path(out)
    written: list[Path] = []
    for run in runs:
        tables = [run.read_table(n) for n in run.table_names()]
        written += export_tables(tables, out / run.experiment / run.run_id, formats)
    if len(runs) > 1 or runs:
        written += export_tables([comparison_table(runs)], out, formats)
    return written
