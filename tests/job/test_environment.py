"""A run records, once at its start, what it needs to be rerun exactly; never a token."""

import json
import subprocess

import pytest
from support.manifests import PRETRAIN, experiment, manifest_text

from engine.job import environment as envmod
from engine.job.runner import run_experiment
from engine.manifest import parse_text

FAKE = "hf_FAKE-token-for-tests-ABCDEFGHIJKLMNOPQRSTUV"  # as tests/job/test_kill_and_resume.py: not token-shaped


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _repo_with_manifest(tmp_path):
    repo = tmp_path / "project"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    text = "# the project's manifest\n" + manifest_text(str(tmp_path / "runs"), experiment(PRETRAIN))
    (repo / "experiments.toml").write_text(text)
    (repo / "model_code.py").write_text("LR = 1\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    return repo, text


def test_a_run_records_code_packages_manifest_data_and_no_secret(tmp_path, monkeypatch):
    repo, text = _repo_with_manifest(tmp_path)
    # uncommitted work, one line of it quoting the token; the token in the environment under several names
    (repo / "model_code.py").write_text(f"LR = 2\nTOKEN = '{FAKE}'\n")
    monkeypatch.setenv("HF_TOKEN", FAKE)
    monkeypatch.setenv("HF_HUB_TOKEN_EXTRA", FAKE)
    monkeypatch.setenv("HF_HOME_NOTE", f"token {FAKE}")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("WANDB_API_KEY", FAKE)
    path = repo / "experiments.toml"
    run = run_experiment(parse_text(text, path), "pre")
    assert run.status()["status"] == "finished", run.status()

    env = json.loads((run.path / "environment.json").read_text())
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert env["git"]["commit"] == head and env["git"]["branch"] == "main" and env["git"]["dirty"] is True
    diff = (run.path / "code.diff").read_text()
    assert "+LR = 2" in diff and "-LR = 1" in diff
    packages = (run.path / "packages.txt").read_text().splitlines()
    assert any(line.startswith("torch==") for line in packages) and len(packages) == env["packages"] > 20
    assert (run.path / "manifest.toml").read_text() == text
    assert env["manifest"]["sha256"] == __import__("hashlib").sha256(text.encode()).hexdigest()
    assert env["data"]["dataset"] == "embedded:wikitext" and env["data"]["by"] == "content"
    assert len(env["data"]["fingerprint"]) == 64 and env["data"]["files"] >= 3
    assert env["env"]["OMP_NUM_THREADS"] == "2" and env["env"]["HF_HOME_NOTE"] == "token <redacted>"
    assert "HF_TOKEN" not in env["env"] and "HF_HUB_TOKEN_EXTRA" not in env["env"]
    assert env["device"] == "cpu" and env["torch_threads"] >= 1 and "torch" in env
    saved = json.loads((run.path / "model" / "tokenizer.json").read_text())
    assert len(env["tokenizer_sha256"]) == 64 and saved["model"]["vocab"]  # the trained tokenizer, hashed
    for f in run.path.rglob("*"):
        if f.is_file():
            assert FAKE.encode() not in f.read_bytes(), f


def test_recorded_once_a_resume_keeps_the_first_record(tmp_path):
    repo, text = _repo_with_manifest(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    first = envmod.record(run_dir, repo / "experiments.toml", "", "")
    assert first["git"]["dirty"] is False and not (run_dir / "code.diff").exists()
    (repo / "experiments.toml").write_text(text + "# edited later\n")
    again = envmod.record(run_dir, repo / "experiments.toml", "", "")
    assert again["manifest"]["sha256"] == first["manifest"]["sha256"]
    assert (run_dir / "manifest.toml").read_text() == text


def test_a_large_diff_is_cut_with_a_note(tmp_path, monkeypatch):
    repo, _ = _repo_with_manifest(tmp_path)
    (repo / "model_code.py").write_text("".join(f"LINE_{i} = {i}\n" for i in range(5000)))
    monkeypatch.setattr(envmod, "DIFF_LIMIT", 1000)
    state, diff = envmod.code_state(repo)
    assert state["dirty"] and state["diff_cut"] and state["diff_bytes"] > 1000
    assert len(diff.encode()) < 1200 and "diff cut at 1,000 of" in diff


def test_outside_a_repository_says_so(tmp_path):
    state, diff = envmod.code_state(tmp_path)
    assert state == {"repository": False} and diff == ""


def test_the_data_fingerprint_follows_the_file_contents(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.csv").write_text("text\nabc\n")
    first = envmod.data_fingerprint(str(folder), str(folder))
    (folder / "train.csv").write_text("text\nabd\n")  # same size, other content
    second = envmod.data_fingerprint(str(folder), str(folder))
    assert first["fingerprint"] != second["fingerprint"] and first["files"] == 1
    snapshot = tmp_path / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    assert envmod.data_fingerprint("owner/name", str(snapshot))["revision"] == "0123abc"


@pytest.mark.parametrize("name", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "MY_API_KEY", "DB_PASSWORD", "AWS_SECRET"])
def test_secret_variables_are_never_recorded(name):
    assert name not in envmod.env_vars({name: "x", "HF_HOME": "/h", "CUDA_VISIBLE_DEVICES": "0"})
    assert envmod.env_vars({"HF_HOME": "/h", "PATH": "/bin"}) == {"HF_HOME": "/h"}


def test_differences_by_section_and_for_runs_recorded_before_the_package_list(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, lr, torch_version, commit in ((a, 0.001, "2.13.0", "c1"), (b, 0.002, "2.14.0", "c2")):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"task": "pretrain", "learning_rate": lr, "seed": 1}))
        env = {"torch": torch_version, "python": "3.12", "git": {"commit": commit, "dirty": False}}
        (folder / "environment.json").write_text(json.dumps(env))
    rows = envmod.differences(a, b)
    assert ("config", "learning_rate", "0.001", "0.002") in rows
    assert ("code", "commit", "c1", "c2") in rows
    assert ("packages", "torch", "2.13.0", "2.14.0") in rows  # no packages.txt: the main versions recorded
    (b / "packages.txt").write_text("torch==2.14.0\n")
    assert ("packages", "torch", "2.13.0", "2.14.0") in envmod.differences(a, b)  # one list: still those
    assert envmod.differences(a, a) == []
