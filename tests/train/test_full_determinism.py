"""``full_determinism = true``: deterministic kernels only for that job, and back to the defaults after."""

from __future__ import annotations

import dataclasses
import os

import torch
from support.manifests import PRETRAIN, experiment, manifest_text

from engine.job.runner import run_experiment
from engine.manifest import parse_text
from engine.train.loop import setup_job


def test_the_switch_is_set_for_the_job_and_reset_for_the_next(tmp_path, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    m = parse_text(manifest_text(str(tmp_path / "runs"), experiment(PRETRAIN, full_determinism=True)))
    exp = m.get("pre")
    try:
        setup_job(exp)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert torch.backends.cudnn.benchmark is False
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        setup_job(dataclasses.replace(exp, full_determinism=False))
        assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def test_a_training_job_runs_with_deterministic_kernels_only(tmp_path):
    text = manifest_text(str(tmp_path / "runs"), experiment(PRETRAIN, full_determinism=True))
    try:
        run = run_experiment(parse_text(text, tmp_path / "experiments.toml"), "pre")
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    assert run.status()["status"] == "finished", run.status()
    assert run.config()["full_determinism"] is True
