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
        ("mlm_probability = 1.0", "mlm_probability", "below 1"),
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
    m = parse_text(BASE + 'device = "cuda:1"\nbatch_size = 65536\nmlm_probability = 0.99\ndescription = "a\\tb"\n')
    assert m.experiments[0].device == "cuda:1"


def test_several_gpus_without_a_launcher_are_refused_with_the_fix():
    """One process uses one GPU: ``gpus = 2`` without a launcher would reserve a GPU nothing uses."""
    with pytest.raises(ManifestError) as err:
        parse_text(BASE + "gpus = 2\n")
    (problem,) = [p for p in err.value.problems if ".gpus:" in p]
    assert 'launcher = "torchrun"' in problem and "nproc_per_node = 2" in problem and "gpus = 1" in problem
    inspect = BASE.replace('task = "pretrain"', 'task = "inspect"').replace('dataset = "embedded:wikitext"\n', "")
    with pytest.raises(ManifestError) as err:
        parse_text(inspect + "gpus = 3\n")
    (problem,) = [p for p in err.value.problems if ".gpus:" in p]
    assert "gpus = 1" in problem and "launcher" not in problem  # inspect cannot run under a launcher


def test_gpus_that_one_process_uses_still_pass():
    for extra in ("gpus = 1\n", "gpus = 0\n", "gpus = -1\n", 'launcher = "torchrun"\nnproc_per_node = 2\n'):
        parse_text(BASE + extra)
    launched = parse_text(BASE + 'launcher = "torchrun"\nnproc_per_node = 2\ngpus = 2\n').experiments[0]
    assert launched.gpus == 2 and launched.nproc_per_node == 2


def test_a_trained_vocabulary_for_a_model_with_weights_is_refused_at_check():
    """Known without loading anything: new token ids would not match the weights' embeddings."""
    hub = BASE.replace('"bert-micro"', '"google-bert/bert-base-uncased"')
    with pytest.raises(ManifestError) as err:
        parse_text(hub + 'tokenizer = "train"\n')
    (problem,) = [p for p in err.value.problems if ".tokenizer:" in p]
    assert 'tokenizer = "auto"' in problem and 'init = "scratch"' in problem
    # both trained anew, or a preset (a config only): fine
    assert parse_text(hub + 'tokenizer = "train"\ninit = "scratch"\n').experiments[0].tokenizer == "train"
    assert parse_text(BASE + 'tokenizer = "train"\n').experiments[0].tokenizer == "train"


@pytest.mark.parametrize(
    "gpus, device, words",
    [
        ("", "cuda", "'cuda' does not exist on this machine (no GPU)"),
        ("0,1", "cuda:2", "'cuda:2' does not exist on this machine (2 GPU(s), numbered from 0)"),
        ("0,1", "cuda:1", ""),
        ("", "auto", ""),
    ],
)
def test_check_names_a_device_this_machine_does_not_have(workdir, monkeypatch, capsys, gpus, device, words):
    from engine.cli.main import main

    monkeypatch.setenv("LMCONSOLE_VISIBLE_GPUS", gpus)
    (workdir / "experiments.toml").write_text(BASE + f'device = "{device}"\n')
    code = main(["check"])
    err = capsys.readouterr().err
    assert code == (2 if words else 0), err
    assert words in err and ("line 10:" in err if words else True)  # the device line, err
