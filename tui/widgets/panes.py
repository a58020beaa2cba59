"""Base of the list panes (experiments, jobs, runs): a DataTable updated in place, a `/` filter, marks.

Panes are views: the screen passes data down (``set_rows``) and panes send
requests up as messages; they never call the engine themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import zip_longest

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


class ListTable(DataTable):
    """A DataTable that measures a row's cells once.

    DataTable measures every cell of every added row to size its columns. A pane re-adds its rows
    whenever the shown set changes (each key typed in the filter line, a new sort): with 1,000 runs
    that measuring took most of a second per key. Here a row whose cells are unchanged since it
    was last measured reuses its widths. Rows with a label or an automatic height, or a Textual
    whose internals differ, take DataTable's own path.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._measured: dict = {}  # row key -> (cells, their content widths)
        self._view: tuple | None = None  # (scroll x, width, column widths, fixed columns) of the last render
        self._offscreen: frozenset = frozenset()  # indexes of the columns outside the view
        self._made: dict = {}  # key -> (cells, RowKey, cell dict, Row) of the rows last added
        self._made_for: list = []  # the keys of the columns they were made for

    # -- drawing: cells scrolled out of view are not rendered ---------------------------------------
    # DataTable renders every cell of each visible row, then crops the line to the width of the
    # widget: at 80 columns the runs table showed about 5 of its 13 columns, and rendering the other
    # cells was most of the time a filter key spent drawing. Here a cell entirely outside the view
    # is a blank of its width (cropped away, as its rendering was); the row cache, whose key does
    # not hold the scroll position, is emptied whenever the view moves.

    def render_lines(self, crop):
        try:
            widths = tuple(c.get_render_width(self) for c in self.ordered_columns)
            view = (self.scroll_x, self.size.width, widths, self.fixed_columns, self._labelled_row_exists)
            if view != self._view:
                self._view = view
                self._row_render_cache.clear()
                self._offscreen = self._columns_out_of_view(*view)
        except AttributeError:  # another Textual: every cell is rendered
            self._offscreen = frozenset()
        return super().render_lines(crop)

    @staticmethod
    def _columns_out_of_view(scroll_x, width, widths, fixed, labelled) -> frozenset:
        if labelled or not width:
            return frozenset()
        # the scrollable part of a line holds every column from x = 0 and is cropped to
        # [scroll_x + width of the fixed columns, scroll_x + width of the widget)
        left, right = scroll_x + sum(widths[:fixed]), scroll_x + width
        out, x = set(), 0
        for i, w in enumerate(widths):
            if i >= fixed and (x + w <= left or x >= right):
                out.add(i)
            x += w
        return frozenset(out)

    def _render_cell(self, row_index, column_index, base_style, width, cursor=False, hover=False):
        if column_index in self._offscreen and row_index >= 0:
            key = self._row_locations.get_key(row_index)
            row = self.rows.get(key) if key is not None else None
            if row is not None and row.height == 1 and not row.auto_height:
                from rich.segment import Segment

                return [[Segment(" " * width, base_style)]]
        return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)

    def add_keyed_rows(self, rows: list[tuple[str, list]]) -> None:
        """``add_row(*cells, key=key)`` for each row, as one change (DataTable's per-row bookkeeping,
        repeated 1,000 times, was most of a filter key's time). Same resulting table."""
        try:
            from textual.widgets._data_table import DuplicateKey, Row, RowKey
        except ImportError:  # a Textual without these internals: the public way, row by row
            internals = False
        else:
            internals = True
        if not internals or not hasattr(self, "_row_locations") or not rows:
            for key, cells in rows:
                self.add_row(*cells, key=key)
            return
        columns = self.ordered_columns
        if any(len(cells) > len(columns) for _, cells in rows):
            raise ValueError("More values provided than there are columns.")
        was_empty = self.row_count == 0
        index = self.row_count
        # A row added again with the same cells (each filter key re-adds the rows that stay) gets the
        # objects it had: 1,000 new keys, dicts and rows per key kept the collector busy.
        column_keys = [c.key for c in columns]
        made = self._made if self._made_for == column_keys else {}
        self._made, self._made_for = {}, column_keys
        for key, cells in rows:
            hit = made.get(key)
            if hit is not None and hit[0] is cells and len(hit[2]) == len(columns):
                _, row_key, data, row = hit
                if any(data.get(c.key) is not v for c, v in zip(columns, cells)):  # update_cell changed it
                    data = {column.key: cell for column, cell in zip_longest(columns, cells)}
            else:
                row_key = RowKey(key)
                data = {column.key: cell for column, cell in zip_longest(columns, cells)}
                row = Row(row_key, 1, None, False)
            if row_key in self._row_locations:
                raise DuplicateKey(f"The row key {row_key!r} already exists.")
            self._row_locations[row_key] = index
            index += 1
            self._data[row_key] = data
            self.rows[row_key] = row
            self._made[key] = (cells, row_key, data, row)
            self._new_rows.add(row_key)
        self._require_update_dimensions = True
        self.cursor_coordinate = self.cursor_coordinate
        if was_empty and self.columns and self.show_cursor and self.cursor_type != "none":
            self._highlight_cursor()  # as add_row: a cursor appears where there was none
        self._update_count += 1
        self.check_idle()

    def _update_dimensions(self, new_rows) -> None:
        try:
            from textual.render import measure

            located = {k: i for k in new_rows if (i := self._row_locations.get(k)) is not None}
            keys = list(located)
            if any(self.rows[k].label is not None or self.rows[k].auto_height for k in keys):
                return super()._update_dimensions(new_rows)
            console, columns = self.app.console, self.ordered_columns
            widened = False
            for key in keys:
                data = self._data[key]
                cells = tuple(data.get(c.key) for c in columns)
                hit = self._measured.get(key)
                if hit is None or hit[0] != cells:
                    _, renderables = self._get_row_renderables(located[key])
                    hit = (cells, [measure(console, r, 1) for r in renderables])
                    self._measured[key] = hit
                for column, width in zip(columns, hit[1]):
                    if width > column.content_width:
                        column.content_width = width
                        widened = True
            if widened:  # cells already drawn at the old width are cached by key, not by width
                self._clear_caches()
            # as DataTable's own: the scrollable size from the column widths and the row heights
            from textual.geometry import Size

            width = sum(c.get_render_width(self) for c in self.columns.values()) + self._row_label_column_width
            self.virtual_size = Size(width, self._total_row_height + (self.header_height if self.show_header else 0))
        except (AttributeError, KeyError, TypeError):  # another Textual: its own (slower) way
            self._measured.clear()
            super()._update_dimensions(new_rows)


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
    if isinstance(table, ListTable):
        table.add_keyed_rows(rows)
    else:
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
        Binding("slash", "filter", "Filter", tooltip="type to show only the matching rows"),
        Binding("escape", "clear", "Clear filter/marks", show=False, tooltip="show every row again, unmark all"),
    ]

    DEFAULT_CSS = """
    TablePane { height: 1fr; }
    TablePane > DataTable { height: 1fr; }
    TablePane > .empty { height: auto; color: $text-muted; padding: 0 1; }
    TablePane > Input { dock: bottom; display: none; height: 1; border: none; padding: 0 1; }
    TablePane > Input.-shown { display: block; }
    TablePane > Input:focus { border: none; }  /* Input's own :focus border would hide the one line of text */
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.marked: set[str] = set()
        self.filter_text = ""
        self._rows: list[tuple[str, list]] = []
        self._haystack: dict[str, str] = {}
        self._with_mark: dict[str, tuple] = {}  # key -> (cells, marked, [mark cell, *cells]) last shown

    def on_resize(self) -> None:
        # The status line below grows when the highlighted row's note is long, and the pane shrinks
        # under the cursor: keep the highlighted row in view (after the table has its new size).
        table = self.table
        if table.row_count:
            self.call_after_refresh(lambda: table.move_cursor(row=table.cursor_row, animate=False))

    def compose(self) -> ComposeResult:
        yield Static(self.EMPTY, classes="empty")
        table = ListTable(cursor_type="row", zebra_stripes=True)
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
        self._with_mark = {k: v for k, v in self._with_mark.items() if k in self._haystack}
        self._show()

    def _show(self) -> None:
        has_mark = bool(self.COLUMNS) and self.COLUMNS[0] == " "
        shown = []
        with_mark = self._with_mark
        for key, cells in self._rows:
            if self.filter_text and not self.matches_filter(key):
                continue
            if has_mark:
                # the same row list as last time while the row and its mark are unchanged: each filter
                # key built 1,000 new lists (garbage for the collector) and the table compared them cell
                # by cell to decide what to measure again
                marked = key in self.marked
                hit = with_mark.get(key)
                if hit is None or hit[0] is not cells or hit[1] != marked:
                    hit = with_mark[key] = (cells, marked, [Text(MARK if marked else " "), *cells])
                cells = hit[2]
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
