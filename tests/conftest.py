"""Shared fixtures: every test runs offline with its own cache and runs directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One cache for the whole session: embedded corpora and tokenizers are deterministic,
# so sharing them between tests only saves time.
os.environ.setdefault(
    "LMCONSOLE_CACHE", str(Path(os.environ.get("PYTEST_CACHE_ROOT", "/tmp")) / f"lmconsole-test-cache-{os.getuid()}")
)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_manifest(folder: Path, body: str, settings: str = "") -> Path:
    path = Path(folder) / "experiments.toml"
    path.write_text((f"[settings]\n{settings}\n" if settings else "") + body)
    return path
