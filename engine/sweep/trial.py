"""The job side of a sweep trial: report each evaluation to the study, hear the pruner, tell the end.

:func:`trial_sink` gives the job of a trial run (its ``config.json`` has a ``sweep`` record)
a sink that, on each ``EvalFinished``, reports the objective at step = epoch and asks the
pruner; when the pruner says stop, it sets ``ctx.prune_reason`` and the training loop ends the
run at that epoch boundary with status ``pruned``. On ``RunFinished`` it tells the study how
the trial ended (finished: complete with the last evaluation's objective; pruned: pruned;
anything else: failed). A heartbeat thread keeps the trial alive in the study while the job
runs; a job killed outright stops beating and the next ``ask`` fails its trial.

Nothing here may end a job: a study that cannot be reached is logged once and the trial
runs on as a plain run (its results are in its run directory, where ``lmconsole sweep`` reads them).
"""

from __future__ import annotations

import math
import threading

from engine.events import EvalFinished, RunFinished
from engine.store.trials import trial_record
from engine.sweep.study import HEARTBEAT_S, SweepStudy


class TrialSink:
    """Reports a trial's evaluations to its study and tells it the end (a sink of the job's events)."""

    def __init__(self, ctx, study: SweepStudy, record: dict):
        self.ctx, self.study, self.record = ctx, study, record
        self.number = int(record["trial"])
        self.objective = str(record.get("objective", ""))
        self.trial = study.trial(self.number)
        self.last: float | None = None
        self.broken = False
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._beating, name=f"sweep-heartbeat-{self.number}", daemon=True)
        self._beat.start()

    def _beating(self) -> None:
        # at once, then every HEARTBEAT_S: Optuna fails only trials that have beaten at least once
        while True:
            self._safe(self.study.heartbeat, self.number)
            if self._stop.wait(HEARTBEAT_S):
                return

    def _safe(self, fn, *args):
        if self.broken:
            return None
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - the study is advisory: the job goes on without it
            self.broken = True
            self.ctx.log(
                f"sweep trial {self.number}: the study stopped answering ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); the run goes on, its results stay on disk",
                "warning",
            )
            return None

    def emit(self, event) -> None:
        if isinstance(event, EvalFinished):
            value = event.metrics.get(self.objective)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.last = float(value)
                self._safe(self._report, float(value), int(event.epoch))
        elif isinstance(event, RunFinished):
            self.close(event.status, event.results)

    def _report(self, value: float, epoch: int) -> None:
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            self.ctx.prune_reason = (
                f"pruned by the {self.study.spec.pruner} pruner after epoch {epoch}: "
                f"{self.objective} {value:.4g} is behind the other trials"
            )

    def close(self, status: str, results: dict | None = None) -> None:
        self._stop.set()
        final = (results or {}).get("final") if isinstance(results, dict) else None
        value = final.get(self.objective) if isinstance(final, dict) else None
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
            value = self.last
        if status == "finished" and value is not None:
            self._safe(self.study.tell, self.number, "complete", float(value))
        elif status == "pruned":
            self._safe(self.study.tell, self.number, "pruned")
        else:
            self._safe(self.study.tell, self.number, "fail")


def trial_sink(ctx) -> TrialSink | None:
    """The trial sink of a job whose run is a sweep trial (and whose experiment still has the sweep), else None."""
    record = trial_record(ctx.run)
    exp = ctx.manifest.get(record["name"]) if record and record.get("name") in ctx.manifest.names else None
    if record is None or exp is None or exp.sweep is None:
        return None
    try:
        study = SweepStudy(exp, ctx.manifest.runs_dir, record["study"])
        state = study.state(int(record["trial"]))
        if state != "running":  # a retried trial whose study ended it: this attempt is a plain run
            ctx.log(
                f"sweep trial {record['trial']} is {state} in its study; this attempt's results stay in the run "
                f"(lmconsole sweep {exp.name} reads them) but the search no longer hears of it"
            )
            return None
        sink = TrialSink(ctx, study, record)
    except Exception as exc:  # noqa: BLE001 - the trial runs on without its study (and says so)
        ctx.log(f"sweep trial {record['trial']}: its study cannot be opened ({exc}); the run goes on", "warning")
        return None
    return sink
