"""Values the manifest used to accept silently: each is now a problem naming the key and the range."""

from __future__ import annotations

import pytest

from engine.manifest import ManifestError, parse_text

BASE = """
[settings]
runs_dir = "runs"

[[experiment]]
name = "pretrain"
task = "pretrain"
model = "bert-micro"
dataset = "embedded:wikitext"
"""


@pytest.mark.parametrize(
    "line,key,words",
    [
        ("batch_size = 4611686018427387904", "batch_size", "<= 65536"),
        ("gradient_accumulation_steps = 1000000", "gradient_accumulation_steps", "<= 65536"),
        ('device = "cpu:7"', "device", "not a device"),
        ('device = "cuda\\u001b[2J"', "device", "control characters"),
        ("mlm_probability = 0", "mlm_probability", "above 0"),
        ('slurm_time = "1:00\\u0007"', "slurm_time", "control characters"),
    ],
)
def test_bad_experiment_values_name_the_key(line, key, words):
    with pytest.raises(ManifestError) as err:
        parse_text(BASE + line + "\n")
    assert any(f".{key}:" in p and words in p for p in err.value.problems), err.value.problems


@pytest.mark.parametrize(
    "value,words", [('""', "must not be empty"), ('"runs\\u001b]0;x\\u0007"', "control characters")]
)
def test_bad_runs_dir_is_a_problem(value, words):
    with pytest.raises(ManifestError) as err:
        parse_text(BASE.replace('runs_dir = "runs"', f"runs_dir = {value}"))
    assert any("settings.runs_dir:" in p and words in p for p in err.value.problems), err.value.problems


def test_good_values_still_pass():
    m = parse_text(BASE + 'device = "cuda:1"\nbatch_size = 65536\nmlm_probability = 1.0\ndescription = "a\\tb"\n')
    assert m.experiments[0].device == "cuda:1"
