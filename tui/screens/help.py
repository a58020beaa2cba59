"""`?`: every key of the console, by screen, generated from the bindings themselves."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

EXTRA = {
    "Everywhere": [
        ("ctrl+q", "Quit (jobs go on in their own processes)"),
        ("ctrl+p", "command palette: every action by name"),
        ("tab", "next widget (tab bar, lists)"),
    ],
    "Experiments": [("enter", "open the latest run of the experiment")],
    "Jobs": [("enter", "open the job's run view")],
    "Runs": [("enter", "open the run")],
    "Run view": [
        ("v", "loss panel: total loss, each part, all together"),
        ("g", "small panel: learning rate, then each CPU/RAM/GPU figure the job sampled"),
        ("enter", "a failed run: its traceback"),
        ("left / right", "results: scroll the epochs"),
    ],
    "Export dialog": [
        ("enter", "export to the folder"),
        ("tab / space", "move to / toggle a format"),
        ("esc", "cancel"),
    ],
}


def sections(app) -> list[tuple[str, list[tuple[str, str]]]]:
    from ..widgets.experiments import ExperimentsPane
    from ..widgets.jobs import JobsPane
    from ..widgets.runs import RunsPane
    from .compare import CompareScreen
    from .main import MainScreen
    from .run import RunScreen

    groups = [
        ("Everywhere", type(app).BINDINGS),
        ("Main screen", MainScreen.BINDINGS),
        ("Experiments", ExperimentsPane.BINDINGS),
        ("Jobs", JobsPane.BINDINGS),
        ("Runs", RunsPane.BINDINGS),
        ("Run view", RunScreen.BINDINGS),
        ("Compare", CompareScreen.BINDINGS),
        ("Export dialog", []),
    ]
    out = []
    for title, bindings in groups:
        rows = []
        for b in bindings:
            if isinstance(b, Binding) and b.description:
                rows.append((app.get_key_display(b), b.description))
        rows += EXTRA.get(title, [])
        out.append((title, rows))
    return out


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        lines = ["[b]lmconsole keys[/b]   (esc closes)", ""]
        for title, rows in sections(self.app):
            lines.append(f"[b]{title}[/b]")
            lines += [f"  {key:<14} {desc}".replace("[", "\\[") for key, desc in rows]  # keys such as [ ]
            lines.append("")
        lines.append(
            "Jobs run in their own processes: quitting leaves them going; any console or `lmconsole queue` sees them."
        )
        with VerticalScroll(classes="dialog help-dialog"):
            yield Static("\n".join(lines), markup=True)

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)
