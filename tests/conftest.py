"""Shared fixtures: every test runs offline with its own cache and runs directory.

Helpers and fakes the tests import live in ``tests/support/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One cache for the whole session: embedded corpora and tokenizers are deterministic,
# so sharing them between tests only saves time.
os.environ.setdefault(
    "LMCONSOLE_CACHE", str(Path(os.environ.get("PYTEST_CACHE_ROOT", "/tmp")) / f"lmconsole-test-cache-{os.getuid()}")
)
# Processes the tests start (job processes, the scheduler, the CLI) find the repository and tests/support.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")) if p
)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


