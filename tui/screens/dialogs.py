"""Modal dialogs: confirm (destructive actions), quit while jobs run, export options."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from engine.tables import FORMATS


class ConfirmDialog(ModalScreen[bool]):
    """Yes/no; `y` / `n` / esc. The default button is No."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, question: str, yes: str = "Yes"):
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="question")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class _FormDialog(ModalScreen):
    """A form that enter or its submit button hands back once ``_choice()`` accepts it; esc or Cancel dismiss None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def _choice(self):
        raise NotImplementedError

    @on(Input.Submitted)
    def _submitted(self) -> None:
        choice = self._choice()
        if choice:
            self.dismiss(choice)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
            return
        choice = self._choice()
        if choice:
            self.dismiss(choice)

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class ExportChoice:
    folder: str
    formats: tuple[str, ...]


FORMAT_LABELS = {"csv": "CSV", "md": "Markdown", "latex": "LaTeX", "json": "JSON"}


class ExportDialog(_FormDialog):
    """Folder and formats; enter exports, esc cancels."""

    def __init__(self, what: str, folder: str = "exports"):
        super().__init__()
        self.what = what
        self.folder = folder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"Export {self.what}", classes="question")
            yield Label("Folder (enter to export, tab for formats):")
            yield Input(self.folder, id="folder")
            with Horizontal(classes="formats"):
                for fmt in FORMATS:
                    yield Checkbox(FORMAT_LABELS[fmt], True, id=f"fmt-{fmt}")
            with Horizontal(classes="buttons"):
                yield Button("Export", id="export", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#folder", Input).focus()

    def _choice(self) -> ExportChoice | None:
        formats = tuple(f for f in FORMATS if self.query_one(f"#fmt-{f}", Checkbox).value)
        folder = self.query_one("#folder", Input).value.strip() or "exports"
        if not formats:
            self.notify("choose at least one format", severity="warning")
            return None
        return ExportChoice(folder, formats)


@dataclass
class PushChoice:
    repo: str
    private: bool
    revision: str
    dry_run: bool


class PushDialog(_FormDialog):
    """Repository, visibility and branch for a push; the next step confirms with the file list."""

    def __init__(self, what: str, repo: str = ""):
        super().__init__()
        self.what = what
        self.repo = repo

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"Push {self.what} to the Hugging Face Hub", classes="question")
            yield Label("Repository OWNER/NAME (enter to continue):")
            yield Input(self.repo, id="repo", placeholder="OWNER/NAME")
            yield Label("Branch (empty = main):")
            yield Input("", id="revision")
            with Horizontal(classes="formats"):
                yield Checkbox("Private", False, id="private")
                yield Checkbox("Dry run (write the folder only)", False, id="dry")
            with Horizontal(classes="buttons"):
                yield Button("Continue", id="ok", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#repo", Input).focus()

    def _choice(self) -> PushChoice | None:
        repo = self.query_one("#repo", Input).value.strip()
        if repo.count("/") != 1 or not all(repo.split("/")):
            self.notify("repository must be OWNER/NAME", severity="warning")
            return None
        return PushChoice(
            repo,
            self.query_one("#private", Checkbox).value,
            self.query_one("#revision", Input).value.strip(),
            self.query_one("#dry", Checkbox).value,
        )


class InputDialog(ModalScreen["str | None"]):
    """One line of text (a run's tags or note): enter keeps it, esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, value: str = "", hint: str = ""):
        super().__init__()
        self.question, self.value, self.hint = question, value, hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="question")
            if self.hint:
                yield Static(self.hint, classes="help")
            yield Input(self.value, id="text")

    def on_mount(self) -> None:
        self.query_one("#text", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextDialog(ModalScreen[None]):
    """A long text in full (a traceback, a whole log line or note), scrollable; esc / enter / q closes."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("enter", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(self, title: str, text: str):
        super().__init__()
        self.title_text, self.text = title, text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog text-dialog"):
            yield Static(self.title_text, classes="question", markup=False)
            with VerticalScroll(classes="text-body"):
                yield Static(self.text, markup=False)
            yield Static("esc: close  ·  arrows / page keys scroll", classes="help")

    def on_mount(self) -> None:
        self.query_one(".text-body").focus()

    def action_close(self) -> None:
        self.dismiss(None)
