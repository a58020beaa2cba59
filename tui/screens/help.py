"""`?`: every key of the console, by screen, generated from the bindings themselves.

One row per action: all the keys that do it (``K / shift+up``), then what it does (the
binding's description and tooltip). :data:`EXTRA` holds only what no binding says
(keys of built-in widgets, such as enter on a list), never a key a binding already has.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

EXTRA = {
    "Everywhere": [
        ("ctrl+q", "Quit (jobs go on in their own processes)"),
        ("ctrl+p", "command palette: this screen's actions by name, and each job's"),
        ("tab", "next widget (tab bar, lists)"),
    ],
    "Experiments": [("enter", "open the latest run of the experiment")],
    "Jobs": [("enter", "open the job's run view")],
    "Runs": [("enter", "open the run")],
    "Run view": [("left / right", "results: scroll the epochs; tables: from the list into the table and back")],
    "Export dialog": [
        ("enter", "export to the folder"),
        ("tab / space", "move to / toggle a format"),
        ("esc", "cancel"),
    ],
}


def binding_rows(app, bindings) -> list[tuple[str, str]]:
    """(keys, what they do) per action of ``bindings``: keys that share an action share a row."""
    by_action: dict[str, tuple[list[str], str]] = {}
    for b in Binding.make_bindings(b for b in bindings if isinstance(b, Binding)):
        if not b.description:
            continue
        what = f"{b.description}: {b.tooltip}" if b.tooltip else b.description
        keys, _ = by_action.setdefault(b.action, ([], what))
        # the key itself, not a footer's key_display, so no row claims another row's key
        key = app.get_key_display(Binding(b.key, b.action))
        if key not in keys:
            keys.append(key)
    return [(" / ".join(keys), what) for keys, what in by_action.values()]


def sections(app) -> list[tuple[str, list[tuple[str, str]]]]:
    from ..widgets.examples import ExamplesPane
    from ..widgets.experiments import ExperimentsPane
    from ..widgets.jobs import JobsPane
    from ..widgets.runs import RunsPane
    from .compare import CompareScreen
    from .main import MainScreen
    from .run import RunScreen
    from .sweep import SweepScreen

    groups = [
        ("Everywhere", type(app).BINDINGS),
        ("Main screen", MainScreen.BINDINGS),
        ("Experiments", ExperimentsPane.BINDINGS),
        ("Jobs", JobsPane.BINDINGS),
        ("Runs", RunsPane.BINDINGS),
        ("Run view", RunScreen.BINDINGS),
        ("Examples tab (run view, 5)", ExamplesPane.BINDINGS),
        ("Compare", CompareScreen.BINDINGS),
        ("Sweep view (enter on a sweep)", SweepScreen.BINDINGS),
        ("Export dialog", []),
    ]
    return [(title, binding_rows(app, bindings) + EXTRA.get(title, [])) for title, bindings in groups]


def help_renderable(app) -> Group:
    """The help as a key column and a description column: a long description wraps in its own column."""
    parts: list = [Text.from_markup("[b]lmconsole keys[/b]   (esc closes)"), Text("")]
    for title, rows in sections(app):
        parts.append(Text(title, style="bold"))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=16, no_wrap=True)  # two spaces of indent + the longest key group
        grid.add_column(ratio=1)
        for keys, what in rows:
            grid.add_row(Text("  " + keys), Text(what))
        parts += [grid, Text("")]
    parts.append(
        Text("Jobs run in their own processes: quitting leaves them going; any console or `lmconsole queue` sees them.")
    )
    return Group(*parts)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help-dialog"):
            yield Static(help_renderable(self.app))

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)
