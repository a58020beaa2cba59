"""The best-model, early-stopping, ``eval_steps`` and ``auto_find_batch_size`` keys: parsed, checked, in the schema."""

from __future__ import annotations

import pytest

from engine.manifest import EXPERIMENT_KEYS, ManifestError, json_schema, parse_text, reference_markdown

BASE = """
[[experiment]]
name = "cls"
task = "classify"
model = "bert-micro"
dataset = "embedded:sst2"
"""
KEYS = (
    "eval_steps",
    "metric_for_best_model",
    "greater_is_better",
    "load_best_model_at_end",
    "early_stopping_patience",
    "early_stopping_threshold",
    "auto_find_batch_size",
)


def _problems(lines: str, base: str = BASE) -> list[str]:
    with pytest.raises(ManifestError) as err:
        parse_text(base + lines)
    return err.value.problems


def test_the_keys_parse_with_their_hf_defaults():
    exp = parse_text(BASE).experiments[0]
    assert [getattr(exp, k) for k in KEYS] == [0, "", None, False, 0, 0.0, False]
    exp = parse_text(
        BASE + 'metric_for_best_model = "eval_macro_f1"\ngreater_is_better = true\nload_best_model_at_end = true\n'
        "early_stopping_patience = 2\nearly_stopping_threshold = 0.001\neval_steps = 50\nauto_find_batch_size = true\n"
    ).experiments[0]
    assert [getattr(exp, k) for k in KEYS] == [50, "eval_macro_f1", True, True, 2, 0.001, True]


def test_a_metric_the_task_does_not_report_is_named_with_a_suggestion():
    (problem,) = _problems('metric_for_best_model = "acuracy"\n')
    assert '.metric_for_best_model: "acuracy" is not a metric a classify evaluation reports' in problem
    assert "(did you mean 'accuracy'?)" in problem and "macro_f1" in problem
    pre = BASE.replace('"classify"', '"pretrain"').replace("sst2", "wikitext")
    (problem,) = _problems('metric_for_best_model = "accuracy"\n', pre)
    assert "did you mean 'nsp_accuracy'" in problem and "mlm_accuracy" in problem
    (problem,) = _problems('metric_for_best_model = "pseudo_perplexity"\n', pre)
    assert "pseudo_perplexity_samples" in problem


@pytest.mark.parametrize(
    "lines,key,words",
    [
        ("early_stopping_threshold = 0.01\n", "early_stopping_threshold", "set early_stopping_patience"),
        ("early_stopping_patience = 2\neval_each_epoch = false\n", "early_stopping_patience", "eval_steps"),
        ('auto_find_batch_size = true\nlauncher = "torchrun"\n', "auto_find_batch_size", 'launcher = "none"'),
        ("eval_steps = -1\n", "eval_steps", ">= 0"),
        ("early_stopping_patience = -2\n", "early_stopping_patience", ">= 0"),
        ('greater_is_better = "yes"\n', "greater_is_better", "true or false"),
        ("metric_for_best_modle = 1\n", "metric_for_best_modle", "did you mean 'metric_for_best_model'"),
    ],
)
def test_bad_combinations_name_the_key_and_the_fix(lines, key, words):
    problems = _problems(lines)
    assert any(f".{key}:" in p and words in p for p in problems), problems


def test_schema_and_reference_carry_the_keys():
    schema = json_schema()["properties"]["experiment"]["items"]["properties"]
    assert schema["greater_is_better"]["type"] == "boolean" and "default" not in schema["greater_is_better"]
    assert schema["eval_steps"]["minimum"] == 0 and schema["load_best_model_at_end"]["default"] is False
    table = reference_markdown()
    assert all(f"| `{k}` |" in table for k in KEYS)
    assert all(EXPERIMENT_KEYS[k].tasks == ("pretrain", "classify", "qa") for k in KEYS)
