"""The console shows a training experiment's memory estimate before it is queued, and says why a queue
refused one (a job that fits no GPU) instead of failing."""

from __future__ import annotations

import asyncio
import sys

from engine.models.memory import experiment_estimate
from support.console import make_app, screen_text, wait_for
from support.fakes import MANIFEST, FakeRunner
from support.nvml import fake_pynvml
from tui.screens.main import MainScreen

BIG = '\n[[experiment]]\nname = "huge"\ntask = "pretrain"\nmodel = "bert-base"\ndataset = "embedded:wikitext"\nbatch_size = 8192\n'


def test_highlighted_experiment_shows_its_memory_and_a_refused_job_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("LMCONSOLE_VISIBLE_GPUS", "")  # the host's RAM first

    async def go():
        app = make_app(tmp_path, FakeRunner(), manifest=MANIFEST + BIG, history=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("down")  # params (inspect) -> pretrain
            est = experiment_estimate(app.manifest, app.manifest.get("pretrain"), on_gpu=False)[0]
            assert est is not None
            total = est.line().split(" (")[0]
            assert await wait_for(pilot, lambda: f"memory ≈ {total}" in " ".join(screen_text(app).split()))
            # one fake GPU of 80 GiB: the huge job fits none, and the console says so in one line
            monkeypatch.setenv("LMCONSOLE_VISIBLE_GPUS", "0")
            monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(count=1, memory=[[80, 80]]))
            app.screen.run_experiments(["huge"])
            assert await wait_for(pilot, lambda: "huge needs about" in " ".join(screen_text(app).split()))
            assert app.queue.jobs == []

    asyncio.run(go())


def test_compare_shows_a_runs_memory_estimate_by_its_total(tmp_path):
    from support.fakes import write_run

    from engine.files import atomic_write_json
    from tui.screens.compare import run_differences

    runs = []
    for rid, batch, total in (("20260101-100000-000000-aaaa", 8, 5.123), ("20260101-110000-000000-bbbb", 16, 9.5)):
        run = write_run(tmp_path / "runs", "pre", rid)
        estimate = {"device": "cuda", "total_gib": total, "weights_gib": 0.4}
        atomic_write_json(run.path / "config.json", {**run.config(), "batch_size": batch, "memory_estimate": estimate})
        runs.append(run)
    rows = {(section, key): values for section, key, *values in run_differences(runs)}
    assert rows[("config", "batch_size")] == [8, 16]
    assert rows[("config", "memory_estimate")] == ["5.12 GiB (cuda)", "9.50 GiB (cuda)"]
