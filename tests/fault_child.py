"""Child process of tests/test_faults.py: run one job and SIGKILL itself just before write number K.

Usage: python tests/fault_child.py MANIFEST EXPERIMENT K [--resume]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from test_faults import WriteHooks  # noqa: E402

from engine.job.runner import run_experiment  # noqa: E402
from engine.manifest import load  # noqa: E402
from engine.store.runs import RunStore  # noqa: E402


def main() -> int:
    manifest, name, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    m = load(manifest)
    WriteHooks(m.runs_dir, kill_at=k).install()
    resume = RunStore(m.runs_dir).latest(name) if "--resume" in sys.argv else None
    run_experiment(m, name, resume=resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
