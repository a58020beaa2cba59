"""A launched job's ranks other than 0: they write nothing and leave control to rank 0."""

import pytest

from engine.errors import Cancelled
from engine.job.runner import JobContext
from engine.job.worker import OtherRankContext
from engine.store.runs import RunStore
from engine.store.writer import NullWriter


def test_other_ranks_never_read_control_requests(tmp_path):
    run = RunStore(tmp_path).create("exp", {"name": "exp"})
    run.request("cancel")
    ctx = OtherRankContext.of(None, None, run, None, resume=False)
    assert isinstance(ctx.writer, NullWriter) and ctx.sink is ctx.writer
    ctx.poll()  # rank 0 reads the cancel; the loop broadcasts its decision to this rank
    rank0 = JobContext(manifest=None, exp=None, run=run, writer=NullWriter(run), sink=NullWriter(run), store=None)
    with pytest.raises(Cancelled):
        rank0.poll()


def test_the_collective_timeout_is_bounded_to_two_hours(tmp_path, monkeypatch):
    """A real desync (a rank died, or took another branch) fails the job within 2 h, not after days:
    the timeout the worker passes to ``init_process_group``. Pauses need no longer one (rank 0 sends
    heartbeats while paused: tests/train/test_distributed_control.py)."""
    import datetime

    import torch.distributed as dist
    from support.fakes import MANIFEST, write_manifest

    from engine.job import worker
    from engine.manifest import load

    path = write_manifest(tmp_path, MANIFEST)
    name = load(path).experiments[0].name
    run = RunStore(tmp_path / "runs").create(name, {"name": name})
    seen = {}

    class Joined(Exception):
        pass

    def init_process_group(backend, timeout=None, **kwargs):
        seen.update(backend=backend, timeout=timeout)
        raise Joined  # stop here: the test needs only what the worker asked for

    monkeypatch.setattr(dist, "init_process_group", init_process_group)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(Joined):
        worker.main(["--lmc-manifest", str(path), "--lmc-experiment", name, "--lmc-run", str(run.path)])
    assert seen["timeout"] == datetime.timedelta(hours=2) == datetime.timedelta(seconds=worker.COLLECTIVE_TIMEOUT_S)
