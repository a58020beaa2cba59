"""A sweep's Optuna study: trials asked once each and never past the budget, ended as their runs say,
and pruned through the real job runner and training loop (a toy task: fractions of a second per trial)."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
from support.manifests import PRETRAIN, experiment, manifest_text
from support.toyloop import ToyTask

from engine.job import runner as job_runner
from engine.job.runner import JobOptions, run_experiment, trial_experiment
from engine.manifest import SweepParam, SweepSpec, parse_text
from engine.store.runs import RunStore
from engine.store.trials import best_trial, trial_runs
from engine.sweep.study import SweepStudy
from engine.sweep.summary import sweep_summary

GRID = """
[[experiment]]
name = "cls"
task = "classify"
model = "bert-micro"
dataset = "embedded:sst2"
[experiment.sweep]
method = "grid"
[experiment.sweep.parameters]
learning_rate = [1e-4, 1e-3, 1e-2]
"""


def _record(exp, study: str, number: int, params: dict) -> dict:
    return {
        "name": exp.name,
        "study": study,
        "trial": number,
        "parameters": params,
        "objective": exp.sweep.objective,
        "direction": exp.sweep.direction,
    }


def test_grid_trials_are_asked_once_each_and_never_past_the_budget(tmp_path):
    exp = parse_text(GRID).get("cls")
    study = SweepStudy(exp, tmp_path, "cls-1")
    asked = [study.ask(f"job-{i}") for i in range(3)]
    assert [a[0] for a in asked if a] == [0, 1, 2]
    assert sorted(a[1]["learning_rate"] for a in asked if a) == [1e-4, 1e-3, 1e-2]  # every grid point once
    assert study.ask("job-3") is None  # the sweep has all its trials
    # a job whose trial was asked for but never got a run (the scheduler died in between) gets the same trial
    assert study.ask("job-1") == asked[1]
    assert (tmp_path / "cls" / "sweep.db").is_file()  # SQLite in the sweep's folder of the runs directory


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_each_ask_opens_the_study_afresh_and_still_draws_new_parameters(tmp_path, method):
    """The scheduler opens the study for every trial it starts (a new sampler each time): the draws must
    differ from trial to trial, and the same sweep asked again must draw the same values."""
    text = GRID.replace('method = "grid"', f'method = "{method}"\ntrials = 5').replace(
        "learning_rate = [1e-4, 1e-3, 1e-2]", "learning_rate = { low = 1e-5, high = 1e-1, log = true }"
    )
    exp = parse_text(text).get("cls")

    def sweep(folder):
        drawn = []
        for i in range(5):
            study = SweepStudy(exp, folder, "cls-1")  # as _start_trial: a fresh study object per trial
            number, params = study.ask(f"job-{i}")
            study.tell(number, "complete", float(i))
            drawn.append(params["learning_rate"])
        return drawn

    first = sweep(tmp_path / "a")
    assert len(set(first)) == 5, first
    assert sweep(tmp_path / "b") == first  # seeded: reproducible


def test_ended_runs_end_their_trials_as_the_runs_say(tmp_path):
    exp = parse_text(GRID).get("cls")
    study = SweepStudy(exp, tmp_path, "cls-1")
    store = RunStore(tmp_path)
    statuses = {0: "finished", 1: "interrupted", 2: "running"}
    for _ in range(3):
        number, params = study.ask(f"job-{_}")
        run = store.create("cls", exp.to_dict() | {"sweep": _record(exp, "cls-1", number, params)})
        (run.path / "status.json").write_text(f'{{"status": "{statuses[number]}", "reason": ""}}')
        if number == 0:
            (run.path / "results.json").write_text('{"final": {"accuracy": 0.75}}')
        study.set_run(number, f"cls/{run.run_id}")
    assert sorted(study.reconcile(store)) == [0, 1]
    states = {t.number: t.state for t in study.study.get_trials()}
    assert states[0] == optuna.trial.TrialState.COMPLETE and study.study.trials[0].value == 0.75
    assert states[1] == optuna.trial.TrialState.FAIL  # killed: failed, and the sweep goes on
    # a "running" run whose owner is gone reads as interrupted: failed too, never left running forever
    assert states[2] in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL)
    assert best_trial(store, "cls") == trial_runs(store, "cls")[0][0]
    # the runs list compares the trials by their parameters, not by their sweep records
    from engine.store.listing import differing_keys, run_row

    assert "sweep" not in differing_keys([run_row(r) for r, _ in trial_runs(store, "cls")])


@pytest.fixture
def toy_sweep(tmp_path, monkeypatch):
    """A sweep of the toy task over a learning-rate range whose low end learns nothing; TPE, median pruner."""
    import torch

    from engine.train.loop import train

    text = manifest_text(tmp_path / "runs", experiment(PRETRAIN))
    manifest = parse_text(text, tmp_path / "experiments.toml")
    spec = SweepSpec(
        method="tpe",
        objective="eval_mse",
        direction="minimize",
        trials=6,
        pruner="median",
        parameters=(SweepParam("learning_rate", low=1e-7, high=0.1, log=True),),
    )
    base = dict(learning_rate=0.05, warmup=0, weight_decay=0.0, logging_steps=4, save_minutes=0, epochs=3, seed=3)
    exp = dataclasses.replace(manifest.get("pre"), sweep=spec, **base)
    manifest = dataclasses.replace(manifest, experiments=(exp,))
    # the job runner as it is, around the toy task instead of a real one (no data, no preflight)
    monkeypatch.setattr(
        job_runner, "task_function", lambda task: lambda ctx: train(ctx, ToyTask().spec(), torch.device("cpu"))
    )
    monkeypatch.setattr(job_runner, "run_preflight", lambda ctx: {"parameters": 5, "checkpoint_bytes": 0})
    monkeypatch.setattr(job_runner, "_record_environment", lambda ctx: None)
    return manifest, exp


def test_tpe_with_the_median_pruner_prunes_the_useless_learning_rates(toy_sweep):
    manifest, exp = toy_sweep
    store = RunStore(manifest.runs_dir)
    study = SweepStudy(exp, manifest.runs_dir, "pre-1")
    while (asked := study.ask(f"job-{len(study.study.trials)}")) is not None:  # as the scheduler asks
        number, params = asked
        run = store.create(exp.name, exp.to_dict() | {"sweep": _record(exp, "pre-1", number, params)})
        trial_exp = trial_experiment(exp, run)
        assert trial_exp.learning_rate == params["learning_rate"]
        study.set_run(number, f"{exp.name}/{run.run_id}")
        run_experiment(manifest, exp.name, store=store, options=JobOptions(run=run))
    runs = {rec["trial"]: run for run, rec in trial_runs(store, exp.name)}
    assert sorted(runs) == list(range(6))  # six trials, each once
    statuses = {n: r.status()["status"] for n, r in runs.items()}
    pruned = [n for n, s in statuses.items() if s == "pruned"]
    assert pruned, statuses
    assert set(statuses.values()) <= {"finished", "pruned"}
    states = {t.number: t.state.name for t in study.study.get_trials()}
    assert all(states[n] == ("PRUNED" if s == "pruned" else "COMPLETE") for n, s in statuses.items()), states
    p = runs[pruned[0]]
    assert "pruned by the median pruner after epoch" in p.status()["reason"]
    history = p.results()["history"]  # its results so far are kept
    assert history and len(history) < exp.epochs and p.results()["final"]["eval_mse"] == history[-1]["eval_mse"]
    summary = sweep_summary(manifest.runs_dir, exp.name, exp=exp)
    assert summary is not None and summary.best is not None and summary.best.status == "finished"
    values = [t.objective for t in summary.trials if t.status == "finished"]
    assert summary.best.objective == min(values)  # minimize: the lowest is best, and listed first
    assert summary.trials[0].best
    # exports write the trials table; the study report gets a sweep section
    from engine.study.export import export_runs
    from engine.study.report import build_report

    written = export_runs(store.runs(exp.name), manifest.runs_dir.parent / "exports", formats=("csv",))
    (table,) = [p for p in written if p.name.startswith("sweep_pre-1")]
    assert len(table.read_text().splitlines()) == 1 + 6 and "learning_rate" in table.read_text()
    report = build_report(store, [exp.name], manifest=manifest)
    (section,) = [s for s in report.sections if s.title == f"Sweep {exp.name}"]
    assert "6/6 trials" in section.text[0] and "learning_rate (6 values tried" in section.text[0]
    assert f"Best trial: {summary.best.trial}" in section.text[1]
    assert [t.name for t in section.tables] == ["sweep_importances_pre-1", "sweep_pre-1"] or summary.note


def test_a_study_that_cannot_be_reached_is_one_line_without_the_password(tmp_path):
    from engine.errors import UserError

    text = GRID.replace('method = "grid"', 'method = "grid"\nstorage = "postgresql+psycopg://lm:secret@127.0.0.1:1/x"')
    exp = parse_text(text).get("cls")
    with pytest.raises(UserError) as err:
        SweepStudy(exp, tmp_path, "cls")
    message = str(err.value)
    assert "sweep cls: cannot open its study in postgresql+psycopg://lm:***@127.0.0.1:1/x" in message
    assert "secret" not in message and "\n" not in message and "database server runs" in message
