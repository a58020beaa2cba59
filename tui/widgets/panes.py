"""Base of the list panes (experiments, jobs, runs): a DataTable updated in place, a `/` filter, marks.

Panes are views: the screen passes data down (``set_rows``) and panes send
requests up as messages; they never call the engine themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Static

MARK = "●"


@dataclass
class Note(Message):
    """A one-line remark for the status line (e.g. why the highlighted job failed)."""

    text: str
    level: str = "info"
    source: str = ""  # id of the pane: only the visible pane's notes are shown


def sync_rows(table: DataTable, rows: list[tuple[str, list]]) -> None:
    """Show ``rows`` [(key, cells)], updating cells in place when the row keys are unchanged.

    DataTable re-layouts on every removal, so a full rebuild only happens when rows
    appear, vanish or move; the cursor stays on the same key.
    """
    keys = [k for k, _ in rows]
    current = [r.key.value for r in table.ordered_rows]
    col_keys = list(table.columns.keys())
    if keys == current:
        for key, cells in rows:
            old = table.get_row(key)
            for i, value in enumerate(cells):
                if i < len(old) and old[i] != value:
                    table.update_cell(key, col_keys[i], value, update_width=True)
        return
    cursor_key = current[table.cursor_row] if 0 <= table.cursor_row < len(current) else None
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if cursor_key in keys:
        table.move_cursor(row=keys.index(cursor_key), animate=False)


class TablePane(Vertical):
    """A titled DataTable with an optional filter line and marks (`space`)."""

    COLUMNS: tuple[str, ...] = ()
    EMPTY = "nothing here yet"
    FILTER_HINT = "filter"

    FILTER_BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear", "Clear filter/marks", show=False),
    ]

    DEFAULT_CSS = """
    TablePane { height: 1fr; }
    TablePane > DataTable { height: 1fr; }
    TablePane > .empty { height: auto; color: $text-muted; padding: 0 1; }
    TablePane > Input { dock: bottom; display: none; height: 1; border: none; padding: 0 1; }
    TablePane > Input.-shown { display: block; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.marked: set[str] = set()
        self.filter_text = ""
        self._rows: list[tuple[str, list]] = []
        self._haystack: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield Static(self.EMPTY, classes="empty")
        table = DataTable(cursor_type="row", zebra_stripes=True)
        for col in self.COLUMNS:
            table.add_column(col, key=col)
        yield table
        yield Input(placeholder=self.FILTER_HINT)

    @property
    def table(self) -> DataTable:
        return self.query_one(DataTable)

    def focus_table(self) -> None:
        self.table.focus()

    @property
    def cursor_key(self) -> str | None:
        table = self.table
        if not table.row_count or table.cursor_row < 0:
            return None
        return table.ordered_rows[min(table.cursor_row, table.row_count - 1)].key.value

    # -- data ---------------------------------------------------------------------
    def set_rows(self, rows: list[tuple[str, list, str]]) -> None:
        """rows: (key, cells without the mark column, text to filter on)."""
        self._rows = [(k, cells) for k, cells, _ in rows]
        self._haystack = {k: text.lower() for k, _, text in rows}
        self._show()

    def _show(self) -> None:
        has_mark = bool(self.COLUMNS) and self.COLUMNS[0] == " "
        shown = []
        for key, cells in self._rows:
            if self.filter_text and not self.matches_filter(key):
                continue
            if has_mark:
                cells = [Text(MARK if key in self.marked else " ")] + list(cells)
            shown.append((key, cells))
        sync_rows(self.table, shown)
        empty = self.query_one(".empty", Static)
        empty.display = not shown
        if not shown:
            empty.update(f"no match for '{self.filter_text}' (esc clears)" if self._rows else self.EMPTY)

    def matches_filter(self, key: str) -> bool:
        """Whether row ``key`` passes the filter line (plain text in the row's filter text; panes may override)."""
        return self.filter_text.lower() in self._haystack.get(key, "")

    # -- marks and filter -------------------------------------------------------
    def marked_or_current(self) -> list[str]:
        order = [k for k, _ in self._rows]
        if self.marked:
            return [k for k in order if k in self.marked]
        return [self.cursor_key] if self.cursor_key else []

    def action_mark(self) -> None:
        key = self.cursor_key
        if key is None:
            return
        self.marked ^= {key}
        self._show()
        self.table.action_cursor_down()

    def action_filter(self) -> None:
        box = self.query_one(Input)
        box.add_class("-shown")
        box.value = self.filter_text
        box.focus()

    def action_clear(self) -> None:
        if self.filter_text:
            self.filter_text = ""
        elif self.marked:
            self.marked.clear()
        self._show()

    @on(Input.Changed)
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self._show()

    @on(Input.Submitted)
    def _filter_done(self, event: Input.Submitted) -> None:
        event.input.remove_class("-shown")
        self.focus_table()

    def on_key(self, event) -> None:
        # esc in the filter line: drop the filter and go back to the table.
        box = self.query_one(Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            box.value = ""
            box.remove_class("-shown")
            self.focus_table()
