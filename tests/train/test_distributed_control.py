"""Control under DDP: rank 0's decisions reach the other ranks every CONTROL_EVERY steps (a broadcast is a
host sync), and a pause sends heartbeats, so no collective waits out the pause (its timeout is bounded).

One process in a gloo group stands for rank 0 of a distributed job: the loop takes its distributed path.
The pause test runs two ranks (two processes) with a collective timeout shorter than the pause.
"""

import threading
import time

import pytest
import torch
import torch.distributed as dist
from support.toyloop import ToyTask, toy_context, train_toy

from engine.errors import Cancelled
from engine.train import loop


@pytest.fixture
def group(tmp_path, monkeypatch):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    codes: list[int] = []
    real = dist.broadcast

    def broadcast(tensor, src, *a, **k):
        out = real(tensor, src, *a, **k)
        codes.append(int(tensor[0]))
        return out

    monkeypatch.setattr(dist, "broadcast", broadcast)
    yield codes
    dist.destroy_process_group()


def test_control_is_broadcast_every_few_steps_not_every_step(tmp_path, group):
    ctx = toy_context(tmp_path, epochs=2, save_steps=2)
    result = train_toy(ctx, ToyTask())
    assert result["global_step"] == 16 and result["world_size"] == 1
    # control before steps 1 and 9 (8 per epoch), and one broadcast after each evaluation (go on, stop
    # early or prune: one code), where the evaluation already synchronised the ranks
    evaluations = len(result["history"])  # before training, then after each epoch
    assert evaluations == 3
    assert len(group) == 16 // loop.CONTROL_EVERY + evaluations
    # save_steps needs no broadcast: every rank counts steps
    assert [p.name for p in ctx.run.checkpoints_newest_first()][:2] == ["step-00000016", "step-00000014"]


def test_a_cancel_still_arrives(tmp_path, group):
    ctx = toy_context(tmp_path, epochs=2)
    ctx.run.request("cancel")
    with pytest.raises(Cancelled):
        train_toy(ctx, ToyTask())
    assert ctx.run.last_checkpoint() is not None


def test_a_pause_sends_heartbeats_to_the_other_ranks(tmp_path, group):
    ctx = toy_context(tmp_path, epochs=1)
    ctx.run.request("pause")
    threading.Timer(2.5, lambda: ctx.run.request("resume")).start()
    t0 = time.monotonic()
    train_toy(ctx, ToyTask())
    assert time.monotonic() - t0 >= 2.5
    assert group.count(loop.PAUSED) >= 2 and group[-1] != loop.PAUSED  # then the decision itself


def test_logged_parts_are_every_ranks_mean_and_memory_their_maximum():
    """Rank 0's view of a two-rank window: the other rank (faked in the reductions) had parts 3.0 and 9000 MiB."""
    from types import SimpleNamespace

    from engine.events import StepLogged

    class TwoRanks:
        world = 2

        def sum_(self, t):
            other = t.clone()
            other[0], other[3], other[4] = 3.0, 9000.0, 3.0  # the other rank's loss, memory, part "mlm"
            return t + other

        def max_(self, t):
            return torch.maximum(t, torch.tensor([9000.0], dtype=t.dtype))

    events = []
    exp = SimpleNamespace(max_grad_norm=0.0)
    ctx = SimpleNamespace(exp=exp, emit=events.append)
    scheduler = SimpleNamespace(get_last_lr=lambda: [1e-3])
    lp = SimpleNamespace(
        ctx=ctx, dist=TwoRanks(), device=torch.device("cpu"), scheduler=scheduler, step=1, total_steps=2,
        session_t0=time.perf_counter(), session_steps=1,
    )
    window = loop.Window(torch.device("cpu"))
    window.add_step(torch.tensor(1.0), {"mlm": torch.tensor(1.0)})
    window.steps = 1
    loop.log_window(lp, window, 0.5)
    (logged,) = [e for e in events if isinstance(e, StepLogged)]
    assert logged.loss == 2.0 and logged.parts == {"mlm": 2.0}
    assert logged.memory_mb == 9000.0


PAUSED_RANK = """
import datetime, sys, threading, time
from pathlib import Path

import torch.distributed as dist
from support.toyloop import ToyTask, toy_context, train_toy

rank, folder = int(sys.argv[1]), Path(sys.argv[2])
dist.init_process_group(
    "gloo", init_method=f"file://{folder / 'pg'}", rank=rank, world_size=2,
    timeout=datetime.timedelta(seconds=float(sys.argv[3])),
)
ctx = toy_context(folder / f"rank{rank}", epochs=1)  # a run directory per rank: they share no files
if rank == 0:
    ctx.run.request("pause")
    threading.Timer(float(sys.argv[4]), lambda: ctx.run.request("resume")).start()
t0 = time.monotonic()
result = train_toy(ctx, ToyTask())
print(f"rank {rank}: {result['global_step']} steps, world {result['world_size']}, {time.monotonic() - t0:.1f} s")
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_a_pause_longer_than_the_collective_timeout_keeps_the_other_rank_alive(tmp_path):
    """Two gloo ranks with a 3 s collective timeout; rank 0 pauses for 6 s. The other rank waits in
    broadcasts that rank 0's heartbeats answer about every second, so it never times out, and both
    ranks then train to the end: a pause needs no collective timeout as long as the pause."""
    import os
    import subprocess
    import sys

    from support import PYTHONPATH

    (tmp_path / "rank0").mkdir()
    (tmp_path / "rank1").mkdir()
    env = dict(os.environ, PYTHONPATH=PYTHONPATH, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PAUSED_RANK, str(rank), str(tmp_path), "3", "6"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    for rank, out in enumerate(outs):
        line = out.strip().splitlines()[-1]
        assert line.startswith(f"rank {rank}: 4 steps, world 2"), out  # 8 batches, 2 ranks
        assert float(line.split(", ")[-1].split()[0]) >= 6.0  # both waited out the whole pause


def test_a_prune_rides_the_evaluation_broadcast(tmp_path, group):
    """A sweep's pruner (rank 0) stops the trial: the evaluation's one broadcast carries PRUNE, so the
    other ranks stop at the same epoch boundary without a collective of their own."""
    from engine.errors import Pruned
    from engine.events import EvalFinished

    ctx = toy_context(tmp_path, epochs=3)
    emit = ctx.emit

    def pruner(event):  # what the trial reporter does when the pruner says stop
        emit(event)
        if isinstance(event, EvalFinished) and event.epoch == 1:
            ctx.prune_reason = "trial 3 pruned at epoch 1"

    ctx.emit = pruner  # type: ignore[method-assign]
    with pytest.raises(Pruned):
        train_toy(ctx, ToyTask())
    assert loop.PRUNE in group and group.count(loop.PRUNE) == 1
