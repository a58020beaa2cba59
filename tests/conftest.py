"""Shared fixtures: every test runs offline with its own cache and runs directory.

Helpers and fakes the tests import live in ``tests/support/``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One cache per test session, new and empty, removed at the end: shared between the tests of
# the session (it saves rebuilding corpora, tokenizers and NSP pairs), never between sessions
# or users. A cache kept across sessions would hide a change in what it holds (a tokenizer
# trained differently keeps its old vocabulary) and would let one developer's run delete
# another's files. LMCONSOLE_TEST_CACHE=<folder> reuses a folder on purpose (faster reruns;
# at your own risk); a developer's LMCONSOLE_CACHE is never used by the tests.
_OWN_CACHE = not os.environ.get("LMCONSOLE_TEST_CACHE")
os.environ["LMCONSOLE_CACHE"] = os.environ.get("LMCONSOLE_TEST_CACHE") or tempfile.mkdtemp(
    prefix="lmconsole-test-cache-"
)

# Hypothesis: the same examples on every run by default ("ci": derandomized, so a failure is
# not a matter of luck and reproduces anywhere); HYPOTHESIS_PROFILE=random draws new examples
# (for a nightly run or hunting bugs on purpose).
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("random", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
# Processes the tests start (job processes, the scheduler, the CLI) find the repository and tests/support.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p
    for p in (
        str(Path(__file__).resolve().parent.parent),
        str(Path(__file__).resolve().parent),
        os.environ.get("PYTHONPATH"),
    )
    if p
)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pytest_sessionfinish(session, exitstatus):
    """Remove this session's own cache (not one named by LMCONSOLE_TEST_CACHE)."""
    if _OWN_CACHE:
        shutil.rmtree(os.environ["LMCONSOLE_CACHE"], ignore_errors=True)


# In CI (LMCONSOLE_CI=1, set by .ci/run) a test skipped for a missing tool or library is a
# failure: .ci/run installs everything the suite needs, so such a skip means a promise went
# untested. Skips that depend on the machine's hardware stay skips.
HARDWARE_SKIPS = ("this CPU has no native bf16", "an NVIDIA driver is present")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("LMCONSOLE_CI") != "1" or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if not any(h in reason for h in HARDWARE_SKIPS):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every tool the tests need is installed (.ci/run): {reason}"
