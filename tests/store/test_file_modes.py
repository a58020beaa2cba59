"""Run files and exports follow the umask (0644/0755 under umask 022), so colleagues can read them."""

import os
import stat

import pytest
from support.micro import micro_text_pipeline

from engine.cli.main import main as cli_main
from engine.files import atomic_write_text, current_umask
from engine.job.runner import run_experiment
from engine.manifest import parse_text


@pytest.fixture
def umask():
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def _modes(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = stat.S_IMODE(os.stat(p).st_mode)
    return out


def test_current_umask_reads_without_changing(umask):
    umask(0o027)
    assert current_umask() == 0o027
    assert current_umask() == 0o027


def test_atomic_write_follows_umask(tmp_path, umask):
    atomic_write_text(tmp_path / "a.json", "{}")
    assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == 0o644
    umask(0o077)
    atomic_write_text(tmp_path / "b.json", "{}")
    assert stat.S_IMODE(os.stat(tmp_path / "b.json").st_mode) == 0o600


def test_run_files_and_exports_readable_under_umask_022(tmp_path, umask):
    path = tmp_path / "experiments.toml"
    path.write_text(micro_text_pipeline(tmp_path / "runs", "epochs = 1\nmax_train_samples = 32\nsave_steps = 1"))
    run = run_experiment(parse_text(path.read_text(), path), "pre")
    assert run.status()["status"] == "finished", run.status()
    assert cli_main(["--manifest", str(path), "export", "pre", "--out", str(tmp_path / "exports")]) == 0
    musts = {
        "runs": (
            "status.json",
            "results.json",
            "config.json",
            "events.jsonl",
            "tables/epochs.json",
            "model/model.safetensors",
            "model.safetensors",
            "optimizer.pt",
        ),
        "exports": ("comparison.csv", "epochs.json", "epochs.tex"),
    }
    for folder, names_needed in musts.items():
        root = tmp_path / folder
        modes = _modes(root)
        for must in names_needed:
            assert any(n.endswith(must) for n in modes), (must, sorted(modes))
        wrong = {n: oct(m) for n, m in modes.items() if m != (0o755 if os.path.isdir(os.path.join(root, n)) else 0o644)}
        assert not wrong, wrong
    assert any("checkpoints/step-" in n and n.endswith("state.json") for n in _modes(tmp_path / "runs"))
