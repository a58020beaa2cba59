"""Early stopping and ``eval_steps`` in whole jobs: a classification that stops early with its best model,
and the micro pretraining evaluated inside its epochs, each stopped hard mid-run and resumed exactly.

The hard stop is an exception no job code catches (``Killed``): like a SIGKILL, nothing after it runs
and the run directory keeps what was written; the resume then takes the run over from its checkpoint.
"""

import pytest
from support.manifests import CLASSIFY, experiment, manifest_text, write_manifest
from support.micro import micro_text_pipeline

from engine.job.runner import run_experiment
from engine.manifest import parse_text
from engine.store.runs import RunStore, read_events


class Killed(BaseException):
    """A kill: nothing in the loop or the job catches it, nothing after it runs."""


def _rows(run, kind):
    rows, _ = read_events(run.events_path)
    return [r for r in rows if r.get("event") == kind]


def _kill_at_call(monkeypatch, module, name, n):
    """Replace ``module.name`` by a function that raises :class:`Killed` on its ``n``-th call."""
    real, calls = getattr(module, name), {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise Killed()
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


# A classifier from scratch at a learning rate far too high for its later epochs: its accuracy
# peaks early. 6 optimizer steps per epoch, 10 epochs at most.
EARLY = dict(
    model="bert-micro",
    tokenizer="train",
    vocab_size=1000,
    eval_split="validation",
    epochs=10,
    learning_rate=3e-3,
    warmup=0,
    seed=3,
    early_stopping_patience=2,
    load_best_model_at_end=True,
    save_total_limit=1,
)


def _classify(tmp_path):
    path = write_manifest(tmp_path, manifest_text(tmp_path / "runs", experiment(CLASSIFY, **EARLY)))
    return parse_text(path.read_text(), path)


@pytest.fixture(scope="module")
def stopped_early(tmp_path_factory):
    m = _classify(tmp_path_factory.mktemp("cls"))
    return m, run_experiment(m, "cls")


def test_a_classification_stops_early_with_the_best_model(stopped_early, capsys):
    m, run = stopped_early
    st = run.status()
    results = run.results()
    history = [h for h in results["history"] if h["epoch"] != 0]
    assert st["status"] == "finished" and st["reason"].startswith("early stopping: accuracy did not improve")
    assert results["stopped_early"]["reason"] == st["reason"]
    assert len(history) < EARLY["epochs"], "stopped before its last epoch"
    best = results["best"]
    assert best["metric"] == "accuracy" and best["greater_is_better"] is True and best["loaded"] is True
    assert best["value"] == max(h["accuracy"] for h in history)
    first_best = next(h for h in history if h["accuracy"] == best["value"])
    assert (best["epoch"], best["step"]) == (first_best["epoch"], first_best["step"])
    assert results["final"]["accuracy"] == best["value"], "the final model's metrics are the best evaluation's"
    assert results["last_eval"]["epoch"] == history[-1]["epoch"] == results["stopped_early"]["epoch"]
    assert _rows(run, "TrainingStopped")[0]["reason"] == st["reason"]
    # the predictions are the final (best) model's: their accuracy is the final accuracy
    import json

    preds = [json.loads(line) for line in (run.path / "predictions.jsonl").read_text().splitlines()]
    assert sum(p["label"] == p["prediction"] for p in preds) / len(preds) == results["final"]["accuracy"]
    kept = sorted(p.name for p in run.checkpoints.iterdir())
    assert f"step-{best['step']:08d}" in kept and len(kept) <= 2, "the newest and the best"
    from engine.cli.main import main

    assert main(["--manifest", str(m.path), "runs"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if run.run_id in x)
    assert "finished" in line and "early stopping" in line, "the reason is shown in the runs listing"


def test_a_classification_killed_after_its_best_evaluation_resumes_to_the_same_result(
    stopped_early, tmp_path, monkeypatch
):
    _, reference = stopped_early
    best_eval = [r["epoch"] for r in _rows(reference, "EvalFinished")].index(reference.results()["best"]["epoch"])
    import engine.tasks.classify as classify

    m = _classify(tmp_path)
    _kill_at_call(monkeypatch, classify, "classification_metrics", best_eval + 2)  # the evaluation after the best
    with pytest.raises(Killed):
        run_experiment(m, "cls")
    monkeypatch.undo()
    run = run_experiment(m, "cls", resume=RunStore(m.runs_dir).latest("cls"))
    got, want = run.results(), reference.results()
    for key in ("final", "best", "last_eval", "stopped_early", "global_step"):
        assert got[key] == want[key], key
    assert [h["accuracy"] for h in got["history"]] == [h["accuracy"] for h in want["history"]]
    assert run.status() | {"pid": 0, "host": ""} == reference.status() | {"pid": 0, "host": ""}


# The micro pretraining of tests/job/test_preempt.py, one epoch of 8 optimizer steps: evaluated every
# 3 steps (3 and 6 inside the epoch, 8 at its end), a checkpoint every 4.
PRE = "epochs = 1\nlogging_steps = 3\nseed = 5\neval_steps = 3\nsave_steps = 4\nsave_total_limit = 0"


def _numbers(run):
    steps = [(r["step"], r["epoch"], r["loss"], r["learning_rate"], r["grad_norm"]) for r in _rows(run, "StepLogged")]
    evals = [(r["epoch"], r["step"], r["metrics"]) for r in _rows(run, "EvalFinished")]
    return steps, evals


def test_eval_steps_on_the_micro_pretraining_resumes_exactly_after_a_kill_inside_an_epoch(tmp_path, monkeypatch):
    import engine.tasks.pretrain as pretrain

    (tmp_path / "ref").mkdir()
    ref_path = write_manifest(tmp_path / "ref", micro_text_pipeline(tmp_path / "ref" / "runs", PRE))
    reference = run_experiment(parse_text(ref_path.read_text(), ref_path), "pre")
    steps, evals = _numbers(reference)
    assert [(e, s) for e, s, _ in evals] == [(0, 0), (0.375, 3), (0.75, 6), (1, 8)]
    assert reference.read_table("epochs").column("epoch") == [e for e, _, _ in evals]
    path = write_manifest(tmp_path, micro_text_pipeline(tmp_path / "runs", PRE))
    m = parse_text(path.read_text(), path)
    _kill_at_call(monkeypatch, pretrain, "mlm_nsp_forward", 7)  # step 7: after the evaluation at 6, checkpoint 4
    with pytest.raises(Killed):
        run_experiment(m, "pre")
    monkeypatch.undo()
    run = RunStore(m.runs_dir).latest("pre")
    assert run.last_checkpoint().name == "step-00000004"
    assert [r["step"] for r in _rows(run, "EvalFinished")] == [0, 3, 6], "the kill came after an evaluation"
    run = run_experiment(m, "pre", resume=run)
    assert run.status()["status"] == "finished"
    assert _numbers(run) == (steps, evals), "every step and evaluation once, with an uninterrupted run's numbers"
    assert run.results()["final"] == reference.results()["final"]
