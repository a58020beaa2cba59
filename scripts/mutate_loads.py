"""Mutation check: do the tests notice a model that silently trains from random weights?

Re-randomises every model ``transformers`` loads with ``from_pretrained`` (each parameter
drawn anew from N(0, 0.02), as a fresh BERT is initialised), then runs pytest on the files
given. The suite's starting-weights tests must FAIL under this mutation; this script exits 0
only when at least one test failed, 1 when all passed (the mutation went unnoticed).

    python scripts/mutate_loads.py                      # the default test files below
    python scripts/mutate_loads.py tests/tasks/test_finetune.py

Kept outside the suite on purpose: it is a check of the tests, not a test. Jobs run in the
pytest process by these files; a job in a subprocess is not mutated.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT = [
    "tests/tasks/test_starting_weights.py",
    "tests/tasks/test_finetune.py",
    "tests/tasks/test_finetune_foreign.py",
]


def _mutate() -> None:
    import torch
    from transformers import PreTrainedModel

    original = PreTrainedModel.from_pretrained.__func__

    def from_pretrained(cls, *args, **kwargs):
        out = original(cls, *args, **kwargs)
        model = out[0] if isinstance(out, tuple) else out
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.02)
        return out

    PreTrainedModel.from_pretrained = classmethod(from_pretrained)  # type: ignore[method-assign,assignment]


def pytest_configure(config) -> None:
    """Plugin hook (``-p mutate_loads``): mutate before any test imports a model."""
    _mutate()


def main(argv: list[str]) -> int:
    import pytest

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    files = argv or [str(root / f) for f in DEFAULT]
    rc = pytest.main(["-q", "-p", "mutate_loads", "-p", "no:cacheprovider", *files])
    if rc == 1:
        print("mutate_loads: tests failed under re-randomised loads - the mutation was caught")
        return 0
    print(f"mutate_loads: pytest exit code {rc} - the mutation was NOT caught" if rc == 0 else f"pytest error {rc}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
