"""``lmconsole sweep SWEEP``: the trials of a sweep, sorted by objective, the best marked (``--json`` for scripts)."""

from __future__ import annotations

import json

from engine.cli.output import safe_print
from engine.errors import NotFound, UserError


def cmd_sweep(args, manifest) -> int:
    from engine.sweep.summary import sweep_summary

    name = args.sweep
    exp = manifest.get(name) if name in manifest.names else None
    if exp is not None and exp.sweep is None:
        raise UserError(f"{name} is no sweep: it has no [experiment.sweep] table", f"lmconsole runs {name}")
    summary = sweep_summary(manifest.runs_dir, name, args.study or None, exp)
    if summary is None:
        if exp is None:
            raise NotFound(f"no sweep named {name!r} in {manifest.path} and no trials of it under {manifest.runs_dir}")
        raise NotFound(f"sweep {name} has no trials yet", f"queue it: lmconsole run {name}")
    if args.json:
        print(json.dumps(summary.to_json(), indent=1))
        return 0
    safe_print(
        f"sweep {name} (study {summary.study}): {summary.progress_text()}; "
        f"objective {summary.objective} ({summary.direction}), * = best finished trial"
    )
    params = list(dict.fromkeys(k for t in summary.trials for k in t.parameters))
    head = ["", "trial", "status", *params, summary.objective, "best epoch"]
    rows = [
        [
            "*" if t.best else "",
            str(t.trial),
            t.status,
            *(_cell(t.parameters.get(p)) for p in params),
            _cell(t.objective),
            "" if t.best_epoch is None else str(t.best_epoch),
        ]
        for t in summary.trials
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        safe_print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if summary.importances:
        safe_print("importances: " + ", ".join(f"{k} {v:.2f}" for k, v in summary.importances.items()))
    if summary.best is not None:
        safe_print(f'best: trial {summary.best.trial}, {summary.best.run} (model = "run:{name}" uses it)')
    return 0


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
