"""A queue entry as typed data: the previous version's JSON in and out unchanged, bad states
refused with a message that says which, and the runner's arguments of a job from its entry."""

from __future__ import annotations

import dataclasses
import json

import pytest

from engine.files import atomic_write_json
from engine.queue.entry import EntryState, QueueEntry, QueueFormatError, QueueState
from engine.queue.queuefile import QueueFile
from engine.store.runs import Run, RunStore

# Entries as the previous version wrote them (keys and values copied from its queue files).
STARTED = {
    "depends_on": [1],
    "devices": [0, 2],
    "experiment": "finetune",
    "gpus": 2,
    "id": 2,
    "manifest": "/work/exp/experiments.toml",
    "pid": 4242,
    "reason": "",
    "resume": False,
    "run": "finetune/20260101-100000-000000-abcd",
    "seen_seq": 3,
    "started": 1767261600.125,
    "state": "started",
    "submitted": 1767261590.5,
}
QUEUED_SEED = {
    "depends_on": [],
    "devices": [],
    "experiment": "cls",
    "gpus": 0,
    "group": "cls-20260101-100000-ab12",
    "held": False,
    "id": 7,
    "manifest": "/work/exp/experiments.toml",
    "pid": None,
    "reason": "",
    "resume": False,
    "run": None,
    "seed": 2,
    "state": "queued",
    "submitted": 1767261590.75,
}
REMOVED = {
    "depends_on": [],
    "devices": [],
    "experiment": "params",
    "gpus": 0,
    "id": 3,
    "manifest": "/work/exp/experiments.toml",
    "pid": None,
    "reason": "params is no longer in experiments.toml",
    "resume": False,
    "run": None,
    "state": "removed",
    "submitted": 1767261591.0,
}


def _dump(data) -> str:
    return json.dumps(data, indent=2, sort_keys=True)  # as atomic_write_json writes it


@pytest.mark.parametrize("old", [STARTED, QUEUED_SEED, REMOVED], ids=["started", "seeded-held", "removed"])
def test_an_old_entry_round_trips_byte_for_byte(old):
    entry = QueueEntry.from_json(json.loads(_dump(old)))
    assert _dump(entry.to_json()) == _dump(old)


def test_an_old_queue_file_is_not_rewritten_and_stays_readable_by_the_old_reader(tmp_path):
    qf = QueueFile(tmp_path / "runs")
    qf.dir.mkdir(parents=True)
    old = {"format": 1, "next_id": 8, "jobs": [STARTED, QUEUED_SEED, REMOVED]}
    atomic_write_json(qf.path, old)
    before = qf.path.read_bytes()
    with qf.change() as state:
        assert [e.state for e in state.jobs] == [EntryState.STARTED, EntryState.QUEUED, EntryState.REMOVED]
    assert qf.path.read_bytes() == before  # nothing changed: nothing written
    with qf.change() as state:
        state.change(7, held=True)
    data = json.loads(qf.path.read_text())
    assert data["jobs"][1] == QUEUED_SEED | {"held": True}  # only the changed value differs
    assert data["jobs"][0] == STARTED and data["jobs"][2] == REMOVED and data["next_id"] == 8


def test_entries_built_by_this_version_carry_the_previous_versions_keys():
    state = QueueState()
    plain = state.add("params", "/m.toml", gpus=1, depends_on=[2])
    seeded = state.add("cls", "/m.toml", gpus=0, seed=2, group="cls-g")
    assert set(plain.to_json()) == set(REMOVED)
    assert set(seeded.to_json()) == set(REMOVED) | {"seed", "group"}
    assert (plain.id, seeded.id, state.next_id) == (1, 2, 3)
    assert QueueState.from_json(json.loads(_dump(state.to_json()))) == state


def test_keys_of_a_newer_version_are_kept():
    newer = STARTED | {"priority": 5}
    assert QueueEntry.from_json(newer).to_json() == newer


def test_an_unknown_state_is_set_apart_with_a_clear_reason(tmp_path):
    with pytest.raises(QueueFormatError, match=r"job #2: unknown state 'running' \(one of queued, started, removed\)"):
        QueueEntry.from_json(STARTED | {"state": "running"})
    qf = QueueFile(tmp_path / "runs")
    qf.dir.mkdir(parents=True)
    atomic_write_json(qf.path, {"format": 1, "next_id": 8, "jobs": [STARTED | {"state": "held"}, QUEUED_SEED]})
    state = qf.read()  # the other entries still read: one bad entry stops nothing
    assert [e.id for e in state.jobs] == [7]
    assert [q.reason for q in state.quarantined] == ["job #2: unknown state 'held' (one of queued, started, removed)"]


def test_a_missing_state_is_queued_and_a_bad_id_is_refused():
    assert QueueEntry.from_json({"id": 1, "experiment": "params"}).state is EntryState.QUEUED
    with pytest.raises(QueueFormatError, match="id must be a whole number"):
        QueueEntry.from_json({"id": "one", "experiment": "params"})


def test_runner_kwargs_of_a_seeded_entry(tmp_path):
    store = RunStore(tmp_path / "runs")
    entry = QueueEntry.from_json(QUEUED_SEED | {"run": "cls/20260101-100000-000000-ef01", "seen_seq": 0})
    kwargs = entry.runner_kwargs(store)
    options = kwargs["options"]
    assert kwargs == {"store": store, "options": options}
    assert (options.resuming, options.seen_seq, options.seed, options.group) == (
        False,
        0,
        2,
        "cls-20260101-100000-ab12",
    )
    assert isinstance(options.run, Run) and options.run.path == tmp_path / "runs" / "cls" / "20260101-100000-000000-ef01"


def test_runner_kwargs_of_a_resumed_entry(tmp_path):
    store = RunStore(tmp_path / "runs")
    entry = QueueEntry.from_json(STARTED).requeued(resume=True)
    assert entry.state is EntryState.QUEUED and entry.devices == () and entry.pid is None
    entry = dataclasses.replace(entry, state=EntryState.STARTED, seen_seq=5)
    options = entry.runner_kwargs(store)["options"]
    assert options.resuming is True and options.seen_seq == 5 and options.seed is None and options.group == ""
    assert options.run.path == tmp_path / "runs" / "finetune" / "20260101-100000-000000-abcd"


def test_an_entry_without_a_run_has_no_runner_arguments(tmp_path):
    with pytest.raises(QueueFormatError, match="job #7 has no run directory yet"):
        QueueEntry.from_json(QUEUED_SEED).runner_kwargs(RunStore(tmp_path))
