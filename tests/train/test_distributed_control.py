"""Control under DDP: rank 0's decisions reach the other ranks every CONTROL_EVERY steps (a broadcast is a
host sync), and a pause sends heartbeats, so no collective waits out the pause (its timeout is bounded).

One process in a gloo group stands for rank 0 of a distributed job: the loop takes its distributed path.
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
    assert len(group) == 16 // loop.CONTROL_EVERY  # before steps 1 and 9 (8 per epoch)
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
