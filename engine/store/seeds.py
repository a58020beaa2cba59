"""Runs of one experiment over several seeds (``seeds = [1, 2, 3]``): groups and their statistics.

Each seed is its own run; the runs of one submission share a group id in their
``config.json`` (``"group"``). Per metric of the final results, a group has the
mean, the *sample* standard deviation (n - 1 in the denominator, Python's
``statistics.stdev``; undefined for n = 1) and n, the number of finished runs
that reported that metric. Tables, compare and exports show these next to the runs.
"""

from __future__ import annotations

import math
import statistics

from engine.store.runs import new_run_id
from engine.tables import Table, flat_results, fmt_num

STD_NOTE = "std = sample standard deviation (n - 1); n = finished runs with the metric"


def new_group_id(experiment: str) -> str:
    return f"{experiment}-seeds-{new_run_id()}"


def seed_jobs(exp) -> list[tuple[int | None, str]]:
    """(seed, group) for each run one submission of ``exp`` makes: one per seed, or one plain run."""
    seeds = tuple(getattr(exp, "seeds", ()) or ())
    if not seeds:
        return [(None, "")]
    group = new_group_id(exp.name)
    return [(s, group) for s in seeds]


def group_of(run) -> str:
    group = run.config().get("group")
    return group if isinstance(group, str) else ""


def group_runs(store, group: str, experiment: str | None = None) -> list:
    """Every run of ``group`` on disk (any status), oldest first."""
    if not group:
        return []
    exp = experiment or group.split("-seeds-", 1)[0]
    return [r for r in store.runs(exp) if group_of(r) == group]


def _numbers(results: dict) -> dict[str, float]:
    out = {}
    for k, v in flat_results(results).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = float(v)
    return out


def metric_stats(results_list: list[dict]) -> dict[str, dict]:
    """Per metric: ``{"mean", "std", "n", "values"}`` over the given final results.

    ``std`` is the sample standard deviation (None when n < 2). Keys are those of
    :func:`engine.tables.flat_results` (``final.accuracy``), in order of first appearance.
    """
    per: dict[str, list[float]] = {}
    for res in results_list:
        for k, v in _numbers(res).items():
            per.setdefault(k, []).append(v)
    return {
        k: {
            "mean": statistics.fmean(vs),
            "std": statistics.stdev(vs) if len(vs) > 1 else None,
            "n": len(vs),
            "values": vs,
        }
        for k, vs in per.items()
    }


def finished(runs) -> list:
    return [r for r in runs if r.status().get("status") == "finished"]


def group_stats(runs) -> dict[str, dict]:
    """:func:`metric_stats` over the finished runs among ``runs``."""
    return metric_stats([r.results() for r in finished(runs)])


def fmt_stat(stat: dict | None, digits: int = 4, with_n: bool = True) -> str:
    """``0.92 ± 0.02 (n=3)``; ``0.92 (n=1)`` when the std is undefined; without ``(n=..)`` if not ``with_n``."""
    if not stat:
        return ""
    mean = fmt_num(stat["mean"], digits)
    std = f" ± {fmt_num(stat['std'], digits)}" if stat.get("std") is not None else ""
    return f"{mean}{std}" + (f" (n={stat['n']})" if with_n else "")


def common_n(stats) -> int | None:
    """The n shared by every metric (then a header can say it once), else None."""
    ns = {st["n"] for st in stats if st}
    return ns.pop() if len(ns) == 1 else None


def groups_in(runs) -> dict[str, list]:
    """group id -> the given runs in it, in order of first appearance (ungrouped runs left out)."""
    out: dict[str, list] = {}
    for r in runs:
        g = group_of(r)
        if g:
            out.setdefault(g, []).append(r)
    return out


def group_label(group: str, runs) -> str:
    seeds = ",".join(str(r.config().get("seed")) for r in runs)
    return f"{runs[0].experiment} seeds {seeds}" if runs else group


def group_table(group: str, runs) -> Table:
    """One row per metric: mean, sample std, n, then each finished run's value (its seed in the header)."""
    done = finished(runs)
    stats = group_stats(done)
    seeds = [r.config().get("seed") for r in done]
    cols = ("metric", "mean", "std", "n") + tuple(f"seed {s}" for s in seeds)
    rows = []
    for k, st in stats.items():
        vals = [_numbers(r.results()).get(k) for r in done]
        rows.append((k.removeprefix("final."), st["mean"], st["std"], st["n"], *vals))
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in group)
    return Table(
        name=f"seeds_{safe}",
        columns=cols,
        rows=rows,
        title=f"{group_label(group, done) if done else group}: mean ± std over seeds",
        notes=(STD_NOTE,),
    )


def with_group_columns(table: Table, runs) -> Table:
    """A comparison table (metric rows, one column per run) plus mean / std / n columns for each
    seed group among ``runs``, placed right after the group's last run column."""
    groups = groups_in(runs)
    if not groups:
        return table
    stats = {g: group_stats(rs) for g, rs in groups.items()}
    last = {g: max(runs.index(r) for r in rs) for g, rs in groups.items()}
    cols = [table.columns[0]]
    plan: list[tuple] = []  # per output column: ("run", index) or ("stat", group, field)
    for i, col in enumerate(table.columns[1:]):
        cols.append(col)
        plan.append(("run", i))
        for g, at in last.items():
            if at == i:
                label = group_label(g, groups[g])
                cols += [f"{label}: mean", f"{label}: std", f"{label}: n"]
                plan += [("stat", g, "mean"), ("stat", g, "std"), ("stat", g, "n")]
    rows = []
    for row in table.rows:
        out = [row[0]]
        for p in plan:
            if p[0] == "run":
                out.append(row[1 + p[1]])
            else:
                st = stats[p[1]].get(row[0])
                out.append(st[p[2]] if st else None)
        rows.append(tuple(out))
    return Table(
        name=table.name,
        columns=tuple(cols),
        rows=tuple(rows),
        title=table.title,
        notes=tuple(table.notes) + (STD_NOTE,),
    )
