"""Following a run's events from any process: offsets, torn lines, rewinds.

:class:`RunFollower` reads only the new complete lines of ``events.jsonl`` on
each :meth:`~RunFollower.poll`. A resumed job cuts the file back to its
checkpoint or replaces it (``engine.store.runs.RunWriter.discard_events``), which an
offset alone cannot tell: the follower remembers the bytes just before its
offset and, when they changed, starts over (``rewound`` is then True and
``generation`` bumps, so a reader drops what it built from the old history).
The console, ``lmconsole attach`` and the launcher parent all use this.
"""

from __future__ import annotations

import os

from engine.events import Event, from_dict
from engine.store.runs import BIG_EVENTS, Run, read_events_sampled

TAIL = 64


class RunFollower:
    def __init__(self, run: Run, offset: int = 0):
        self.run = run
        self.offset = offset
        self.generation = 0
        self._tail = b""
        if offset:
            self._remember_tail()

    def _rewound(self) -> bool:
        if self.offset == 0:
            return False
        try:
            with open(self.run.events_path, "rb") as fh:
                fh.seek(self.offset - len(self._tail))
                return fh.read(len(self._tail)) != self._tail
        except OSError:
            return True

    def _remember_tail(self) -> None:
        try:
            with open(self.run.events_path, "rb") as fh:
                start = max(0, self.offset - TAIL)
                fh.seek(start)
                self._tail = fh.read(self.offset - start)
        except OSError:
            self._tail = b""

    def poll(self) -> tuple[list[Event], bool]:
        """(new events, rewound): with ``rewound`` the events are the whole history again."""
        rewound = self._rewound()
        if rewound:
            self.offset, self._tail = 0, b""
            self.generation += 1
        before = self.offset
        if self.offset == 0 and (self.stamp() or (0,))[0] > BIG_EVENTS:
            # A long run: open it in time and memory that do not grow with the file (sampled steps + the tail).
            rows, self.offset = read_events_sampled(self.run.events_path)
            events = []
            for row in rows:
                try:
                    events.append(from_dict(row))
                except Exception:  # noqa: BLE001 - valid JSON but not an event
                    continue
        else:
            events, self.offset = self.run.follow(self.offset)  # skips torn and foreign lines
        if self.offset != before:
            self._remember_tail()
        return events, rewound

    def stamp(self):
        """(size, mtime) of events.jsonl, or None: cheap "did anything change" probe."""
        try:
            st = os.stat(self.run.events_path)
            return st.st_size, st.st_mtime_ns
        except OSError:
            return None
