"""Engine tables (:class:`engine.tables.Table`) in a DataTable, numbers right-aligned and never cut.

At 80 columns a parameter table's module names (``encoder.layer.0.attention.self.query.weight``)
would take the width and push the counts off screen: :func:`fit_cells` shortens the text
columns instead (a dotted name keeps its end, where the names differ), so every number shows.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, OptionList, Static

from engine.tables import fmt_num

PADDING = 2  # a DataTable cell's padding, both sides together
MIN_TEXT = 8  # a text column is never cut narrower than this


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def cell(value) -> Text | str:
    if _is_number(value):
        return Text(fmt_num(value), justify="right")
    return "" if value is None else str(value)


def shorten(text: str, width: int) -> str:
    """``text`` in ``width`` characters: a dotted name keeps its end (``…self.query.weight``), other text its start."""
    if len(text) <= width:
        return text
    if "." in text and " " not in text:
        return "…" + text[len(text) - width + 1 :]
    return text[: width - 1] + "…"


def fit_cells(columns, rows, width: int | None) -> tuple[list[str], list[list]]:
    """Headers and cells fitted to ``width`` columns: the widest text column is narrowed first,
    down to :data:`MIN_TEXT`; numeric columns (any cell a number) are never cut."""
    heads = [str(c) for c in columns]
    texts = [[cell(v) for v in row] for row in rows]
    if not width or not heads:
        return heads, texts
    numeric = {i for i in range(len(heads)) if any(_is_number(row[i]) for row in rows if i < len(row))}
    widths = [max([len(h)] + [len(str(r[i])) for r in texts if i < len(r)]) for i, h in enumerate(heads)]
    while sum(w + PADDING for w in widths) > width:
        cuttable = [i for i in range(len(heads)) if i not in numeric and widths[i] > MIN_TEXT]
        if not cuttable:
            break
        widest = max(cuttable, key=lambda i: widths[i])
        widths[widest] = max(MIN_TEXT, widths[widest] - (sum(w + PADDING for w in widths) - width))
    for i in range(len(heads)):
        if i in numeric:
            continue
        heads[i] = shorten(heads[i], widths[i])
        for r in texts:
            value = r[i] if i < len(r) else None
            if isinstance(value, str):
                r[i] = shorten(value, widths[i])
    return heads, texts


def fill(table: DataTable, columns, rows, keys=None, width: int | None = None) -> None:
    """Replace a DataTable's content (columns and rows), fitted to ``width`` columns when given."""
    table.clear(columns=True)
    heads, texts = fit_cells(columns, rows, width)
    for head, col in zip(heads, columns):
        table.add_column(head, key=str(col))
    for i, row in enumerate(texts):
        table.add_row(*row, key=(keys[i] if keys else None))


class TableList(OptionList):
    """The run's tables by name; right moves into the table shown (left at its first column comes back)."""

    BINDINGS = [Binding("right", "into_table", "Into the table", show=False, tooltip="move into the table shown")]

    def action_into_table(self) -> None:
        self.screen.query_one(TableView).query_one(DataTable).focus()


class TableGrid(DataTable):
    """The table shown; left, with nothing more to its left, goes back to the list of tables."""

    def action_cursor_left(self) -> None:
        if self.scroll_x == 0 and (self.cursor_type == "row" or self.cursor_column == 0):
            lists = self.screen.query(TableList)
            if lists:
                lists.first().focus()
                return
        super().action_cursor_left()


class TableView(Vertical):
    """A title line, the table (fitted to the width: every number whole), and its notes."""

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
        yield TableGrid(cursor_type="row", zebra_stripes=True)
        yield Static("", classes="table-notes")

    def _width(self) -> int:
        # before the first layout the view has no size yet: the screen's width less the padding
        return (self.content_region.width or self.app.size.width - 1) - 1  # 1: the scrollbar's room

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
        title.update(Text(f"{table.title or table.name}  [{table.name}, {len(table.rows)} rows]"))
        notes.update(Text("\n".join(table.notes)))
        fill(grid, table.columns, table.rows, width=self._width())

    def on_resize(self) -> None:
        if self.table is not None:
            self.show(self.table)
