"""The trials of a sweep as run directories: which runs belong to a sweep, their objective, the best.

A trial is an ordinary run whose ``config.json`` carries ``"sweep"``::

    {"name": "sst2-lr", "study": "sst2-lr-20261208-001500-...", "trial": 3,
     "parameters": {"learning_rate": 0.00021}, "objective": "accuracy", "direction": "maximize"}

``study`` names the Optuna study the trial belongs to (one per ``lmconsole run`` of a sweep with
the default SQLite storage). A trial's objective is read from its own results, never from the
study: the run directory is the truth (a trial retried after its Optuna trial was failed still
counts). The objective is the value of the *last* evaluation (``final``), i.e. of the model the
trial leaves; the epoch where the objective peaked is shown beside it.
"""

from __future__ import annotations

import math

from engine.errors import JobError
from engine.events import EvalFinished
from engine.store.runs import Run, RunStore


def trial_record(run: Run) -> dict | None:
    """The ``sweep`` record of a trial's ``config.json``, or None for a run that is no trial."""
    rec = run.config().get("sweep")
    if not isinstance(rec, dict) or not isinstance(rec.get("study"), str) or not isinstance(rec.get("trial"), int):
        return None
    return rec


def _number(v) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def objective_of(run: Run, record: dict) -> tuple[float | None, int | None]:
    """(objective, best epoch) of a trial: the last evaluation's value and the epoch where it was best."""
    metric, maximize = str(record.get("objective", "")), record.get("direction") != "minimize"
    results = run.results()
    value = _number((results.get("final") or {}).get(metric)) if isinstance(results.get("final"), dict) else None
    history = results.get("history") if isinstance(results.get("history"), list) else []
    if not history:  # a live, pruned-by-a-kill or killed trial: its evaluations so far, from its events
        history = [{"epoch": e.epoch, **e.metrics} for e in run.events() if isinstance(e, EvalFinished)]
    points = [
        (int(h["epoch"]), v)
        for h in history
        if isinstance(h, dict) and isinstance(h.get("epoch"), int) and (v := _number(h.get(metric))) is not None
    ]
    if value is None and points:
        value = points[-1][1]
    best_epoch = None
    if points:
        # the last epoch among equals: the one the trial's model is closest to
        best_epoch = (max if maximize else min)(reversed(points), key=lambda p: p[1])[0]
    return value, best_epoch


def trial_runs(store: RunStore, name: str, study: str | None = None) -> list[tuple[Run, dict]]:
    """(run, record) of every trial of sweep ``name`` (of ``study``; default: the latest study), by trial."""
    trials = [(r, rec) for r in store.runs(name) if (rec := trial_record(r)) is not None]
    if study is None and trials:
        study = trials[-1][1]["study"]  # runs are listed oldest first
    return sorted(((r, rec) for r, rec in trials if rec["study"] == study), key=lambda t: t[1]["trial"])


def best_trial(store: RunStore, name: str, study: str | None = None) -> Run | None:
    """The finished trial with the best objective (``model = "run:<sweep>"``), or None."""
    best: tuple[float, Run] | None = None
    for run, rec in trial_runs(store, name, study):
        if run.status().get("status") != "finished":
            continue
        value, _ = objective_of(run, rec)
        if value is None:
            continue
        key = value if rec.get("direction") != "minimize" else -value
        if best is None or key > best[0]:
            best = (key, run)
    return best[1] if best else None


def dependency_run(store: RunStore, exp_name: str) -> Run:
    """What ``model = "run:<exp>"`` means: the latest finished run of ``exp_name``; of a sweep, the finished
    trial of its latest study with the best objective."""
    run = best_trial(store, exp_name) if trial_runs(store, exp_name) else store.latest(exp_name, status="finished")
    if run is None:
        raise JobError(
            f"needs a finished run of {exp_name!r}, and there is none",
            f"run it first: lmconsole run {exp_name} (the console and `lmconsole run` queue dependencies for you)",
        )
    return run
