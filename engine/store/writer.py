"""What a job writes its run through: the :class:`EventWriter` protocol, and a writer that writes nothing.

:class:`engine.store.runs.RunWriter` is the real one (the owner of a run directory);
:class:`NullWriter` stands in for it where a process takes part in a job without owning
its run (the non-zero ranks of a launched job: rank 0 writes for all of them).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from engine.events import Event, EventSink
from engine.tables import Table

if TYPE_CHECKING:
    from engine.store.runs import Run


class EventWriter(EventSink, Protocol):
    """A run's writer as a job uses it: events, tables, results, status, and the rewind of a resume."""

    opened_at: int  # the offset in events.jsonl where this attempt's events begin

    def write_table(self, table: Table) -> Path:
        """Write ``tables/<name>.json``; returns its path."""
        ...

    def write_results(self, results: dict) -> None: ...

    def set_status(self, status: str, reason: str = "") -> None: ...

    def discard_events(self, start: int, end: int | None = None) -> None:
        """Move bytes ``[start, end)`` of ``events.jsonl`` to ``events.discarded.jsonl``."""
        ...

    def close(self) -> None: ...


class NullWriter:
    """An :class:`EventWriter` that writes nothing: a process that takes part in a job but does not own its run."""

    opened_at = 0

    def __init__(self, run: Run):
        self.run = run

    def emit(self, event: Event) -> None:
        pass

    def write_table(self, table: Table) -> Path:
        return self.run.tables_dir / f"{table.name}.json"  # where the run's owner writes it

    def write_results(self, results: dict) -> None:
        pass

    def set_status(self, status: str, reason: str = "") -> None:
        pass

    def discard_events(self, start: int, end: int | None = None) -> None:
        pass

    def close(self) -> None:
        pass
