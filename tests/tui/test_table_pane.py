"""A table pane keeps its highlighted row in view when the status line below it grows."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult
from textual.widgets import Static

from support.console import wait_for
from tui.widgets.panes import TablePane


class Pane(TablePane):
    COLUMNS = ("#", "name")


class Host(App):
    def compose(self) -> ComposeResult:
        yield Pane()
        yield Static("one line", id="status")


def test_the_cursor_row_stays_in_view_when_the_status_line_grows():
    async def go():
        app = Host()
        async with app.run_test(size=(80, 24)) as pilot:
            pane = app.query_one(Pane)
            pane.set_rows([(str(i), [str(i), f"job {i}"], f"job {i}") for i in range(40)])
            pane.table.focus()
            pane.table.move_cursor(row=39, animate=False)  # the last row, at the bottom of the view
            await pilot.pause(0.2)
            status = app.query_one("#status", Static)
            status.styles.height = 3  # a long note: the pane gives up two lines
            table = pane.table

            def in_view() -> bool:
                top = table.scroll_offset.y
                return top <= table.cursor_row < top + table.size.height - 1  # less the header line

            assert await wait_for(pilot, lambda: table.size.height == 24 - 3 and in_view()), (
                table.scroll_offset,
                table.size,
            )

    asyncio.run(go())
