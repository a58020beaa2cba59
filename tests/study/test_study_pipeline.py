"""The real study of experiments.toml: valid, planned, and runnable end to end offline.

A mirror folder in the Hub layout stands in for the Hub: ``google-bert/bert-base-uncased``
is a tiny BERT (the bert-micro preset's shape with a hand-made WordPiece vocabulary,
saved with plain transformers), and ``Salesforce/wikitext``, ``nyu-mll/glue`` and
``rajpurkar/squad_v2`` are copies of the embedded corpora (same configs and splits).
The shipped manifest is run as it is, with only the sizes made tiny (``max_steps = 2``):
``lmconsole run study`` runs every step in dependency order; without a token the three
pushes end with a one-line reason and their staged folders, and everything else finishes.
Run again with a token and an HfApi stand-in, only the pushes run, and they upload.
It takes ~40 s on a busy 2-core machine (~12 s of CPU): nine steps, twice.
"""

import os
import re
import shutil
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.manifest import load
from engine.store.runs import RunStore

REPO = Path(__file__).resolve().parents[2]
STEPS = [
    "params-bert-base",
    "pretrain",
    "push-pretrain",
    "sst2",
    "squad",
    "params-sst2",
    "params-squad",
    "push-sst2",
    "push-squad",
]
TRAIN = {"pretrain", "sst2", "squad"}
PUSHES = {"push-pretrain": "pretrain", "push-sst2": "sst2", "push-squad": "squad"}
TINY = {
    "epochs": "1",
    "max_steps": "2",
    "max_train_samples": "48",
    "max_eval_samples": "16",
    "batch_size": "8",
    "eval_batch_size": "16",
    "max_seq_length": "64",
    "logging_steps": "1",
}
TINY_QA = {**TINY, "max_seq_length": "96", "doc_stride": "32"}
FAKE = "hf_FAKE-token-for-tests-ABCDEFGHIJKLMNOPQRSTUV"


def test_real_study_manifest_is_the_whole_study():
    m = load(REPO / "experiments.toml")
    study = m.get("study")
    assert study.task == "study" and list(study.steps) == STEPS
    plan = m.job_plan(["study"])
    assert plan == STEPS
    assert m.get("pretrain").model == "google-bert/bert-base-uncased"
    assert (m.get("pretrain").dataset, m.get("pretrain").dataset_config, m.get("pretrain").eval_split) == (
        "Salesforce/wikitext",
        "wikitext-2-raw-v1",
        "test",
    )
    sst2, squad = m.get("sst2"), m.get("squad")
    assert (sst2.dataset, sst2.dataset_config, sst2.model, sst2.eval_split) == (
        "nyu-mll/glue",
        "sst2",
        "run:pretrain",
        "validation",
    )
    assert (sst2.epochs, sst2.learning_rate, sst2.max_seq_length) == (3, 2e-5, 128)
    assert (squad.dataset, squad.dataset_config, squad.model) == ("rajpurkar/squad_v2", "squad_v2", "run:pretrain")
    assert (squad.epochs, squad.learning_rate, squad.max_seq_length, squad.doc_stride) == (2, 3e-5, 384, 128)
    for name in ("sst2", "squad"):  # a failed push never blocks a fine-tuning: they wait for pretrain only
        assert m.get(name).dependencies == ("pretrain",)
    for push, source in PUSHES.items():
        assert m.get(push).task == "push" and m.get(push).model == f"run:{source}" and m.get(push).hub_model_id
    assert m.get("params-sst2").model == "run:sst2" and m.get("params-squad").model == "run:squad"
    # every hyperparameter of the fine-tunings carries a one-line comment
    text = (REPO / "experiments.toml").read_text()
    for name in ("sst2", "squad"):
        block = text.split(f'name = "{name}"\n', 1)[1].split("[[experiment]]", 1)[0]
        for key in ("epochs", "learning_rate", "batch_size", "max_seq_length", "warmup", "weight_decay") + (
            ("doc_stride",) if name == "squad" else ()
        ):
            line = next(l for l in block.splitlines() if l.startswith(f"{key} ="))
            assert "#" in line and len(line.split("#", 1)[1].strip()) > 10, line
    # the demo study is the README's command (a)
    assert m.job_plan(["demo-study"]) == m.plan(["demo-params", "demo-params-finetuned"])


def test_check_prints_the_plan(capsys):
    assert main(["--manifest", str(REPO / "experiments.toml"), "check"]) == 0
    out = capsys.readouterr().out
    plan = out.split("plan of study 'study'", 1)[1].split("plan of study", 1)[0]
    rows = [l.split() for l in plan.splitlines()[1:] if l.strip()]
    assert [r[1] for r in rows] == STEPS and [r[0] for r in rows] == [f"{i}." for i in range(1, 10)]
    assert "after pretrain" in next(l for l in plan.splitlines() if " sst2 " in l)


def tiny_manifest(folder: Path) -> Path:
    """experiments.toml as shipped, runs and mirror redirected, the study's training sizes made tiny."""
    text = (REPO / "experiments.toml").read_text()
    text = text.replace('runs_dir = "runs"', f'runs_dir = "{folder / "runs"}"\ndata_mirror = "{folder / "mirror"}"')
    blocks = text.split("[[experiment]]")
    for i, block in enumerate(blocks):
        name = re.search(r'(?m)^name = "([^"]+)"', block)
        if not name or name.group(1) not in TRAIN:
            continue
        for key, value in (TINY_QA if name.group(1) == "squad" else TINY).items():
            block, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", block)
            if not n:
                block = block.rstrip("\n") + f"\n{key} = {value}\n\n"
        blocks[i] = block
    path = folder / "experiments.toml"
    path.write_text("[[experiment]]".join(blocks))
    return path


def make_mirror(root: Path) -> None:
    from support.vocab import wordpiece_vocab
    from transformers import BertForPreTraining, BertTokenizerFast

    from engine.data.embedded import ensure_embedded
    from engine.models.presets import preset_config

    for name, repo in (
        ("wikitext", "Salesforce/wikitext"),
        ("sst2", "nyu-mll/glue"),
        ("squad_v2", "rajpurkar/squad_v2"),
    ):
        shutil.copytree(ensure_embedded(name), root / repo)
    # transformers 5 builds the tokenizer from ``vocab`` (a ``vocab_file=`` argument is ignored,
    # which leaves only the special tokens)
    tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(wordpiece_vocab())}, do_lower_case=True)
    assert len(tok) > 500
    import torch

    torch.manual_seed(0)
    model = BertForPreTraining(preset_config("bert-micro", vocab_size=len(tok)))
    model.save_pretrained(str(root / "google-bert" / "bert-base-uncased"))
    tok.save_pretrained(str(root / "google-bert" / "bert-base-uncased"))


class FakeApi:
    def __init__(self):
        self.uploads = []

    def whoami(self):
        return {"name": "alice"}

    def create_repo(self, repo_id, **kw):
        assert kw["private"] is True and kw["exist_ok"] is True

    def upload_folder(self, **kw):
        self.uploads.append((kw["repo_id"], sorted(os.listdir(kw["folder_path"]))))
        return type("Info", (), {"oid": f"commit{len(self.uploads)}"})()


def test_real_study_end_to_end_with_a_mirror(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_mirror(tmp_path / "mirror")
    path = tiny_manifest(tmp_path)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("engine.hub.publish.hf_token", lambda: None)

    # 1. one action, no token: every step runs in order; the pushes fail with a one-line reason
    assert main(["--manifest", str(path), "run", "study"]) == 1
    out = capsys.readouterr()
    store = RunStore(tmp_path / "runs")
    for name in STEPS:
        runs = store.runs(name)
        assert len(runs) == 1, name
        st = runs[0].status()
        if name in PUSHES:
            assert st["status"] == "failed", st
            assert st["reason"].startswith("not pushed: no Hugging Face token") and "\n" not in st["reason"]
            staged = runs[0].path / "staged"
            assert f"staged folder kept: {staged}" in st["reason"]
            assert {"model.safetensors", "config.json", "README.md", "tokenizer.json"} <= {
                p.name for p in staged.iterdir()
            }
        else:
            assert st["status"] == "finished", (name, st)
    assert "Traceback" not in out.out + out.err
    starts = [l.split("]")[0].lstrip("[") for l in out.out.splitlines() if " starting (" in l]
    assert starts == STEPS  # dependency order, one after the other
    pre = store.latest("pretrain")
    assert pre.config()["model"] == "google-bert/bert-base-uncased" and pre.config()["init"] == "pretrained"
    evals = [e for e in pre.events() if type(e).__name__ == "EvalFinished"]
    assert [e.split for e in evals] == ["test", "test"]  # before training and after the (only) epoch
    assert evals[0].metrics["mlm_perplexity"] > 100  # random weights of the mirror's model: near the vocabulary size
    for name in ("sst2", "squad"):
        assert store.latest(name).results()["start_model"] == f"pretrain/{pre.run_id}"
    assert store.latest("sst2").results()["eval_split"] == "validation"
    assert (
        store.latest("squad").results()["final"]["total"] == 16
        and "best_f1" in store.latest("squad").results()["final"]
    )
    hidden = 64  # bert-micro
    cls = {r[0]: r for r in store.latest("params-sst2").read_table("params_diff_base_vs_classification").rows}
    assert cls["classifier"][-1] == hidden * 2 + 2
    qa = {r[0]: r for r in store.latest("params-squad").read_table("params_diff_base_vs_qa").rows}
    assert qa["pooler"][-1] == -(hidden * hidden + hidden) and qa["qa_outputs"][-1] == hidden * 2 + 2

    # 2. the same action with a token: only the pushes run (the rest has finished runs), and upload
    api = FakeApi()
    monkeypatch.setenv("HF_TOKEN", FAKE)
    monkeypatch.setattr("engine.hub.publish.hub_api", lambda later="": api)
    assert main(["--manifest", str(path), "run", "study"]) == 0
    capsys.readouterr()
    assert all(len(store.runs(n)) == 1 for n in STEPS if n not in PUSHES)
    assert [r for r, _ in api.uploads] == [
        "alice/bert-base-uncased-wikitext2",
        "alice/bert-base-uncased-wikitext2-sst2",
        "alice/bert-base-uncased-wikitext2-squad-v2",
    ]  # bare names: the token owner's
    assert all({"model.safetensors", "README.md"} <= set(files) for _, files in api.uploads)
    for push, source in PUSHES.items():
        run = store.latest(push)
        assert run.status()["status"] == "finished"
        res = run.results()
        assert res["url"] == f"https://huggingface.co/{res['repo_id']}" and res["private"] is True
        assert res["start_model"] == f"{source}/{store.latest(source).run_id}" and res["commit"].startswith("commit")
    # 3. nothing left to do
    assert main(["--manifest", str(path), "run", "study"]) == 0
    assert "every step has a finished run" in capsys.readouterr().out
    # 4. the report of the study reads its steps' runs, pushes included
    assert main(["--manifest", str(path), "report", "study", "--out", str(tmp_path / "report"), "--format", "md"]) == 0
    md = next((tmp_path / "report").glob("*.md")).read_text()
    assert "https://huggingface.co/alice/bert-base-uncased-wikitext2-squad-v2" in md and f"pretrain/{pre.run_id}" in md
    assert main(["--manifest", str(path), "verify", "study", "-q"]) == 0  # every number recomputed (pushes have none)
    assert "0 mismatch(es)" in capsys.readouterr().out
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert FAKE.encode() not in f.read_bytes(), f


def test_console_runs_a_study_with_one_key(tmp_path):
    """`r` on a study row queues its steps in dependency order (fake runner); a failed push blocks nothing else."""
    import asyncio

    from tui.screens.main import MainScreen
    from support.console import make_app, screen_text, wait_for
    from support.fakes import MANIFEST, FakeRunner
    from tui.widgets.experiments import ExperimentsPane

    text = (
        MANIFEST
        + """
[[experiment]]
name = "push-pretrain"
task = "push"
model = "run:pretrain"
hub_model_id = "alice/pre"

[[experiment]]
name = "all"
task = "study"
description = "everything"
steps = ["push-pretrain", "finetune", "params"]
"""
    )
    runner = FakeRunner(**{"push-pretrain": {"fail": "not pushed: no Hugging Face token"}})
    app = make_app(tmp_path, runner, manifest=text, history=False)

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            assert await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            pane = app.screen.query_one(ExperimentsPane)
            assert await wait_for(pilot, lambda: pane.table.row_count == 6)
            pane.table.move_cursor(row=5)
            said = []
            app.screen.say = lambda text, level="info": said.append(text)
            await pilot.press("r")
            assert await wait_for(pilot, lambda: len(app.queue.jobs) == 4 and all(j.done for j in app.queue.jobs), 30)
            assert [j.experiment for j in app.queue.jobs] == ["pretrain", "push-pretrain", "finetune", "params"]
            assert [j.status for j in app.queue.jobs] == ["finished", "failed", "finished", "finished"]
            assert said == ["study all: queued 4 steps in order: pretrain, push-pretrain, finetune, params"]
            assert await wait_for(pilot, lambda: "2/3 done, 1 ✗" in screen_text(app))  # the study's row

    asyncio.run(go())


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            'name = "p"\ntask = "push"\nmodel = "run:a"\nhub_model_id = "x/y"\ndataset = "embedded:sst2"',
            "\"p\".dataset: not used by task 'push'",
        ),
        ('name = "p"\ntask = "push"\nmodel = "run:a"', "missing required key 'hub_model_id' for task 'push'"),
        ('name = "p"\ntask = "push"\nmodel = "bert-micro"\nhub_model_id = "x/y"', "expected run:<experiment>"),
        ('name = "p"\ntask = "push"\nmodel = "run:a"\nhub_model_id = "x/y/z"', "expected OWNER/NAME or NAME"),
        ('name = "s"\ntask = "study"\nsteps = ["a"]\nmodel = "bert-micro"', "\"s\".model: not used by task 'study'"),
        ('name = "s"\ntask = "study"\nsteps = ["a", "nope"]', "\"s\".steps: unknown experiment 'nope'"),
        ('name = "s"\ntask = "study"\nsteps = []', "a study needs at least one step"),
        ('name = "s"\ntask = "study"\nsteps = ["a", "a"]', '"a" is listed twice'),
        ('name = "s"\ntask = "study"\nsteps = ["a"]\nseeds = [1]', "\"s\".seeds: not used by task 'study'"),
    ],
)
def test_step_keys_are_validated(body, expected):
    from engine.manifest import ManifestError, parse_text

    text = f'[[experiment]]\nname = "a"\ntask = "inspect"\nmodel = "bert-micro"\n\n[[experiment]]\n{body}\n'
    with pytest.raises(ManifestError) as info:
        parse_text(text)
    assert any(expected in p for p in info.value.problems), info.value.problems
