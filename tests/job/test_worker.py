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
