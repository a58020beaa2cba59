"""Child process of tests/job/test_kill_at_write.py: run one job and SIGKILL itself just before write number K.

Usage: python tests/support/fault_child.py MANIFEST EXPERIMENT K [--resume]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the support package
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository

from engine.job.runner import run_experiment  # noqa: E402
from engine.manifest import load  # noqa: E402
from engine.store.runs import RunStore  # noqa: E402
from support.write_hooks import WriteHooks  # noqa: E402


def main() -> int:
    manifest, name, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    m = load(manifest)
    WriteHooks(m.runs_dir, kill_at=k).install()
    resume = RunStore(m.runs_dir).latest(name) if "--resume" in sys.argv else None
    run_experiment(m, name, resume=resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
