"""Sweeps through the real queue: trials as job processes, a killed scheduler and a killed trial,
``lmconsole sweep --json``, and a grid of three learning rates on the tiny classifier."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from support import PYTHONPATH
from support.fakes import write_manifest
from support.webhook import webhook
from support.manifests import CLASSIFY, PRETRAIN, experiment, manifest_text

from engine.manifest import load
from engine.store.runs import RunStore
from engine.store.trials import dependency_run, trial_runs

REPO = Path(__file__).resolve().parents[2]

SWEEP = """
[experiment.sweep]
method = "grid"
objective = "accuracy"
parallel = 1
[experiment.sweep.parameters]
learning_rate = [1e-4, 1e-3, 1e-2]
"""


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tui.entry", "--manifest", str(folder / "experiments.toml"), *args],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=120,
    )


def _wait(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.3)
    return bool(cond())


def _statuses(folder: Path) -> list[str]:
    """The queue's statuses as `lmconsole queue` reads them (in this process: a CLI process per look would
    compete with the jobs); like it, it starts a scheduler when jobs wait and none runs."""
    from engine.queue.jobqueue import JobQueue

    return [job.status for job in JobQueue(load(folder / "experiments.toml")).refresh()]


def _pid_of(path: Path) -> int:
    return int(path.read_text().strip() or 0)


def test_a_sweep_survives_a_killed_scheduler_and_a_killed_trial_each_trial_once(tmp_path, monkeypatch):
    """Fake jobs (real job processes, real run directories, a real study): the queue's part of a sweep."""
    gate = tmp_path / "go"  # the trials hold until the kills are done
    monkeypatch.setenv("LMCONSOLE_JOB_RUNNER", "support.fakes:process_runner")
    monkeypatch.setenv("PYTHONPATH", PYTHONPATH + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("LMCONSOLE_VISIBLE_GPUS", "")
    monkeypatch.setenv("LMCONSOLE_FAKE", json.dumps({"default": {"steps": 4, "gate_file": str(gate)}}))
    text = manifest_text(
        "runs",
        experiment(name="sw", task="classify", model="bert-micro", dataset="embedded:sst2")
        + SWEEP.replace("parallel = 1", "parallel = 2"),
        max_parallel_jobs=2,
    )
    hook = webhook()
    url, received = hook.__enter__()
    write_manifest(tmp_path, text.replace("[settings]", f'[settings]\nnotify = ["{url}"]'))
    proc = _cli(tmp_path, "run", "sw")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("queued #") == 3 and "lmconsole sweep sw" in proc.stdout
    store = RunStore(tmp_path / "runs")
    # two trials run (their own run directories say so: past starting up), the third waits (parallel = 2)
    assert _wait(lambda: [r.raw_status().get("status") for r in store.runs("sw")] == ["running"] * 2, 60)
    assert _statuses(tmp_path) == ["running", "running", "queued"]
    queue_dir = tmp_path / "runs" / ".queue"
    trial0 = json.loads((queue_dir / "queue.json").read_text())["jobs"][0]
    os.kill(_pid_of(queue_dir / "scheduler.lock"), signal.SIGKILL)
    os.kill(trial0["pid"], signal.SIGKILL)
    assert _wait(lambda: _statuses(tmp_path)[0] == "interrupted", 20), _cli(tmp_path, "queue").stdout
    gate.write_text("go")
    # a client's look at the queue (`lmconsole queue`, as after a reboot) starts a scheduler again; the sweep
    # goes on without the killed trial
    assert _wait(lambda: _statuses(tmp_path) == ["interrupted", "finished", "finished"], 90), _statuses(tmp_path)
    trials = trial_runs(store, "sw")
    assert len(store.runs("sw")) == 3 and sorted(rec["trial"] for _, rec in trials) == [0, 1, 2]  # each once
    assert sorted(rec["parameters"]["learning_rate"] for _, rec in trials) == [1e-4, 1e-3, 1e-2]
    for run, rec in trials:  # the run's config is the trial's: its parameters applied
        assert run.config()["learning_rate"] == rec["parameters"]["learning_rate"]
    out = _cli(tmp_path, "sweep", "sw", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert [t["status"] for t in summary["trials"]] == ["finished", "finished", "interrupted"]
    assert summary["best"]["trial"] == summary["trials"][0]["trial"] and summary["trials"][0]["best"]
    assert summary["trials"][0]["objective"] == pytest.approx(0.7)  # the fake's last evaluation (epoch 2)
    assert summary["progress"].startswith("3/3 trials, best 0.7")
    # the killed trial is failed in the study (never left running), the others complete
    study = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{tmp_path}/runs/sw/sweep.db")
    states = {t.number: t.state.name for t in study.trials}
    killed = next(rec["trial"] for run, rec in trials if run.status()["status"] == "interrupted")
    assert states[killed] == "FAIL" and sorted(states.values()) == ["COMPLETE", "COMPLETE", "FAIL"]
    assert dependency_run(store, "sw").path.name == summary["best"]["run"].split("/")[1]  # model = "run:sw"
    table = _cli(tmp_path, "sweep", "sw").stdout
    assert "* = best finished trial" in table and "learning_rate" in table and "interrupted" in table
    # the last trial to end told settings.notify, once, with the best trial (the killed one told nothing)
    assert _wait(lambda: any("sweep done" in r["json"]["title"] for r in received), 30), received
    time.sleep(1)
    hook.__exit__(None, None, None)
    (done,) = [r["json"] for r in received if "sweep done" in r["json"]["title"]]
    assert done["message"].startswith("3/3 trials") and f"best: trial {summary['best']['trial']}" in done["message"]


TPE = """
[experiment.sweep]
method = "tpe"
objective = "mlm_perplexity"
trials = 6
parallel = 2
pruner = "median"
[experiment.sweep.parameters]
learning_rate = { low = 1e-6, high = 0.1, log = true }
"""


def test_a_tpe_sweep_prunes_and_survives_a_killed_scheduler_and_trial_each_trial_once(tmp_path, monkeypatch):
    """Real job processes, the real job runner and training loop around the toy task (a linear model whose
    evaluation is named mlm_perplexity), a real study: TPE with the median pruner over a learning-rate range
    whose low end learns nothing. The seed draws two useful rates for trials 1 and 2 and useless ones
    for trials 3-5 (TPE's start-up trials are random draws, seeded per trial), so once 1 and 2 are
    complete the pruner has something to prune whatever order the processes finish in."""
    gate = tmp_path / "go"  # the first two trials hold at their first batch until the kills are done
    monkeypatch.setenv("LMCONSOLE_JOB_RUNNER", "support.toyloop:process_runner")
    monkeypatch.setenv("LMCONSOLE_TOY_GATE", str(gate))
    monkeypatch.setenv("PYTHONPATH", PYTHONPATH + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("LMCONSOLE_VISIBLE_GPUS", "")
    keys = dict(learning_rate=0.05, warmup=0, weight_decay=0.0, logging_steps=4, save_minutes=0, epochs=3)
    text = manifest_text("runs", experiment(PRETRAIN, name="tp", seed=1496, **keys) + TPE, max_parallel_jobs=2)
    write_manifest(tmp_path, text)
    proc = _cli(tmp_path, "run", "tp")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("queued #") == 6
    store = RunStore(tmp_path / "runs")
    assert _wait(lambda: [r.raw_status().get("status") for r in store.runs("tp")] == ["running"] * 2, 60)
    queue_dir = tmp_path / "runs" / ".queue"
    first = json.loads((queue_dir / "queue.json").read_text())["jobs"][0]
    os.kill(_pid_of(queue_dir / "scheduler.lock"), signal.SIGKILL)
    os.kill(first["pid"], signal.SIGKILL)
    assert _wait(lambda: _statuses(tmp_path)[0] == "interrupted", 20), _cli(tmp_path, "queue").stdout
    gate.write_text("go")
    ended = {"finished", "pruned", "interrupted"}
    assert _wait(lambda: set(_statuses(tmp_path)) <= ended, 180), _statuses(tmp_path)

    trials = {rec["trial"]: (run, rec) for run, rec in trial_runs(store, "tp")}
    assert len(store.runs("tp")) == 6 and sorted(trials) == list(range(6))  # each trial once, none twice
    rates = [trials[n][1]["parameters"]["learning_rate"] for n in range(6)]
    assert min(rates[1:3]) >= 0.01 and max(rates[3:]) <= 1e-4, rates  # what the seed draws (see above)
    statuses = {n: run.status()["status"] for n, (run, _) in trials.items()}
    killed = [n for n, s in statuses.items() if s == "interrupted"]
    pruned = [n for n, s in statuses.items() if s == "pruned"]
    assert len(killed) == 1 and pruned and set(pruned) <= {3, 4, 5}, statuses
    run = trials[pruned[0]][0]
    assert "pruned by the median pruner after epoch" in run.status()["reason"]
    assert 0 < len(run.results()["history"]) < 3  # stopped at an epoch boundary, its results so far kept
    summary = json.loads(_cli(tmp_path, "sweep", "tp", "--json").stdout)
    study = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{tmp_path}/runs/tp/sweep.db")
    states = {t.number: t.state.name for t in study.trials}
    expected = {"finished": "COMPLETE", "pruned": "PRUNED", "interrupted": "FAIL"}
    assert states == {n: expected[s] for n, s in statuses.items()}  # nothing left running in the study
    assert summary["best"]["trial"] in (1, 2) and summary["trials"][0]["best"]


@pytest.mark.slow
def test_a_grid_of_three_learning_rates_on_the_tiny_classifier_finishes_three_trials(tmp_path):
    cls = experiment(
        CLASSIFY,
        model="bert-micro",
        tokenizer="train",
        vocab_size=2000,
        epochs=2,
        max_steps=2,
        max_train_samples=32,
        max_eval_samples=16,
        eval_split=None,
    )
    write_manifest(
        tmp_path,
        manifest_text("runs", cls + SWEEP.replace("parallel = 1", "parallel = 3"), max_parallel_jobs=3, gpus="none"),
    )
    manifest = load(tmp_path / "experiments.toml")
    assert manifest.get("cls").sweep.trials == 3
    proc = _cli(tmp_path, "run", "cls")
    assert proc.returncode == 0, proc.stderr
    assert _wait(lambda: _statuses(tmp_path) == ["finished"] * 3, 240), _statuses(tmp_path)
    out = _cli(tmp_path, "sweep", "cls", "--json")
    summary = json.loads(out.stdout)
    assert len(summary["trials"]) == 3 and all(t["objective"] is not None for t in summary["trials"])
    assert sorted(t["parameters"]["learning_rate"] for t in summary["trials"]) == [1e-4, 1e-3, 1e-2]
    assert sum(t["best"] for t in summary["trials"]) == 1
    objectives = [t["objective"] for t in summary["trials"]]
    assert objectives == sorted(objectives, reverse=True)  # accuracy: the highest first
