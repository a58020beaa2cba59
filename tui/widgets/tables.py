"""Engine tables (:class:`engine.tables.Table`) in a DataTable, numbers right-aligned."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from engine.tables import fmt_num


def cell(value) -> Text | str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Text(fmt_num(value), justify="right")
    return "" if value is None else str(value)


def fill(table: DataTable, columns, rows, keys=None) -> None:
    """Replace a DataTable's content (columns and rows)."""
    table.clear(columns=True)
    for col in columns:
        table.add_column(str(col), key=str(col))
    for i, row in enumerate(rows):
        table.add_row(*(cell(v) for v in row), key=(keys[i] if keys else None))


class TableView(Vertical):
    """A title line, the table, and its notes (e.g. parameter totals)."""

    DEFAULT_CSS = """
    TableView { height: 1fr; }
    TableView > .table-title { height: 1; text-style: bold; }
    TableView > DataTable { height: 1fr; }
    TableView > .table-notes { height: auto; max-height: 3; color: $text-muted; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.table = None  # the engine Table shown, for export

    def compose(self) -> ComposeResult:
        yield Static("", classes="table-title")
        yield DataTable(cursor_type="row", zebra_stripes=True)
        yield Static("", classes="table-notes")

    def show(self, table, message: str = "") -> None:
        self.table = table
        title = self.query_one(".table-title", Static)
        notes = self.query_one(".table-notes", Static)
        grid = self.query_one(DataTable)
        if table is None:
            title.update(message)
            notes.update("")
            grid.clear(columns=True)
            return
        title.update(f"{table.title or table.name}  [{table.name}, {len(table.rows)} rows]")
        notes.update("\n".join(table.notes))
        fill(grid, table.columns, table.rows)
