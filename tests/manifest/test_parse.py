"""Manifest parsing: the shipped manifest is valid; bad ones get exact, named messages."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.manifest import ManifestError, load, parse_text, reference_markdown

REPO = Path(__file__).resolve().parents[2]

GOOD = """
[[experiment]]
name = "pre"
task = "pretrain"
model = "bert-micro"
dataset = "embedded:wikitext"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ManifestError) as info:
        parse_text(text, "m.toml")
    return info.value.problems


def test_shipped_manifest_is_valid():
    m = load(REPO / "experiments.toml")
    assert "demo-pretrain" in m.names and "pretrain" in m.names
    pre = m.get("pretrain")
    assert pre.model == "google-bert/bert-base-uncased" and pre.dataset == "Salesforce/wikitext"
    assert pre.learning_rate == 5e-5 and pre.epochs == 5 and pre.max_seq_length == 512
    assert pre.batch_size != 36718


def test_defaults_and_frozen():
    m = parse_text(GOOD)
    exp = m.get("pre")
    assert exp.learning_rate == 5e-5 and exp.mlm_probability == 0.15 and exp.init == "auto"
    before = exp.epochs
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.epochs = before + 1
    assert exp.epochs == before


def test_dependency_plan_orders_dependencies_first():
    m = parse_text(
        GOOD
        + """
[[experiment]]
name = "ft"
task = "inspect"
model = "run:pre"

[[experiment]]
name = "later"
task = "inspect"
model = "bert-micro"
depends_on = ["ft"]
"""
    )
    assert m.plan(["later"]) == ["pre", "ft", "later"]
    assert m.get("ft").dependencies == ("pre",)


BAD = [
    # (manifest text, exact expected problem)
    (
        '[[experiment]]\nname = "a"\ntask = "pretrain"\nmodel = "bert-micro"\ndataset = "embedded:wikitext"\nlearning_rate = "fast"\n',
        'experiment 1 "a".learning_rate: expected a number, got "fast"',
    ),
    (
        '[[experiment]]\nname = "a"\ntask = "pretrain"\nmodel = "bert-micro"\ndataset = "embedded:wikitext"\nepochs = 2.5\n',
        'experiment 1 "a".epochs: expected an integer, got float 2.5',
    ),
    (
        '[[experiment]]\nname = "a"\ntask = "pretrain"\nmodel = "bert-micro"\ndataset = "embedded:wikitext"\nlearning_rat = 1e-4\n',
        "experiment 1 \"a\".learning_rat: unknown key (did you mean 'learning_rate'?)",
    ),
    (
        '[[experiment]]\nname = "a"\ntask = "pretrain"\nmodel = "bert-micro"\n',
        "experiment 1 \"a\": missing required key 'dataset' for task 'pretrain' (Hub id (`Salesforce/wikitext`), local folder in the Hub layout, or `embedded:<wikitext|sst2|squad_v2>`.)",
    ),
    (
        '[[experiment]]\nname = "a"\ntask = "finetune"\nmodel = "bert-micro"\n',
        'experiment 1 "a".task: "finetune" is not allowed; expected one of "inspect", "pretrain", "classify", "qa", "push", "study"',
    ),
    (
        '[[experiment]]\nname = "a"\ntask = "inspect"\nmodel = "run:nothere"\n',
        "experiment 1 \"a\".model: unknown experiment 'nothere'; expected one of: a",
    ),
    (
        '[[experiment]]\nname = "a"\ntask = "inspect"\nmodel = "run:b"\n[[experiment]]\nname = "b"\ntask = "inspect"\nmodel = "run:a"\n',
        'experiment 1 "a": dependency cycle a -> b -> a; remove one of these links',
    ),
    (
        '[[experiment]]\nname = "a"\ntask = "inspect"\nmodel = "bert-micro"\n[[experiment]]\nname = "a"\ntask = "inspect"\nmodel = "bert-micro"\n',
        'experiment 2 "a".name: duplicate name, already used by experiment 1',
    ),
    (
        '[[experiment]]\nname = "../escape"\ntask = "inspect"\nmodel = "bert-micro"\n',
        "experiment 1 \"../escape\".name: \"../escape\" is not a safe directory name; use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
    ),
    (
        '[[experiment]]\nname = "a"\ntask = "inspect"\nmodel = "bert-micro"\ndoc_stride = 64\n',
        "experiment 1 \"a\".doc_stride: not used by task 'inspect' (applies to: qa)",
    ),
    (
        '[[experiment]]\nname = "a"\ntask = "inspect"\n',
        "experiment 1 \"a\": missing required key 'model' (Preset (`bert-base`, `bert-tiny`, `bert-micro`), Hub id, local folder, or `run:<experiment>` (that experiment's final model; makes it a dependency).)",
    ),
    (
        '[[experiment]]\nname = "a"\ntask = "pretrain"\nmodel = "bert-micro"\ndataset = "embedded:wikitext"\nbatch_size = 0\n',
        'experiment 1 "a".batch_size: expected a value >= 1, got 0',
    ),
    (
        '[[experiment]]\nname = "a"\ntask = "inspect"\nmodel = "bert-micro"\ninit = "pretrained"\n',
        'experiment 1 "a".init: "pretrained" needs weights, but \'bert-micro\' is a preset (a config only); use init = "scratch" or a Hub id such as "google-bert/bert-base-uncased"',
    ),
    (
        '[[experiment]]\nname = "a"\ntask = "inspect"\nmodel = "bert-micro"\ndepends_on = "b"\n',
        'experiment 1 "a".depends_on: expected a list of strings, got "b"',
    ),
    (
        '[setings]\nruns_dir = "x"\n[[experiment]]\nname = "a"\ntask = "inspect"\nmodel = "bert-micro"\n',
        "setings: unknown top-level key (did you mean 'settings'?); expected [settings] and [[experiment]] tables",
    ),
    (
        '[settings]\nmax_parallel_jobs = "two"\n[[experiment]]\nname = "a"\ntask = "inspect"\nmodel = "bert-micro"\n',
        'settings.max_parallel_jobs: expected an integer, got "two"',
    ),
    ('[experiment]\nname = "a"\n', "experiment: expected an array of tables, written [[experiment]]"),
    (
        '[[experiment]]\nname = "a"\ntask = "inspect"\nmodel = "bert-micro"\ntrust_remote_code = "yes"\n',
        'experiment 1 "a".trust_remote_code: expected true or false, got "yes"',
    ),
]


@pytest.mark.parametrize("text, expected", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_manifest_message(text, expected):
    assert expected in [re.sub(r"^line \d+: ", "", p) for p in problems(text)]


def test_problems_name_their_line_and_count_experiments_from_one():
    """Each problem starts with the manifest line of its key (else of its table); experiments are
    counted from 1; an embedded corpus that does not exist is caught by the parser, not by a run."""
    text = (
        '[settings]\nruns_dir = "runs"\nmax_parallel_jobs = "two"\n\n'
        '[[experiment]]\nname = "a"\ntask = "pretrain"\nmodel = "bert-micro"\ndataset = "embedded:wikitxt"\n\n'
        '[[experiment]]  # the second\nname = "b"\ntask = "inspect"\nmodel = "bert-micro"\ndepends_on = ["nope"]\n'
        '\n[[experiment]]\nname = "c"\ntask = "pretrain"\nmodel = "bert-micro"\n'
    )
    assert problems(text) == [
        'line 3: settings.max_parallel_jobs: expected an integer, got "two"',
        'line 9: experiment 1 "a".dataset: "embedded:wikitxt" is no embedded corpus (did you mean '
        "'embedded:wikitext'?); expected one of embedded:wikitext, embedded:sst2, embedded:squad_v2",
        "line 17: experiment 3 \"c\": missing required key 'dataset' for task 'pretrain' (Hub id "
        "(`Salesforce/wikitext`), local folder in the Hub layout, or `embedded:<wikitext|sst2|squad_v2>`.)",
    ]
    graph = (
        '[[experiment]]\nname = "a"\ntask = "inspect"\nmodel = "bert-micro"\n\n'
        '[[experiment]]\nname = "b"\ntask = "inspect"\nmodel = "bert-micro"\n\ndepends_on = ["nope"]\n'
    )
    assert problems(graph) == [
        "line 11: experiment 2 \"b\".depends_on: unknown experiment 'nope'; expected one of: a, b"
    ]


def test_check_reports_local_folders_that_do_not_exist(tmp_path, monkeypatch, capsys):
    from engine.cli.main import main

    (tmp_path / "data").mkdir()
    (tmp_path / "experiments.toml").write_text(
        '[[experiment]]\nname = "a"\ntask = "classify"\nmodel = "bert-micro"\ndataset = "./data"\n\n'
        '[[experiment]]\nname = "a-much-longer-name"\ntask = "classify"\nmodel = "./my-model"\n'
        'dataset = "./nodata"\n'
    )
    monkeypatch.chdir(tmp_path)
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert "line 10: experiment 2 \"a-much-longer-name\".model: local folder './my-model' does not exist" in err
    assert "line 11: experiment 2 \"a-much-longer-name\".dataset: local folder './nodata' does not exist" in err
    assert "./data'" not in err
    (tmp_path / "my-model").mkdir()
    (tmp_path / "nodata").mkdir()
    assert main(["check"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:3]
    assert rows[0].index("classify") == rows[1].index("classify")  # one column, however long a name


def test_toml_syntax_error_has_line_and_column():
    (msg,) = problems('[[experiment]]\nname = "a"\ntask = pretrain\n')
    assert msg.startswith("TOML syntax error at line 3, column 8:")


def test_all_problems_reported_at_once():
    got = problems(
        '[[experiment]]\nname = "a"\ntask = "pretrain"\nmodel = "bert-micro"\ndataset = "embedded:wikitext"\n'
        'epochs = "x"\nseed = "y"\n'
    )
    assert len(got) == 2


def test_cli_reports_manifest_errors_without_traceback(tmp_path):
    bad = tmp_path / "experiments.toml"
    bad.write_text(BAD[0][0])
    proc = subprocess.run(
        [sys.executable, "-m", "tui.entry", "--manifest", str(bad), "check"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert BAD[0][1] in proc.stderr


def test_missing_manifest_file(tmp_path):
    with pytest.raises(ManifestError) as info:
        load(tmp_path / "nope.toml")
    assert "file not found" in info.value.problems[0]


def test_readme_documents_every_key():
    readme = (REPO / "README.md").read_text()
    assert reference_markdown().strip() in readme
