"""What the console needs to know about a metric's name: its scale, which way is better, a headline.

Plain data, no Textual. ``metric_scale`` asks the engine's scale table whether a metric
reads 0-1, 0-100 or is unbounded; the screens only call it from here.
"""

from __future__ import annotations

import math

from engine.tables import flat_results

LOWER_WORDS = ("loss", "perplexity")
HIGHER_WORDS = ("accuracy", "precision", "recall", "f1", "exact", "bleu", "rouge", "meteor")


def metric_scale(name: str, task: str = "") -> str:
    """``"percent"`` (0-100), ``"fraction"`` (0-1) or ``""`` (unbounded: losses, perplexity, counts).

    The engine's scale table decides (``engine.metrics.scale``: the same scales the report
    and exports print); the same name can differ by task: ``f1`` is 0-100 in squad_v2 (task
    ``qa``) and 0-1 for a classifier.
    """
    from engine.metrics.scale import metric_scale as engine_scale

    return {"0-100": "percent", "0-1": "fraction"}.get(engine_scale(name, task).unit, "")


def higher_is_better(name: str) -> bool | None:
    """True / False for quality metrics, None for counts and constants (no "best" for them)."""
    name = name.removeprefix("final.").lower()
    if "baseline" in name or name.endswith(("_total", "_thresh")) or name in ("n", "total"):
        return None
    if any(w in name for w in LOWER_WORDS):
        return False
    if any(w in name for w in HIGHER_WORDS):
        return True
    return None


def best_of(values: list, name: str) -> tuple[int, float] | None:
    """(index, value) of the best finite value, or None when "best" means nothing for ``name``."""
    direction = higher_is_better(name)
    pairs = [
        (i, float(v))
        for i, v in enumerate(values)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ]
    if direction is None or not pairs:
        return None
    pick = max if direction else min
    return pick(pairs, key=lambda p: p[1])


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _f(v, digits: int = 3) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def headline(task: str, results: dict, first_eval: dict | None = None) -> str:
    """One line a reader wants first, e.g. ``final accuracy 0.968 (majority 0.528) · F1 0.970``."""
    final = results.get("final")
    final = final if isinstance(final, dict) else {}
    if task == "classify" and _num(final.get("accuracy")):
        line = f"final accuracy {_f(final['accuracy'])}"
        if _num(final.get("majority_baseline")):
            line += f" (majority {_f(final['majority_baseline'])})"
        if _num(final.get("f1")):
            line += f" · F1 {_f(final['f1'])}"
        if _num(final.get("macro_f1")):
            line += f" · macro-F1 {_f(final['macro_f1'])}"
        return line
    if task == "qa" and _num(final.get("f1")):
        line = f"final F1 {final['f1']:.1f}"
        if _num(final.get("best_f1")):  # at the best no-answer threshold (SQuAD v2's best_f1)
            line += f" (best threshold {final['best_f1']:.1f})"
        line += f", EM {final.get('exact', float('nan')):.1f} (0-100)"
        if _num(final.get("HasAns_f1")) and _num(final.get("NoAns_f1")):
            line += f" · HasAns {final['HasAns_f1']:.1f} · NoAns {final['NoAns_f1']:.1f}"
        if _num(final.get("empty_baseline_f1")):
            line += f" · always-empty {final['empty_baseline_f1']:.1f}"
        return line
    if task == "pretrain" and _num(final.get("mlm_perplexity")):
        line = f"final MLM perplexity {_f(final['mlm_perplexity'], 1)}"
        if first_eval and _num(first_eval.get("mlm_perplexity")):
            line += f" (before training {_f(first_eval['mlm_perplexity'], 1)})"
        if _num(final.get("mlm_accuracy")):
            line += f" · MLM accuracy {_f(final['mlm_accuracy'])}"
        elif _num(final.get("accuracy")):
            line += f" · accuracy {_f(final['accuracy'])}"
        return line
    if task == "inspect" and isinstance(results.get("parameters"), dict):
        return "parameters: " + ", ".join(f"{k} {v:,}" for k, v in results["parameters"].items() if _num(v))
    flat = {k: v for k, v in flat_results(results).items() if _num(v)}
    key = next(iter(flat), None)
    return f"{key} {_f(flat[key])}" if key else ""
