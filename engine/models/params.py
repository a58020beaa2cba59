"""Parameter tables: per-tensor rows, a grouped view ("x12"), module totals and diffs.

Counts are of unique trainable tensors (tied weights counted once, as
``named_parameters`` yields them) and need no weights: models are built on the
``meta`` device. Names drop the base-model prefix (``bert.``) so that a base
model, a pretraining model and head models line up in a diff.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.tables import Table

_LAYER = re.compile(r"^(.*\.layer)\.(\d+)\.(.*)$")


@dataclass(frozen=True)
class ParamRow:
    name: str
    shape: tuple[int, ...]
    count: int
    trainable: bool


def param_rows(model) -> list[ParamRow]:
    prefix = getattr(model, "base_model_prefix", "") or ""
    rows = []
    for name, p in model.named_parameters():
        if prefix and name.startswith(prefix + "."):
            name = name[len(prefix) + 1 :]
        rows.append(ParamRow(name, tuple(p.shape), int(p.numel()), bool(p.requires_grad)))
    return rows


def module_key(name: str) -> str:
    """Diff granularity: top-level module, or two levels for head containers (``cls.*``)."""
    parts = name.split(".")
    if parts[0] in ("cls", "encoder", "embeddings") and len(parts) > 2:
        return ".".join(parts[:2])
    return parts[0]


def module_totals(rows: list[ParamRow]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for r in rows:
        k = module_key(r.name)
        totals[k] = totals.get(k, 0) + r.count
    return totals


def full_table(rows: list[ParamRow], label: str) -> Table:
    total = sum(r.count for r in rows)
    trainable = sum(r.count for r in rows if r.trainable)
    body = [(r.name, "x".join(map(str, r.shape)), r.count, r.trainable) for r in rows]
    body.append(("TOTAL", "", total, trainable == total))
    return Table(
        name=f"params_{label}_full",
        columns=("module", "shape", "parameters", "trainable"),
        rows=body,
        title=f"Parameters of {label} (every tensor)",
        notes=(f"total {total:,}; trainable {trainable:,}",),
    )


def grouped_table(rows: list[ParamRow], label: str) -> Table:
    """Layer 0 of each repeated stack shown once, with its repeat count ("x12")."""
    repeats: dict[str, int] = {}
    for r in rows:
        m = _LAYER.match(r.name)
        if m:
            repeats[m.group(1)] = max(repeats.get(m.group(1), 0), int(m.group(2)) + 1)
    body: list[tuple] = []
    for r in rows:
        m = _LAYER.match(r.name)
        if m:
            if m.group(2) != "0":
                continue
            n = repeats[m.group(1)]
            body.append((r.name, "x".join(map(str, r.shape)), r.count, f"x{n}", r.count * n, r.trainable))
        else:
            body.append((r.name, "x".join(map(str, r.shape)), r.count, "", r.count, r.trainable))
    total = sum(r.count for r in rows)
    body.append(("TOTAL", "", None, "", total, all(r.trainable for r in rows)))
    return Table(
        name=f"params_{label}",
        columns=("module", "shape", "parameters", "repeat", "subtotal", "trainable"),
        rows=body,
        title=f"Parameters of {label} (layer 0 shown once per stack)",
        notes=(f"total {total:,}",),
    )


def summary_table(rows: list[ParamRow], label: str) -> Table:
    totals = module_totals(rows)
    body = [(k, v) for k, v in totals.items()]
    body.append(("TOTAL", sum(totals.values())))
    return Table(
        name=f"params_{label}_modules",
        columns=("module", "parameters"),
        rows=body,
        title=f"Parameters of {label} by module",
    )


def diff_table(before: list[ParamRow], after: list[ParamRow], before_label: str, after_label: str) -> Table:
    """Modules added / removed / changed between two models, with the delta of totals."""
    a, b = module_totals(before), module_totals(after)
    shapes_a = {r.name: r.shape for r in before}
    shapes_b = {r.name: r.shape for r in after}
    body = []
    for key in list(a) + [k for k in b if k not in a]:
        na, nb = a.get(key, 0), b.get(key, 0)
        if key not in b:
            status = "removed"
        elif key not in a:
            status = "added"
        else:
            names_a = {n: s for n, s in shapes_a.items() if module_key(n) == key}
            names_b = {n: s for n, s in shapes_b.items() if module_key(n) == key}
            status = "changed" if names_a != names_b else "same"
        if status != "same":
            body.append((key, status, na, nb, nb - na))
    ta, tb = sum(a.values()), sum(b.values())
    body.append(("TOTAL", "", ta, tb, tb - ta))
    return Table(
        name=f"params_diff_{before_label}_vs_{after_label}",
        columns=("module", "change", before_label, after_label, "delta"),
        rows=body,
        title=f"Parameter diff: {before_label} -> {after_label}",
        notes=(f"{ta:,} -> {tb:,} ({tb - ta:+,})",),
    )


def rows_for(config, head: str) -> list[ParamRow]:
    from engine.models.presets import build_meta

    return param_rows(build_meta(config, head))
