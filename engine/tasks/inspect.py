"""``task = "inspect"``: parameter tables of a model under each requested head, and diffs."""

from __future__ import annotations

from engine.events import TableWritten
from engine.models.params import diff_table, full_table, grouped_table, rows_for, summary_table
from engine.models.source import experiment_config
from engine.train.context import TaskContext


def parameter_tables(config, heads, base_head: str = "base"):
    """Tables for each head plus a diff of each against ``base_head``; also the totals."""
    tables, totals = [], {}
    rows = {h: rows_for(config, h) for h in dict.fromkeys([base_head, *heads])}
    for head in heads:
        r = rows[head]
        totals[head] = sum(x.count for x in r)
        tables += [grouped_table(r, head), summary_table(r, head), full_table(r, head)]
        if head != base_head:
            tables.append(diff_table(rows[base_head], r, base_head, head))
    return tables, totals


def run(ctx: TaskContext) -> dict:
    config = experiment_config(ctx)
    tables, totals = parameter_tables(config, list(ctx.exp.heads))
    for t in tables:
        path = ctx.writer.write_table(t)
        ctx.emit(TableWritten(name=t.name, path=str(path)))
    for head, n in totals.items():
        ctx.log(f"{head}: {n:,} parameters")
    return {"parameters": totals}
