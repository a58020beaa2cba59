"""The writer a job writes its run through: the null writer leaves the run directory as it was."""

from engine.events import LogEmitted, StatusChanged
from engine.store.runs import RunStore
from engine.store.writer import NullWriter
from engine.tables import Table


def _listing(path):
    return sorted((p.relative_to(path), p.stat().st_size) for p in path.rglob("*"))


def test_null_writer_writes_nothing(tmp_path):
    run = RunStore(tmp_path).create("exp", {"name": "exp"})
    before = _listing(run.path)
    w = NullWriter(run)
    w.emit(LogEmitted(level="info", message="hello"))
    w.emit(StatusChanged(status="failed", reason="no"))
    w.set_status("failed", "no")
    w.write_results({"final": {}})
    w.discard_events(0)
    path = w.write_table(Table(name="epochs", columns=("epoch",), rows=[(0,)]))
    w.close()
    assert path == run.tables_dir / "epochs.json"  # where the run's owner writes that table
    assert w.opened_at == 0
    assert _listing(run.path) == before
