"""Helpers and fakes the tests share; never installed with the package.

pytest puts ``tests/`` on ``sys.path`` (``pythonpath`` in pyproject.toml); processes that tests
start get :data:`PYTHONPATH`, so a job process finds ``support.fakes:process_runner`` too.
"""

import os
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
PYTHONPATH = os.pathsep.join([str(REPO), str(TESTS)])  # for child processes: the repository, then tests/
