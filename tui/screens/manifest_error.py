"""A manifest that does not load: its problems, one per line, and `r` to reload after fixing it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..widgets.bars import TitleBar

if TYPE_CHECKING:
    from textual import getters

    from ..appbase import ConsoleApp


class ManifestErrorScreen(Screen):
    if TYPE_CHECKING:  # self.app is this console (runtime: Textual's own property)
        app = getters.app(ConsoleApp)

    BINDINGS = [Binding("r", "reload", "Reload manifest")]

    def __init__(self, error):
        super().__init__()
        self.error = error

    def compose(self) -> ComposeResult:
        yield TitleBar("lmconsole · the manifest has problems", id="title")
        with VerticalScroll(id="problems"):
            yield Static(self._text(), id="problems-text")
        yield Footer(compact=True, show_command_palette=False)

    def _text(self) -> str:
        err = self.error
        n = len(err.problems)
        lines = [f"[b]{escape(err.path.name)}[/b]: {n} problem{'s' if n != 1 else ''} ({escape(str(err.path))})", ""]
        lines += [f"  • {escape(p)}" for p in err.problems]
        lines += [
            "",
            "Fix the file, then press [b]r[/b] to reload (q quits). "
            "`lmconsole check` prints the same list; the README lists every key.",
        ]
        return "\n".join(lines)

    def show_error(self, error) -> None:
        self.error = error
        self.query_one("#problems-text", Static).update(self._text())

    def action_reload(self) -> None:
        self.app.reload_manifest()
