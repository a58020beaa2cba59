"""``[experiment.sweep]``: parsed into a typed spec, every bad table one clear line, the schema agrees."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.manifest import ManifestError, json_schema, parse_data, parse_text, tomllib

REPO = Path(__file__).resolve().parents[2]

BASE = """
[[experiment]]
name = "sst2-lr"
task = "classify"
model = "bert-micro"
dataset = "embedded:sst2"
"""

GOOD = (
    BASE
    + """
[experiment.sweep]
method = "tpe"
objective = "accuracy"
trials = 16
parallel = 2
pruner = "median"
[experiment.sweep.parameters]
learning_rate = { low = 1e-5, high = 1e-3, log = true }
batch_size = [16, 32]
warmup = { low = 0.0, high = 0.2 }
"""
)


def _problems(text: str) -> list[str]:
    with pytest.raises(ManifestError) as err:
        parse_text(text)
    return err.value.problems


def test_the_issue_example_parses_into_a_typed_spec():
    spec = parse_text(GOOD).get("sst2-lr").sweep
    assert spec is not None
    assert (spec.method, spec.objective, spec.direction, spec.trials, spec.parallel, spec.pruner) == (
        "tpe",
        "accuracy",
        "maximize",
        16,
        2,
        "median",
    )
    lr, bs, warm = spec.parameters
    assert (lr.low, lr.high, lr.log, lr.is_range) == (1e-5, 1e-3, True, True)
    assert bs.values == (16, 32) and not bs.is_range
    assert (warm.low, warm.high, warm.log) == (0.0, 0.2, False)
    assert spec.space_size() is None  # continuous ranges
    assert "sweep" not in parse_text(GOOD).get("sst2-lr").to_dict()  # a run's config records its own trial


def test_grid_defaults_to_every_combination_and_direction_follows_the_metric():
    text = BASE.replace("classify", "pretrain").replace("sst2", "wikitext") + (
        '[experiment.sweep]\nmethod = "grid"\nobjective = "mlm_perplexity"\n'
        "[experiment.sweep.parameters]\nlearning_rate = [1e-4, 3e-4, 1e-3]\n"
        "batch_size = { low = 8, high = 32, step = 8 }\n"
    )
    spec = parse_text(text).get("wikitext-lr").sweep
    assert spec.trials == 12 and spec.space_size() == 12
    assert spec.parameters[1].grid_points() == (8, 16, 24, 32)
    assert spec.direction == "minimize"  # perplexity: lower is better


@pytest.mark.parametrize(
    "sweep,words",
    [
        ('metod = "grid"', ".sweep.metod: unknown key (did you mean 'method'?)"),
        ('method = "bayes"', '.sweep.method: "bayes" is not allowed'),
        ('objective = "acuracy"', "(did you mean 'accuracy'?)"),
        ("trials = 0", ".sweep.trials: expected a value >= 1"),
        ('trials = "many"', ".sweep.trials: expected an integer"),
        ('storage = "db.sqlite"', "not a database URL"),
        ("[experiment.sweep.parameters]\nlerning_rate = [1e-5, 1e-4]", "(did you mean 'learning_rate'?)"),
        ("[experiment.sweep.parameters]\nlearning_rate = [1e-5]", "a list of 1 value is no search"),
        ("[experiment.sweep.parameters]\nlearning_rate = { low = 1e-3, high = 1e-5 }", "must be below high"),
        ("[experiment.sweep.parameters]\nlearning_rate = { low = 1e-3, high = 1e-3 }", "an empty range"),
        ("[experiment.sweep.parameters]\nlearning_rate = { low = 0.0, high = 1e-3, log = true }", "log range"),
        ("[experiment.sweep.parameters]\nlearning_rate = { low = 1e-5 }", "a range needs high"),
        ('[experiment.sweep.parameters]\nlearning_rate = "fast"', "expected a list of values"),
        ('[experiment.sweep.parameters]\nbatch_size = ["a", "b"]', ".batch_size: expected an integer"),
        ("[experiment.sweep.parameters]\nname = ['a', 'b']", ".name: cannot be swept"),
        ("[experiment.sweep.parameters]\nmlm_probability = [0.1, 0.2]", "not used by task 'classify'"),
        ('method = "grid"\n[experiment.sweep.parameters]\nwarmup = { low = 0.0, high = 0.2 }', "a grid needs"),
        ("method = 'grid'\ntrials = 5\n[experiment.sweep.parameters]\nbatch_size = [8, 16]", "only 2 combinations"),
    ],
)
def test_a_bad_sweep_table_is_one_line_naming_the_key(sweep, words):
    if "[experiment.sweep.parameters]" not in sweep:
        sweep += "\n[experiment.sweep.parameters]\nlearning_rate = [1e-5, 1e-4]"
    problems = _problems(BASE + "[experiment.sweep]\n" + sweep + "\n")
    assert len(problems) == 1 and words in problems[0], problems
    assert 'experiment 1 "sst2-lr".sweep' in problems[0]


def test_seeds_and_a_sweep_are_refused_with_what_to_do():
    problems = _problems(BASE + "seeds = [1, 2]\n[experiment.sweep.parameters]\nlearning_rate = [1e-5, 1e-4]\n")
    assert len(problems) == 1 and "does not take seeds" in problems[0] and "sweep `seed`" in problems[0]


def test_a_sweep_on_a_step_without_a_model_is_refused():
    text = '[[experiment]]\nname = "s"\ntask = "study"\nsteps = ["x"]\n[experiment.sweep.parameters]\nepochs = [1, 2]\n'
    text += '[[experiment]]\nname = "x"\ntask = "inspect"\nmodel = "bert-micro"\n'
    assert any("sweep: not used by task 'study'" in p for p in _problems(text))


def test_schema_accepts_the_example_and_rejects_what_it_can_see():
    validator = jsonschema.Draft7Validator(json_schema())
    assert not list(validator.iter_errors(tomllib.loads(GOOD)))
    bad = tomllib.loads(GOOD.replace('method = "tpe"', 'method = "bayes"'))
    assert list(validator.iter_errors(bad))
    bad = tomllib.loads(GOOD.replace("batch_size = [16, 32]", "batch_size = [16]"))
    assert list(validator.iter_errors(bad))


def test_check_prints_the_sweep_plan(tmp_path):
    (tmp_path / "experiments.toml").write_text(GOOD)
    proc = subprocess.run(
        [sys.executable, "-m", "tui.entry", "check", "--manifest", str(tmp_path / "experiments.toml")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sweep sst2-lr: tpe, 16 trials (2 at once), space continuous; objective accuracy (maximize)" in proc.stdout
    assert "learning_rate in 1e-05..0.001, log" in proc.stdout


# Anything TOML can hold, in the places of a sweep table: one clear line per problem, never a traceback.
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
_value = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
_names = st.sampled_from(["learning_rate", "batch_size", "warmup", "epochs", "name", "bogus", "fp16", "seed", "low"])
_range = st.fixed_dictionaries(
    {}, optional={"low": _value, "high": _value, "log": _value, "step": _value, "hi": _value}
)
_sweep = st.fixed_dictionaries(
    {},
    optional={
        "method": st.one_of(st.sampled_from(["grid", "random", "tpe"]), _value),
        "objective": st.one_of(st.sampled_from(["accuracy", "f1", "mlm_perplexity"]), _value),
        "direction": _value,
        "trials": _value,
        "parallel": _value,
        "pruner": _value,
        "storage": _value,
        "parameters": st.one_of(_value, st.dictionaries(_names, st.one_of(_value, _range), max_size=3)),
        "extra": _value,
    },
)


@given(sweep=st.one_of(_value, _sweep))
def test_fuzzed_sweep_tables_give_clear_lines_never_a_traceback(sweep):
    exp = {"name": "sst2-lr", "task": "classify", "model": "bert-micro", "dataset": "embedded:sst2", "sweep": sweep}
    try:
        parse_data({"experiment": [exp]})
    except ManifestError as err:
        assert err.problems
        for line in err.problems:
            assert "\n" not in line and line.startswith('experiment 1 "sst2-lr".sweep'), line
