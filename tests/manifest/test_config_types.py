"""The typed configuration: real dataclasses, a type per field, help per field, one source."""

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from engine import manifest
from engine.manifest import EXPERIMENT_KEYS, SETTINGS_KEYS, Experiment, Settings, load

REPO = Path(__file__).resolve().parents[2]
GROUPS = (
    manifest.IdentityConfig,
    manifest.ModelConfig,
    manifest.DataConfig,
    manifest.OptimConfig,
    manifest.RuntimeConfig,
    manifest.LauncherConfig,
    manifest.CheckpointConfig,
    manifest.EvalConfig,
    manifest.QueueConfig,
    manifest.PretrainConfig,
    manifest.QAConfig,
    manifest.PushConfig,
    manifest.StudyConfig,
    manifest.TrackerConfig,
    manifest.ExecutorConfig,
    manifest.SweepConfig,
)


def test_fields_have_concrete_types():
    hints = typing.get_type_hints(Experiment)
    assert hints["doc_stride"] is int
    assert hints["learning_rate"] is float
    assert hints["eval_each_epoch"] is bool
    assert hints["precision"] is str
    assert hints["report_to"] == tuple[str, ...] and hints["seeds"] == tuple[int, ...]
    assert hints["dataset"] == (str | None)
    for cls in (Experiment, Settings):
        for name, hint in typing.get_type_hints(cls).items():
            assert hint is not typing.Any and typing.Any not in typing.get_args(hint), (cls.__name__, name)


def test_every_field_has_help():
    for cls in (Experiment, Settings):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help", "").strip(), (cls.__name__, f.name)


def test_experiment_is_its_groups_and_access_stays_flat():
    own = {name for g in GROUPS for name in g.__dataclass_fields__}
    assert sum(len(dataclasses.fields(g)) for g in GROUPS) == len(own)  # each key in one group only
    assert [f.name for f in dataclasses.fields(Experiment)] == [f.name for g in GROUPS for f in dataclasses.fields(g)]
    assert all(issubclass(Experiment, g) for g in GROUPS)
    assert "doc_stride" in manifest.QAConfig.__dataclass_fields__
    assert "learning_rate" in manifest.OptimConfig.__dataclass_fields__
    exp = Experiment(name="q", task="qa", model="bert-micro", dataset="embedded:squad_v2")
    assert exp.doc_stride == 128 and exp.learning_rate == 5e-5 and exp.launcher == "none"
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.doc_stride = 64  # type: ignore[misc]
    with pytest.raises(TypeError):
        Experiment(name="q", task="qa")  # type: ignore[call-arg]  # model is required


def test_key_tables_are_built_from_the_fields():
    """One source: the validator's, README's and schema's tables say what the dataclasses say."""
    for cls, table in ((Experiment, EXPERIMENT_KEYS), (Settings, SETTINGS_KEYS)):
        hints = typing.get_type_hints(cls)
        # a sub-table ([experiment.sweep]) has its own parser and schema, not a Key
        fields = [f for f in dataclasses.fields(cls) if not f.metadata.get("table")]
        assert list(table) == [f.name for f in fields]
        for f in fields:
            key = table[f.name]
            assert key.help == f.metadata["help"]
            assert key.required == (f.default is dataclasses.MISSING)
            if not key.required:
                assert key.default == (list(f.default) if isinstance(f.default, tuple) else f.default)
            scalar = {int: "int", float: "float", bool: "bool", str: "str", str | None: "str", bool | None: "bool"}
            expected = scalar.get(hints[f.name])
            expected = expected or {tuple[str, ...]: "list[str]", tuple[int, ...]: "list[int]"}[hints[f.name]]
            assert key.type == expected, f.name
    assert [k for k, v in EXPERIMENT_KEYS.items() if v.required] == ["name", "task", "model"]
    assert EXPERIMENT_KEYS["report_to"].default == []  # lists as in config.json, so resume compares them equal


def _matches(value, hint) -> bool:
    if typing.get_origin(hint) is tuple:
        return isinstance(value, tuple) and all(_matches(v, typing.get_args(hint)[0]) for v in value)
    if type(None) in typing.get_args(hint):
        return value is None or any(_matches(value, a) for a in typing.get_args(hint) if a is not type(None))
    if hint is float:
        return type(value) is float  # the validator turns `warmup = 1` into 1.0
    return type(value) is hint


def test_parsed_values_have_the_declared_types():
    m = load(REPO / "experiments.toml")
    for cls, objs in ((Experiment, m.experiments), (Settings, (m.settings,))):
        hints = typing.get_type_hints(cls)
        for obj in objs:
            for name, hint in hints.items():
                assert _matches(getattr(obj, name), hint), (name, getattr(obj, name), hint)


def test_type_checker_sees_experiment_fields(tmp_path):
    import mypy  # noqa: F401 - the test extra: a missing one fails, not skips

    (tmp_path / "mypy.ini").write_text("[mypy]\nignore_missing_imports = True\nfollow_imports = skip\n")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        "from engine.manifest import Experiment\n\n\n"
        "def ok(e: Experiment) -> int:\n    return e.doc_stride + e.max_seq_length\n\n\n"
        "def wrong(e: Experiment) -> str:\n    return e.doc_stride\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--config-file", str(tmp_path / "mypy.ini")]
        + [str(snippet), "engine/manifest.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 'snippet.py:9: error: Incompatible return value type (got "int", expected "str")' in proc.stdout, proc
    assert "snippet.py:5" not in proc.stdout and "manifest.py" not in proc.stdout, proc.stdout
