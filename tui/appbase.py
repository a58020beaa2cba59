"""What the screens know of the console app: its typed state, without the app's module.

:class:`tui.app.LMConsole` imports the screens (on first use); the screens name this class
instead (``self.app``'s type), so the two never import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App

if TYPE_CHECKING:
    from engine.manifest import Manifest
    from engine.queue.jobqueue import JobQueue
    from engine.store.runs import RunStore


class ConsoleApp(App[str]):
    """The state every screen reads: set by :meth:`tui.app.LMConsole.on_mount` before a screen
    that reads it exists (the manifest error screen reads none of it)."""

    manifest: Manifest
    queue: JobQueue
    store: RunStore
    last_export: tuple[Path, list[Path]] | None  # (folder, files) of the last export, for tests and the status line
    reload_manifest: Callable[[], None]  # read the manifest again; a banner or a screen shows its problems
