"""One-line bars: the title bar (no clock: snapshots stay stable) and the status line."""

from __future__ import annotations

from textual.widgets import Static


class TitleBar(Static):
    DEFAULT_CSS = """
    TitleBar { height: 1; background: $panel; color: $text; text-style: bold; padding: 0 1; }
    """


class StatusLine(Static):
    """The last thing that happened, or what the highlighted row is waiting for: wrapped, never cut mid-word."""

    DEFAULT_CSS = """
    StatusLine { height: auto; max-height: 3; padding: 0 1; background: $boost; color: $text-muted; }
    StatusLine.-error { color: $text-error; text-style: bold; }
    StatusLine.-ok { color: $text-success; }
    """

    def say(self, text: str, level: str = "info") -> None:
        self.set_class(level == "error", "-error")
        self.set_class(level == "ok", "-ok")
        self.update(text.replace("\n", " "))
