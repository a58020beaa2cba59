"""A sweep's Optuna study: where it lives, its sampler and pruner, asking it for a trial.

The study's storage is SQLite at ``<runs>/<sweep>/sweep.db`` unless the sweep names a
``storage`` URL (PostgreSQL, say, for one study that several machines' queues share). With the
default storage every ``lmconsole run <sweep>`` starts a new study named
``<sweep>-<time>``; a shared storage has one study named after the experiment, so queues on
several machines feed the same one.

A sweep runs at most ``trials`` trials: :meth:`SweepStudy.ask` counts every trial the study
has (failed ones too) before it asks, and a trial numbered past the budget (two machines that
asked at once) is told failed at once and never runs. A trial is asked for under the queue's
lock by the scheduler; one it asked for but never handed to a run (the scheduler was killed
in between) is given to the same queue job next time, never asked for twice.

Trials that died without telling (a SIGKILLed job) are failed two ways: Optuna's heartbeat
(a running trial whose job stopped beating is failed by the next ``ask``), and the run
directory (a trial whose run has ended, or whose owner died, is failed when read).
"""

from __future__ import annotations

import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

from engine.errors import UserError

# Seconds between a running trial's heartbeats; a trial silent for twice as long counts as dead.
HEARTBEAT_S = float(os.environ.get("LMCONSOLE_SWEEP_HEARTBEAT_S", "30"))
# Finished trials the median pruner waits for before it prunes anything (Optuna's default is 5:
# too many for a sweep of a dozen trials).
MEDIAN_STARTUP_TRIALS = 2


def _optuna():
    try:
        import optuna
    except ImportError:
        raise UserError(
            "sweeps need Optuna, which is not installed", "pip install 'lmconsole[sweep]' (or pip install optuna)"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The heartbeat and fail_stale_trials are marked experimental, and Optuna expects heartbeats from
    # Study.optimize; we drive them ourselves (ask/tell across processes), as the module doc says.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    warnings.filterwarnings("ignore", message="Target and region quantiles select the same set of trials")
    return optuna


def storage_url(spec, runs_dir: Path | str, name: str) -> str:
    """The study's database: the sweep's ``storage``, else SQLite in the sweep's folder of the runs directory."""
    if spec.storage:
        return spec.storage
    folder = Path(runs_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'sweep.db').resolve()}"


def shown_url(url: str) -> str:
    """A storage URL without its password, for messages and files."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


def new_study_name(exp, stamp: str) -> str:
    """One study per submission with the default storage; the experiment's name for a shared storage."""
    return exp.name if exp.sweep.storage else f"{exp.name}-{stamp}"


def _storage(url: str):
    optuna = _optuna()
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):  # several processes write one file: wait for a lock instead of failing
        kwargs = {"connect_args": {"timeout": 60}}
    elif url.startswith("postgresql"):  # the scheduler asks under the queue's lock: never wait minutes for a host
        kwargs = {"connect_args": {"connect_timeout": 10}}
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs=kwargs,
        heartbeat_interval=int(max(1, HEARTBEAT_S)),
        grace_period=int(2 * max(1, HEARTBEAT_S)),
    )


def _sampler(spec, seed: int):
    optuna = _optuna()
    if spec.method == "grid":
        return optuna.samplers.GridSampler({p.name: list(p.grid_points()) for p in spec.parameters}, seed=seed)
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: trials running in parallel are not all sent to the same spot
    return optuna.samplers.TPESampler(seed=seed, constant_liar=spec.parallel > 1)


def trial_seed(seed: int, asked: int) -> int:
    """The sampler's seed for a study's ``asked``-th trial (0-based), from the experiment's ``seed``.

    Each ask opens the study afresh (a new scheduler, another machine), and Optuna's samplers draw
    from a generator seeded when they are built: one fixed seed would give every random trial, and
    TPE's random start-up trials, the same parameters. Seeding by the trial's place keeps a sweep
    reproducible and its draws distinct. (Not for a grid: its seed shuffles the grid's points, and
    the grid sampler already skips points that were asked for.)
    """
    return (seed * 1_000_003 + asked) % 2**32


def _pruner(spec, epochs: int):
    optuna = _optuna()
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=0)
    if spec.pruner == "hyperband":  # resources are epochs: the trials report once per epoch
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, epochs))
    return optuna.pruners.NopPruner()


def suggest(trial, spec) -> dict[str, Any]:
    """The trial's value of each swept key (a grid's points are its categories)."""
    out: dict[str, Any] = {}
    for p in spec.parameters:
        if spec.method == "grid" or not p.is_range:
            out[p.name] = trial.suggest_categorical(p.name, list(p.grid_points()))
        elif p.integer:
            out[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            out[p.name] = trial.suggest_float(p.name, float(p.low), float(p.high), step=p.step, log=p.log)
    return out


class SweepStudy:
    """One sweep's Optuna study, opened (created if new) from its manifest experiment."""

    def __init__(self, exp, runs_dir: Path | str, study_name: str):
        optuna = _optuna()
        self.exp, self.spec, self.name = exp, exp.sweep, study_name
        self.url = storage_url(self.spec, runs_dir, exp.name)
        error: Exception | None = None
        for attempt in range(3):
            try:
                self.study = optuna.create_study(
                    study_name=study_name,
                    storage=_storage(self.url),
                    sampler=_sampler(self.spec, exp.seed),
                    pruner=_pruner(self.spec, exp.epochs),
                    direction=self.spec.direction,
                    load_if_exists=True,
                )
                return
            except Exception as exc:  # noqa: BLE001 - a database that cannot be reached: one line, not a traceback
                # Processes (machines) that open a new database at the same moment race to create Optuna's
                # tables or the study: the loser's next try finds them made.
                error = exc
                time.sleep(0.2 + 0.4 * attempt)
        text = str(error).splitlines()[0][:200] if str(error) else ""
        raise UserError(
            f"sweep {exp.name}: cannot open its study in {shown_url(self.url)}: {type(error).__name__}: {text}",
            "check the sweep's storage URL and that the database server runs",
        )

    def reconcile(self, store) -> list[int]:
        """End the running trials whose job is gone, as their run directories say; returns their numbers.

        Stale heartbeats fail a trial (Optuna's rule); a trial whose run has ended is told what its run
        says (finished: complete with its objective; pruned: pruned; failed, cancelled, interrupted, which
        includes a job that was killed: failed), so a tell the job could not send is never lost.
        """
        optuna = _optuna()
        from engine.status import RUN_FINAL
        from engine.store.runs import Run
        from engine.store.trials import objective_of, trial_record

        optuna.storages.fail_stale_trials(self.study)
        ended = []
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            ref = t.user_attrs.get("run")
            if not isinstance(ref, str):
                continue
            run = Run(Path(store.root) / ref)
            status = run.status().get("status")
            if status not in RUN_FINAL:
                continue
            record = trial_record(run) or {}
            value = objective_of(run, record)[0] if status == "finished" and record else None
            how = "complete" if value is not None else ("pruned" if status == "pruned" else "fail")
            if self.tell(t.number, how, value):
                ended.append(t.number)
        return ended

    def ask(self, job_key: str) -> tuple[int, dict[str, Any]] | None:
        """A trial for queue job ``job_key``: (number, parameters); None once the sweep has all its trials."""
        optuna = _optuna()
        trials = self.study.get_trials(deepcopy=False)
        for t in trials:  # asked for this job before, never handed to a run (the scheduler died in between)
            if (
                t.state == optuna.trial.TrialState.RUNNING
                and t.user_attrs.get("job") == job_key
                and not t.user_attrs.get("run")
            ):
                return t.number, dict(t.params)
        if len(trials) >= self.spec.trials:
            return None
        if self.spec.method != "grid":  # a grid's seed fixes the order of its points: it must not change
            self.study.sampler = _sampler(self.spec, trial_seed(self.exp.seed, len(trials)))
        trial = self.study.ask()
        if trial.number >= self.spec.trials:  # another machine asked at the same moment: over the budget
            trial.set_user_attr("over_budget", True)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return None
        params = suggest(trial, self.spec)
        trial.set_user_attr("job", job_key)
        return trial.number, params

    def set_run(self, number: int, ref: str) -> None:
        """Record which run directory holds trial ``number`` (``experiment/run id``)."""
        self.study._storage.set_trial_user_attr(self._trial_id(number), "run", ref)

    def _trial_id(self, number: int) -> int:
        return self.study._storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)

    def trial(self, number: int):
        """The running trial ``number`` as an ``optuna.Trial`` (to report to and ask the pruner)."""
        return _optuna().trial.Trial(self.study, self._trial_id(number))

    def state(self, number: int) -> str:
        """Trial ``number``'s state in the study, in lower case: running, complete, pruned, fail, waiting."""
        return str(self.study._storage.get_trial(self._trial_id(number)).state.name).lower()

    def heartbeat(self, number: int) -> None:
        self.study._storage.record_heartbeat(self._trial_id(number))

    def tell(self, number: int, how: str, value: float | None = None) -> bool:
        """End trial ``number``: ``complete`` (with ``value``), ``pruned`` or ``fail``; False if it had ended."""
        optuna = _optuna()
        state = {
            "complete": optuna.trial.TrialState.COMPLETE,
            "pruned": optuna.trial.TrialState.PRUNED,
            "fail": optuna.trial.TrialState.FAIL,
        }[how]
        try:
            frozen = self.study._storage.get_trial(self._trial_id(number))
            if frozen.state.is_finished():
                return False
            if state == optuna.trial.TrialState.COMPLETE:
                self.study.tell(number, value)
            else:
                self.study.tell(number, state=state)
        except (ValueError, RuntimeError):  # ended meanwhile (another process told it)
            return False
        return True
