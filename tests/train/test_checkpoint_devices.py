"""Resuming where the process sees other devices or runs another number of ranks than the one that saved.

No GPU here: the CUDA RNG API is faked (``torch.cuda.*``), the way torch behaves on a box with
that many visible GPUs: ``set_rng_state`` for an index past the visible ones raises IndexError.
"""

import json

import pytest
import torch
from support.toyloop import ToyTask, toy_context, train_toy

from engine.errors import JobError
from engine.train.loop import load_checkpoint, make_optimizer, make_schedule

CPU = torch.device("cpu")


class FakeCudaRng:
    """``visible`` GPUs, each with its own RNG state (a ByteTensor)."""

    def __init__(self, visible: int):
        self.visible = visible
        self.states = {i: torch.full((16,), i, dtype=torch.uint8) for i in range(visible)}

    def install(self, monkeypatch) -> None:
        c = torch.cuda
        monkeypatch.setattr(c, "is_available", lambda: True)
        monkeypatch.setattr(c, "device_count", lambda: self.visible)
        monkeypatch.setattr(c, "current_device", lambda: 0)
        monkeypatch.setattr(c, "get_rng_state_all", lambda: [self.states[i].clone() for i in range(self.visible)])
        monkeypatch.setattr(c, "get_rng_state", lambda device="cuda": self.states[0].clone())
        monkeypatch.setattr(c, "set_rng_state", self.set_rng_state)
        monkeypatch.setattr(c, "set_rng_state_all", self.set_rng_state_all)

    def set_rng_state_all(self, states) -> None:
        for i, state in enumerate(states):  # torch's own loop
            self.set_rng_state(state, i)

    def set_rng_state(self, state, device=0) -> None:
        index = device if isinstance(device, int) else 0
        if index >= self.visible:
            raise IndexError("list index out of range")  # what torch's lazy CUDA init raises
        self.states[index] = state.clone()


def test_a_checkpoint_saved_with_8_gpus_visible_resumes_with_one(tmp_path, monkeypatch):
    ctx = toy_context(tmp_path, save_steps=4)
    eight = FakeCudaRng(8)
    eight.install(monkeypatch)
    train_toy(ctx, ToyTask())
    path = ctx.run.last_checkpoint()
    assert len(torch.load(path / "optimizer.pt", weights_only=True)["cuda_rng"]) == 8

    one = FakeCudaRng(1)  # the queue shows the resumed job one GPU
    one.install(monkeypatch)
    model = ToyTask().model
    opt = make_optimizer(model, ctx.exp, CPU)
    state = load_checkpoint(path, model, opt, make_schedule(opt, 0, 8))  # raised "damaged" before
    assert state["global_step"] == 8
    assert torch.equal(one.states[0], eight.states[0])  # device 0 continues device 0's stream


def test_a_resume_with_another_number_of_ranks_is_refused(tmp_path):
    ctx = toy_context(tmp_path, save_steps=4, epochs=2)
    train_toy(ctx, ToyTask())
    path = ctx.run.last_checkpoint()
    state = json.loads((path / "state.json").read_text())
    state["world_size"] = 2  # as if saved under torchrun with nproc_per_node = 2
    (path / "state.json").write_text(json.dumps(state))
    again = toy_context(tmp_path, run=ctx.run, save_steps=4, epochs=3)
    with pytest.raises(JobError) as e:
        train_toy(again, ToyTask())
    assert "saved by 2 training process(es); this attempt runs 1" in e.value.reason
    assert "nproc_per_node = 2" in e.value.hint
