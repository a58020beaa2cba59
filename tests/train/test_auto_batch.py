"""``auto_find_batch_size``: an out-of-memory error, injected into the toy task's forward, splits the
micro-batches and restarts from the last checkpoint (or the start); below a batch of 1 the job fails."""

import pytest
import torch
from support.toyloop import ToyTask, toy_context, train_toy

from engine.errors import JobError
from engine.events import BatchReduced, StepLogged
from engine.store.runs import RunStore
from engine.train.oom import CONFIG_KEY, is_out_of_memory, next_split, split_batch


class Fits(ToyTask):
    """Runs out of memory on a forward of more than ``rows`` sequences, from forward call ``after`` on."""

    def __init__(self, rows: int, after: int = 0, error: type[Exception] = torch.OutOfMemoryError):
        super().__init__()
        self.rows, self.after, self.error, self.calls = rows, after, error, 0

    def loss(self, model, batch):
        self.calls += 1
        if batch["x"].shape[0] > self.rows and self.calls > self.after:
            raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().loss(model, batch)


def _curve(run):
    return [(e.step, e.loss) for e in run.events() if isinstance(e, StepLogged)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Two epochs of the toy (8 steps of 4 rows each) that fit."""
    ctx = toy_context(tmp_path_factory.mktemp("ref"), epochs=2)
    return train_toy(ctx, ToyTask()), _curve(ctx.run)


def test_out_of_memory_before_any_checkpoint_restarts_from_the_start_with_half_the_batch(tmp_path, reference):
    ctx = toy_context(tmp_path, epochs=2, auto_find_batch_size=True, batch_size=4)
    result = train_toy(ctx, Fits(rows=2, after=5))  # step 6 of the first epoch: no checkpoint yet
    want, want_curve = reference
    assert result["global_step"] == want["global_step"] == 16, "the same optimizer steps"
    assert result["final"]["eval_mse"] == pytest.approx(want["final"]["eval_mse"], rel=1e-6)
    got = _curve(ctx.run)
    assert [s for s, _ in got] == [s for s, _ in want_curve], "each step logged once: the failed start is gone"
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in want_curve], rel=1e-6)
    (event,) = [e for e in ctx.run.events() if isinstance(e, BatchReduced)]
    assert (event.step, event.batch_size, event.gradient_accumulation_steps) == (5, 2, 2)
    assert "out of memory" in event.error
    record = ctx.run.config()[CONFIG_KEY]
    assert (record["batch_size"], record["gradient_accumulation_steps"], record["split"]) == (2, 2, 2)
    assert ctx.run.config()["batch_size"] == 4, "the data's batch stays the configured one"


def test_out_of_memory_later_restarts_from_the_last_checkpoint_and_a_resume_keeps_the_split(tmp_path, reference):
    ctx = toy_context(tmp_path, epochs=2, auto_find_batch_size=True, batch_size=4, save_steps=4)
    task = Fits(rows=2, after=10)  # fails at step 11, after the checkpoint of step 8
    result = train_toy(ctx, task)
    assert result["global_step"] == 16
    assert [s for s, _ in _curve(ctx.run)] == [s for s, _ in reference[1]]
    (event,) = [e for e in ctx.run.events() if isinstance(e, BatchReduced)]
    assert event.step == 10
    assert any("restarted from step 8" in e.message for e in ctx.run.events() if hasattr(e, "message"))
    # a later attempt (a resume) starts with the smaller batch: it never meets the error again
    again = toy_context(tmp_path, run=ctx.run, epochs=2, auto_find_batch_size=True, batch_size=4, save_steps=4)
    import shutil

    shutil.rmtree(ctx.run.checkpoints / "step-00000016")
    strict = Fits(rows=2, after=0)
    train_toy(again, strict)
    assert [e for e in again.run.events() if isinstance(e, BatchReduced)] == [event]


def test_below_a_batch_of_one_the_job_fails_saying_what_to_lower(tmp_path):
    ctx = toy_context(tmp_path, auto_find_batch_size=True, batch_size=4)
    with pytest.raises(JobError) as info:
        train_toy(ctx, Fits(rows=0, error=RuntimeError))  # RuntimeError("CUDA out of memory") counts too
    assert "out of memory even with a per-device batch of 1" in info.value.reason
    assert "max_seq_length" in info.value.hint
    splits = [c["split"] for c in RunStore(tmp_path / "runs").latest("pre").config()[CONFIG_KEY]["changes"]]
    assert splits == [2, 4], "4 -> 2 -> 1, then no smaller batch"


def test_without_the_key_out_of_memory_fails_the_job_as_before(tmp_path):
    with pytest.raises(torch.OutOfMemoryError):
        train_toy(toy_context(tmp_path), Fits(rows=2))


def test_the_split_and_the_error_test():
    assert [next_split(32, s) for s in (1, 2, 4, 8, 16, 32)] == [2, 4, 8, 16, 32, None]
    assert next_split(24, 8) == 24, "3 per device -> 1"
    batch = {"x": torch.arange(10).reshape(5, 2), "key": torch.tensor([7, 1]), "name": "b"}
    pieces = split_batch(batch, 5, 2)
    assert [p["x"].shape[0] for p in pieces] == [3, 2] and torch.equal(torch.cat([p["x"] for p in pieces]), batch["x"])
    assert all(p["key"] is batch["key"] and p["name"] == "b" for p in pieces), "non-row values go whole"
    assert len(split_batch(batch, 5, 8)) == 5 and split_batch(batch, 5, 1) == [batch]
    assert is_out_of_memory(torch.OutOfMemoryError("x")) and is_out_of_memory(RuntimeError("CUDA out of memory."))
    assert not is_out_of_memory(RuntimeError("shape mismatch")) and not is_out_of_memory(ValueError("out of memory"))


def test_out_of_memory_in_an_evaluation_names_eval_batch_size(tmp_path):
    class EvalTooBig(ToyTask):
        def evaluate(self, model, epoch):
            raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(JobError, match="out of memory while evaluating") as info:
        train_toy(toy_context(tmp_path, auto_find_batch_size=True), EvalTooBig())
    assert "eval_batch_size" in info.value.hint
