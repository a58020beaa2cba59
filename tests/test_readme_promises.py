"""Promises the README makes that no other test covers, one test each.

- optimizer state is loaded with ``torch.load(weights_only=True)``: a pickled object in a
  checkpoint's ``optimizer.pt`` is refused, never run;
- ``trust_remote_code`` is off unless an experiment opts in, with a warning in the log;
- the console runs without mouse mode (tmux over SSH keeps its own selection);
- ``lmconsole`` sets ``OMP_WAIT_POLICY=PASSIVE`` before torch is imported, unless the user set it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.manifests import experiment, write_manifest

REPO = Path(__file__).resolve().parents[1]


class _Planted:
    """Unpickling this runs ``Path(marker).touch()``: what a hostile checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_optimizer_state_with_a_pickled_object_is_refused_not_run(tmp_path):
    import torch
    from safetensors.torch import save_model

    from engine.train.loop import CheckpointDamaged, load_checkpoint

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    ckpt = tmp_path / "checkpoint-1"
    ckpt.mkdir()
    save_model(model, str(ckpt / "model.safetensors"))
    (ckpt / "state.json").write_text(json.dumps({"global_step": 1, "epoch": 0, "batch": 1}))
    marker = tmp_path / "code-ran"
    torch.save({"optimizer": _Planted(marker), "scheduler": {}, "rng": torch.get_rng_state()}, ckpt / "optimizer.pt")
    with pytest.raises(CheckpointDamaged, match="optimizer.pt"):
        load_checkpoint(ckpt, model, opt, sched)
    assert not marker.exists(), "unpickling optimizer.pt ran code: torch.load without weights_only=True"


@pytest.mark.parametrize("trust", [True, False])
def test_trust_remote_code_warns_only_when_an_experiment_opts_in(tmp_path, trust):
    from engine.events import LogEmitted
    from engine.job.runner import run_experiment
    from engine.manifest import load

    path = write_manifest(
        tmp_path,
        experiment(name="params", task="inspect", model="bert-micro", heads=["base"], trust_remote_code=trust),
        settings=f'runs_dir = "{tmp_path / "runs"}"',
    )
    run = run_experiment(load(path), "params")
    assert run.status()["status"] == "finished", run.status()
    warnings = [e for e in run.events() if isinstance(e, LogEmitted) and "trust_remote_code is on" in e.message]
    if trust:
        assert len(warnings) == 1 and warnings[0].level == "warning"
    else:
        assert not warnings


def test_console_runs_without_mouse_mode(monkeypatch):
    from tui import lifecycle

    calls = []

    class App:
        queue = None
        return_code = 0

        def run(self, **kwargs):
            calls.append(kwargs)

    monkeypatch.setattr(lifecycle, "pending_jobs", lambda queue: [])
    lifecycle.run(App(), headless=True)  # what `lmconsole` does with the real app
    assert calls and calls[0].get("mouse") is False


PROBE = (
    "import os, sys\n"
    "import engine.cli.main as cli\n"
    "cli.main = lambda argv, console=None: print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules) or 0\n"
    "import tui.entry\n"
    "sys.exit(tui.entry.main([]))\n"
)


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_lmconsole_sets_omp_wait_policy_passive_before_torch(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [expected, "False"]  # set, and torch not yet imported (OpenMP reads it once)
