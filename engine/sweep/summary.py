"""What a reader of a sweep shows: its trials, the best one, the progress and Optuna's importances.

:func:`sweep_summary` is the one function the CLI (``lmconsole sweep``), exports, the study
report and a console sweep view call. Trials and their objectives come from the run directories
(the source of truth: a trial retried after the study failed it still counts); only the
parameter importances come from the study, when it can be opened and has two or more completed
trials (Optuna's ``get_param_importances`` with its default evaluator). Opening the study also ends
the trials whose job died without telling it (:meth:`engine.sweep.study.SweepStudy.reconcile`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.store.runs import RunStore
from engine.store.trials import objective_of, trial_runs
from engine.tables import Table


@dataclass(frozen=True)
class TrialRow:
    """One trial: its number, run, status, parameters, objective (last evaluation) and best epoch."""

    trial: int
    run: str  # "experiment/run id"
    status: str
    parameters: dict
    objective: float | None
    best_epoch: int | None
    best: bool = False  # the best finished trial: what ``model = "run:<sweep>"`` uses


@dataclass(frozen=True)
class SweepSummary:
    """A sweep's study as its runs show it; ``trials`` sorted by objective, best first, unknowns last."""

    name: str
    study: str
    objective: str
    direction: str
    planned: int  # trials the sweep asks for (0 when the manifest no longer has the sweep)
    trials: list[TrialRow]
    importances: dict[str, float] = field(default_factory=dict)
    note: str = ""  # why importances are missing, when they are

    @property
    def best(self) -> TrialRow | None:
        return next((t for t in self.trials if t.best), None)

    @property
    def done(self) -> int:
        """Trials that ended (finished, pruned, failed, cancelled): the ``7`` of ``7/16 trials``."""
        return sum(1 for t in self.trials if t.status not in ("queued", "running", "paused"))

    def progress_text(self) -> str:
        """``7/16 trials, best 0.931`` (the experiments tab's line)."""
        best = self.best
        tail = f", best {best.objective:.4g}" if best is not None and best.objective is not None else ""
        return f"{self.done}/{self.planned or len(self.trials)} trials{tail}"

    def to_json(self) -> dict:
        out = asdict(self)
        out["best"] = asdict(self.best) if self.best else None
        out["progress"] = self.progress_text()
        return out

    def table(self) -> Table:
        """The trials table (exports, the report): one row per trial, parameters as columns."""
        params = list(dict.fromkeys(k for t in self.trials for k in t.parameters))
        columns = ["trial", "status", *params, self.objective, "best_epoch", "best", "run"]
        rows = [
            [t.trial, t.status, *(t.parameters.get(p) for p in params), t.objective, t.best_epoch, t.best, t.run]
            for t in self.trials
        ]
        safe = re.sub(r"[^A-Za-z0-9_-]", "-", self.study)  # a table name is a file name
        return Table(name=f"sweep_{safe}", columns=columns, rows=rows, title=f"sweep {self.name}, study {self.study}")


def sweep_summary(runs_dir: Path | str, name: str, study: str | None = None, exp=None) -> SweepSummary | None:
    """The trials of sweep ``name`` (of ``study``; default: its latest) read from ``runs_dir``; None if none.

    ``exp``: the manifest's experiment, when the caller has it: the planned trial count, and the
    study for importances (opened read-only; a study that cannot be reached leaves them out, with a note).
    """
    store = RunStore(runs_dir)
    found = trial_runs(store, name, study)
    if not found:
        return None
    record = found[0][1]
    maximize = record.get("direction") != "minimize"
    rows = []
    for run, rec in found:
        value, best_epoch = objective_of(run, rec)
        rows.append(
            TrialRow(
                trial=int(rec["trial"]),
                run=f"{run.experiment}/{run.run_id}",
                status=str(run.status().get("status", "queued")),
                parameters=dict(rec.get("parameters") or {}),
                objective=value,
                best_epoch=best_epoch,
            )
        )
    finished = [r for r in rows if r.status == "finished" and r.objective is not None]
    best = (max if maximize else min)(finished, key=lambda r: r.objective or 0.0) if finished else None
    rows = [TrialRow(**{**asdict(r), "best": r is best}) for r in rows]
    # by objective, best first (a finished trial before an unfinished one with the same value), unknowns last
    rows.sort(
        key=lambda r: (
            r.objective is None,
            -(r.objective or 0.0) if maximize else (r.objective or 0.0),
            r.status != "finished",
            r.trial,
        )
    )
    importances: dict[str, float] = {}
    note = ""
    sweep = getattr(exp, "sweep", None)
    if sweep is not None:
        importances, note = _importances(exp, runs_dir, str(record["study"]))
    return SweepSummary(
        name=name,
        study=str(record["study"]),
        objective=str(record.get("objective", "")),
        direction="maximize" if maximize else "minimize",
        planned=sweep.trials if sweep is not None else 0,
        trials=rows,
        importances=importances,
        note=note,
    )


def _importances(exp, runs_dir, study_name: str) -> tuple[dict[str, float], str]:
    try:
        import optuna

        from engine.sweep.study import SweepStudy

        db = Path(runs_dir) / exp.name / "sweep.db"
        if not exp.sweep.storage and not db.is_file():  # reading never creates a study
            return {}, f"no study database ({exp.name}/sweep.db in the runs directory)"
        sweep = SweepStudy(exp, runs_dir, study_name)
        sweep.reconcile(RunStore(runs_dir))  # trials whose job could not tell the study how they ended
        study = sweep.study
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(complete) < 2:
            return {}, "importances need two completed trials"
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}, ""
    except Exception as exc:  # noqa: BLE001 - importances are extra: the trials table stands without them
        return {}, f"no importances: {type(exc).__name__}: {str(exc)[:120]}"
