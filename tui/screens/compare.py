"""Several runs side by side: overlaid curves (marker + label per run) and final results.

Runs are labelled A, B, C... on screen; exports keep the engine's full
``experiment/run-id`` column names (``engine.export.comparison_table``).
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane

from engine.export import comparison_table, export_runs

from ..data import RunFeed, eval_keys, eval_series, short_id, step_series
from ..widgets.bars import StatusLine, TitleBar
from ..widgets.plots import MARKERS, CurvePlot, Series
from ..widgets.tables import cell
from .base import ConsoleScreen, job_for_run



def letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"R{i + 1}"


def seed_columns(table, letters: list[str], runs=()):
    """Headers and cells of the comparison grid: a letter per run, and for each seed group the
    engine's mean / std / n columns merged into one ``ABC mean ± std (n=3)`` column (issue 14),
    shown before the run columns; n goes into the header when every metric shares it, else
    into each cell."""
    from rich.text import Text

    from engine.seeds import common_n, fmt_stat, group_label, groups_in

    names = {f"{group_label(g, rs)}: mean": "".join(letters[runs.index(r)] for r in rs if runs.index(r) < len(letters))
             for g, rs in groups_in(list(runs)).items()}
    headers, picks = [], []  # picks: an index of a run column, or the index of a group's mean column
    cols = table.columns[1:]
    i = run = 0
    while i < len(cols):
        if cols[i].endswith(": mean") and i + 2 < len(cols) and cols[i + 2].endswith(": n"):
            stats = [{"mean": r[1 + i], "std": r[2 + i], "n": r[3 + i]} if r[1 + i] is not None else None for r in table.rows]
            n = common_n(stats)
            who = names.get(cols[i]) or cols[i].removesuffix(": mean")
            headers.append(f"{who} mean ± std" + (f" (n={n})" if n is not None else ""))
            picks.append(("group", i, n is None))
            i += 3
        else:
            headers.append(letters[run] if run < len(letters) else cols[i])
            picks.append(("run", i, False))
            run, i = run + 1, i + 1
    # the group columns first: at 80 columns a few runs' cells already fill the width
    order = sorted(range(len(picks)), key=lambda j: picks[j][0] != "group")
    headers, picks = [headers[j] for j in order], [picks[j] for j in order]
    rows = []
    for row in table.rows:
        cells = [row[0]]
        vals = row[1:]
        for kind, at, with_n in picks:
            if kind == "run":
                cells.append(cell(vals[at]))
            else:
                stat = {"mean": vals[at], "std": vals[at + 1], "n": vals[at + 2]} if vals[at] is not None else None
                cells.append(Text(fmt_stat(stat, with_n=with_n), justify="right"))
        rows.append(cells)
    return headers, rows


class CompareScreen(ConsoleScreen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("1", "tab('compare-curves')", "Curves", show=False),
        Binding("2", "tab('compare-results')", "Results", show=False),
        Binding("m", "next_metric", "Metric"),
        Binding("e", "export", "Export"),
    ]

    def __init__(self, runs):
        super().__init__()
        self.runs = list(runs)
        self.labels = [f"{letter(i)} {r.experiment} {short_id(r.run_id)}" for i, r in enumerate(self.runs)]
        self.feeds: list[RunFeed] = []
        self.states: list = []
        self.metric: str | None = None
        self._polling = False

    def compose(self) -> ComposeResult:
        yield TitleBar(f"Comparing {len(self.runs)} run(s)", id="title")
        legend = "  ".join(f"{MARKERS[i % len(MARKERS)]} {lab}" for i, lab in enumerate(self.labels))
        yield StatusLine(legend, id="legend")
        with TabbedContent(id="compare-tabs"):
            with TabPane("1 Curves", id="compare-curves"):
                with Vertical():
                    yield CurvePlot("training loss", id="cmp-loss")
                    yield CurvePlot("evaluation", xlabel="epoch", id="cmp-metric")
            with TabPane("2 Results", id="compare-results"):
                with Vertical():
                    yield DataTable(id="cmp-table", cursor_type="row", zebra_stripes=True)
                    yield Static("", id="cmp-legend")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.feeds = [RunFeed(run=r, job=job_for_run(self.app.queue, r)) for r in self.runs]
        self.query_one("#cmp-legend", Static).update(
            "\n".join(f"{lab.split()[0]} = {r.experiment}/{r.run_id}" for lab, r in zip(self.labels, self.runs)))
        self._poll()
        self.set_interval(1.0, self._poll)

    def _poll(self) -> None:
        if not self._polling:
            self._polling = True
            self._poll_worker()

    @work(thread=True, exit_on_error=False, group="poll")
    def _poll_worker(self) -> None:
        try:
            states = [f.poll() for f in self.feeds]
            table = comparison_table(self.runs)
        except Exception as exc:  # noqa: BLE001
            self._polling = False
            self.app.call_from_thread(self.say, f"cannot read runs: {exc}", "error")
            return
        self.app.call_from_thread(self._apply, states, table)

    def _apply(self, states, table) -> None:
        self._polling = False
        changed = [s.version for s in states] != [s.version for s in self.states]
        self.states = states
        if changed:
            self._draw_curves()
            self._draw_table(table)

    def _draw_curves(self) -> None:
        states = self.states
        self.query_one("#cmp-loss", CurvePlot).show(
            [Series(lab, *step_series(s.steps, "loss", limit=300)) for lab, s in zip(self.labels, states)],
            key=tuple(len(s.steps) for s in states))
        keys: list[str] = []
        for s in states:
            keys += [k for k in eval_keys(s.evals) if k not in keys]
        if self.metric not in keys:
            self.metric = keys[0] if keys else None
        if self.metric:
            self.query_one("#cmp-metric", CurvePlot).show(
                [Series(lab, *eval_series(s.evals, self.metric)) for lab, s in zip(self.labels, states)],
                title=f"{self.metric} per epoch (m: next metric)",
                key=(tuple(len(s.evals) for s in states), self.metric))

    def _draw_table(self, table) -> None:
        grid = self.query_one("#cmp-table", DataTable)
        grid.clear(columns=True)
        grid.add_column("metric", key="metric")
        headers, rows = seed_columns(table, [letter(i) for i in range(len(self.runs))], self.runs)
        for i, head in enumerate(headers):
            grid.add_column(head, key=f"c{i}")
        for row in rows:
            grid.add_row(*row)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        self.query_one("#compare-tabs", TabbedContent).active = tab

    def action_next_metric(self) -> None:
        keys: list[str] = []
        for s in self.states:
            keys += [k for k in eval_keys(s.evals) if k not in keys]
        if keys:
            self.metric = keys[(keys.index(self.metric) + 1) % len(keys)] if self.metric in keys else keys[0]
            self._draw_curves()

    def action_export(self) -> None:
        runs = self.runs
        self.ask_export(f"comparison of {len(runs)} run(s) and their tables",
                        lambda folder, formats: export_runs(runs, folder, formats))
