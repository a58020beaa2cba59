"""Non-finite losses, injected into the toy task: what each ``nan_policy`` logs, saves and ends with."""

import math

import torch
from support.toyloop import ToyTask, toy_context, train_toy

from engine.errors import JobError
from engine.events import StepLogged


def _logged(run) -> list[StepLogged]:
    return [e for e in run.events() if isinstance(e, StepLogged)]


def _mean_f32(values) -> float:
    """The loop's window arithmetic: float32 sums on the device, divided on the host."""
    total = torch.zeros((), dtype=torch.float32)
    for v in values:
        total += torch.tensor(v, dtype=torch.float32)
    return total.item() / len(values)


def test_skip_logs_the_mean_of_the_steps_it_took(tmp_path):
    """Batch 2 of 8 gives NaN: the first window (steps 1-4) logs the mean of the three finite losses."""
    task = ToyTask(bad=((0, 2),))
    ctx = toy_context(tmp_path, nan_policy="skip", logging_steps=4)
    result = train_toy(ctx, task)
    losses = [loss for _, _, loss in task.losses]
    assert math.isnan(losses[2]) and result["global_step"] == 7
    first, second = _logged(ctx.run)
    assert first.step == 4 and first.loss == _mean_f32(losses[0:2] + losses[3:5])
    assert first.parts["mse"] == _mean_f32(losses[0:2] + losses[3:5])
    assert second.step == 7 and second.loss == _mean_f32(losses[5:8])
    # the epoch's train loss: the logged means weighted by their steps, the skipped one not counted
    train_loss = ctx.run.read_table("epochs").column("train_loss")[-1]
    assert math.isclose(train_loss, (first.loss * 4 + second.loss * 3) / 7, rel_tol=1e-12)


def test_stop_never_saves_a_checkpoint_after_a_non_finite_step(tmp_path):
    """Batch 3 gives NaN and a checkpoint is due after step 4, before the next NaN check (step 8):
    the job fails there, and the newest checkpoint holds finite weights."""
    task = ToyTask(bad=((0, 3),))
    ctx = toy_context(tmp_path, nan_policy="stop", logging_steps=8, save_steps=2, save_total_limit=0)
    try:
        train_toy(ctx, task)
        raise AssertionError("the loop went on after a NaN loss")
    except JobError as exc:
        assert "NaN/inf" in exc.reason
    saved = ctx.run.checkpoints_newest_first()
    assert [p.name for p in saved] == ["step-00000002"]  # step 4 (after the NaN step) was never saved
    from safetensors.torch import load_file

    weights = load_file(str(saved[0] / "model.safetensors"))
    assert all(bool(torch.isfinite(t).all()) for t in weights.values())
