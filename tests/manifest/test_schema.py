"""`lmconsole check --schema`: a JSON Schema from the validator's own key table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.manifest import EXPERIMENT_KEYS, SETTINGS_KEYS, ManifestError, json_schema, parse_text, tomllib

import jsonschema  # the test extra: a missing one fails, not skips

REPO = Path(__file__).resolve().parents[2]


def _validator():
    schema = json_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_cli_prints_the_schema():
    proc = subprocess.run(
        [sys.executable, "-m", "tui.entry", "check", "--schema"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json_schema()


def test_shipped_manifest_validates():
    data = tomllib.loads((REPO / "experiments.toml").read_text())
    errors = list(_validator().iter_errors(data))
    assert not errors, [e.message for e in errors]


def test_schema_carries_types_defaults_choices_help_and_tasks():
    exp = json_schema()["properties"]["experiment"]["items"]
    props = exp["properties"]
    assert set(props) == set(EXPERIMENT_KEYS) | {"sweep"}  # the sweep is a sub-table, not a key
    assert set(json_schema()["properties"]["settings"]["properties"]) == set(SETTINGS_KEYS)
    assert props["epochs"] == {
        "type": "integer",
        "description": EXPERIMENT_KEYS["epochs"].help,
        "minimum": 1,
        "default": 3,
    }
    assert props["precision"]["enum"] == ["auto", "bf16", "fp16", "fp32"]
    assert props["report_to"]["items"]["enum"] == ["tensorboard", "wandb", "mlflow", "trackio"]
    assert exp["required"] == ["name", "task"]
    inspect_rule = next(r for r in exp["allOf"] if r["if"]["properties"]["task"]["const"] == "inspect")
    assert inspect_rule["then"]["properties"]["epochs"]["not"] == {}
    assert inspect_rule["then"]["required"] == ["model"]
    pretrain_rule = next(r for r in exp["allOf"] if r["if"]["properties"]["task"]["const"] == "pretrain")
    assert pretrain_rule["then"]["required"] == ["model", "dataset"]


@pytest.mark.parametrize(
    "body, where",
    [
        ('name = "a"\ntask = "classify"\nmodel = "bert-micro"\ndataset = "x"\nepochs = 0', "epochs"),
        ('name = "a"\ntask = "inspect"\nmodel = "bert-micro"\nepochs = 2', "epochs"),  # not a key of inspect
        ('name = "a"\ntask = "pretrain"\nmodel = "bert-micro"', "dataset"),  # required for training tasks
        ('name = "a"\ntask = "qa"\nmodel = "bert-micro"\ndataset = "x"\nprecision = "fp8"', "precision"),
        ('name = "a"\ntask = "qa"\nmodel = "bert-micro"\ndataset = "x"\nlearnign_rate = 1e-4', "learnign_rate"),
        ('name = "a b"\ntask = "inspect"\nmodel = "bert-micro"', "name"),
        ('name = "a"\ntask = "inspect"', "model"),
    ],
)
def test_schema_and_validator_reject_the_same_mistakes(body, where):
    text = "[[experiment]]\n" + body + "\n"
    with pytest.raises(ManifestError) as err:
        parse_text(text)
    assert where in err.value.format()
    errors = list(_validator().iter_errors(tomllib.loads(text)))
    assert errors and any(where in e.message + e.json_path + str(list(e.absolute_schema_path)) for e in errors), errors
