"""Several runs side by side: overlaid curves (marker + label per run), final results, and what
differs between them (config, code, data, environment, packages).

Runs are labelled A, B, C... on screen, with the marker of their plot series; exports
keep the engine's full ``experiment/run-id`` column names (``engine.study.export.comparison_table``).
A metric whose runs use different scales (``f1`` is 0-1 for a classifier, 0-100 in
squad_v2) is shown on one 0-100 scale, in the table and the overlay alike.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane, Tabs

from engine.store.follow import RunFeed
from engine.store.seeds import fmt_stat
from engine.store.trials import trial_record
from engine.study.export import comparison_table, export_runs

from ..data import eval_keys, eval_series, short_id, step_series
from ..metricinfo import metric_scale
from ..widgets.bars import StatusLine, TitleBar
from ..widgets.plots import MARKERS, CurvePlot, Series
from ..widgets.tables import cell
from .base import ConsoleScreen, CurveViewKeys, job_for_run

RUN_COL_WIDTH = 10  # every run's column the same width, whatever its texts
IGNORED_CONFIG = ("name", "description")


def common_scale(name: str, tasks: list[str], present: list[bool] | None = None) -> tuple[float, ...] | None:
    """Factors that put every run's ``name`` on one scale, or None when they already share one.

    ``present``: which runs have a value (a run without one does not force a rescale).
    """
    scales = [
        metric_scale(name, t) if (present is None or p) else "" for t, p in zip(tasks, present or [True] * len(tasks))
    ]
    if "percent" in scales and "fraction" in scales:
        return tuple(100.0 if sc == "fraction" else 1.0 for sc in scales)
    return None


def scaled(value, factor: float):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value * factor
    return value


SECTION_SHORT = {"environment": "env", "packages": "package"}  # the config tab's first column at 80 columns


def run_differences(runs: list) -> list[tuple]:
    """(section, key, value per run) for what differs between the runs: config, code, data,
    environment and packages, as ``lmconsole diff`` says it (:func:`engine.job.environment.differences`),
    each run against the first. Config values keep their type (numbers formatted as numbers);
    the rest are the recorded text, ``-`` where a run recorded none."""
    from engine.job.environment import differences

    first = runs[0]
    found: dict[tuple[str, str], list] = {}
    for i, other in enumerate(runs[1:], 1):
        for section, key, a, b in differences(first.path, other.path):
            if section == "config" and key in IGNORED_CONFIG:
                continue
            values = found.setdefault((section, key), [a] + [None] * (len(runs) - 1))
            values[i] = b
    configs = [r.config() for r in runs]
    rows = []
    for (section, key), values in found.items():
        if section == "config":
            values = [_config_value(key, c.get(key)) for c in configs]
        else:  # a run with no row of its own here recorded what the first one did
            values = [v if v is not None else values[0] for v in values]
        rows.append((section, key, *values))
    return rows


def _config_value(key: str, value):
    """A config value for one cell: the memory estimate (a table of terms) by its total and device."""
    if key == "memory_estimate" and isinstance(value, dict) and isinstance(value.get("total_gib"), (int, float)):
        return f"{value['total_gib']:.2f} GiB ({value.get('device', '?')})"
    return value


def letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"R{i + 1}"


def group_columns(table, runs: list) -> list[tuple[str, int, bool]]:
    """(header, index of the mean column, n per cell) of each seed group's mean / std / n columns
    after the runs' own columns in ``engine.study.export.comparison_table``: shown as one
    ``ABC mean ± std (n=3)`` column, n in the header when every metric shares it, else in each cell."""
    from engine.store.seeds import common_n, group_label, groups_in

    letters = {
        f"{group_label(g, rs)}: mean": "".join(letter(runs.index(r)) for r in rs)
        for g, rs in groups_in(list(runs)).items()
    }
    cols, base = table.columns, 1 + len(runs)
    out = []
    for i in range(base, len(cols) - 2):
        if cols[i].endswith(": mean") and cols[i + 2].endswith(": n"):
            stats = [{"mean": r[i], "std": r[i + 1], "n": r[i + 2]} if r[i] is not None else None for r in table.rows]
            n = common_n(stats)
            who = letters.get(cols[i]) or cols[i].removesuffix(": mean")
            out.append((f"{who} mean ± std" + (f" (n={n})" if n is not None else ""), i, n is None))
    return out


def run_label(run) -> str:
    """``sst2-lr trial 3`` for a sweep's trial (what the sweep view lists), else ``experiment 12-08 03:29:55``."""
    record = trial_record(run)
    return f"{run.experiment} trial {record['trial']}" if record else f"{run.experiment} {short_id(run.run_id)}"


class CompareScreen(CurveViewKeys, ConsoleScreen):
    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="back to the runs"),
        Binding("1", "tab('compare-curves')", "Curves", show=False, tooltip="the runs' curves on shared axes"),
        Binding("2", "tab('compare-results')", "Results", show=False, tooltip="final results side by side"),
        Binding(
            "3",
            "tab('compare-config')",
            "Config",
            show=False,
            tooltip="what differs: config, code, data, environment, packages",
        ),
        Binding("m", "next_metric", "Metric", tooltip="the next metric on the curves"),
        Binding("e", "export", "Export", tooltip="the comparison as CSV, Markdown, LaTeX, JSON"),
        *CurveViewKeys.VIEW_BINDINGS,
    ]

    def __init__(self, runs):
        super().__init__()
        self.runs = list(runs)
        self.labels = [f"{letter(i)} {run_label(r)}" for i, r in enumerate(self.runs)]
        self.feeds: list[RunFeed] = []
        self.states: list = []
        self.metric: str | None = None
        self._polling = False
        self.tasks = [str(r.config().get("task", "")) for r in self.runs]

    def compose(self) -> ComposeResult:
        yield TitleBar(f"Comparing {len(self.runs)} run(s)", id="title")
        legend = "  ".join(f"{MARKERS[i % len(MARKERS)]} {lab}" for i, lab in enumerate(self.labels))
        yield StatusLine(legend, id="legend")  # the plots' legend, outside the data
        with TabbedContent(id="compare-tabs"):
            with TabPane("1 Curves", id="compare-curves"):
                with Vertical():
                    yield CurvePlot("training loss", id="cmp-loss")
                    yield CurvePlot("evaluation", xlabel="epoch", id="cmp-metric")
            with TabPane("2 Results", id="compare-results"):
                with Vertical():
                    yield DataTable(id="cmp-table", cursor_type="row", zebra_stripes=True, fixed_columns=1)
                    with VerticalScroll(id="cmp-notes"):
                        yield Static("", id="cmp-legend")
            with TabPane("3 Config", id="compare-config"):
                with Vertical():
                    yield Static("", id="cfg-title")
                    yield DataTable(id="cfg-table", cursor_type="row", zebra_stripes=True, fixed_columns=1)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        for plot in self.curve_plots():
            plot.legend = False
        self.feeds = [RunFeed(run=r, job=job_for_run(self.app.queue, r), refresh=self.refresh_queue) for r in self.runs]
        self._draw_config()
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

    def curve_plots(self) -> list[CurvePlot]:
        return [self.query_one("#cmp-loss", CurvePlot), self.query_one("#cmp-metric", CurvePlot)]

    def _draw_curves(self) -> None:
        states = self.states
        self.query_one("#cmp-loss", CurvePlot).show(
            [Series(lab, *step_series(s.steps, "loss", limit=300)) for lab, s in zip(self.labels, states)],
            key=tuple(len(s.steps) for s in states),
        )
        keys: list[str] = []
        for s in states:
            keys += [k for k in eval_keys(s.evals) if k not in keys]
        if self.metric not in keys:
            self.metric = keys[0] if keys else None
        if self.metric:
            present = [bool(eval_series(s.evals, self.metric)[0]) for s in states]
            factors = common_scale(self.metric, self.tasks, present)
            series = []
            for i, (lab, s) in enumerate(zip(self.labels, states)):
                xs, ys = eval_series(s.evals, self.metric)
                series.append(Series(lab, xs, [y * factors[i] for y in ys] if factors else ys))
            plot = self.query_one("#cmp-metric", CurvePlot)
            plot.show(
                series,
                title=f"{self.metric}{' (0-100)' if factors else ''} per epoch (m: next)",
                key=(tuple(len(s.evals) for s in states), self.metric),
            )
            self.auto_log(plot, self.metric)

    def _draw_table(self, table) -> None:
        """One fixed-width column per run; texts too long for it go to the notes below."""
        grid = self.query_one("#cmp-table", DataTable)
        grid.clear(columns=True)
        grid.add_column("metric", key="metric")
        groups = group_columns(table, list(self.runs))
        for j, (head, _, _) in enumerate(groups):  # the group columns first: at 80 columns a few runs fill the width
            grid.add_column(head, key=f"g{j}")
        for i in range(len(self.runs)):
            grid.add_column(f"{MARKERS[i % len(MARKERS)]} {letter(i)}", key=f"r{i}", width=RUN_COL_WIDTH)
        notes, rescaled = [], []
        for row in table.rows:
            name, values = row[0], list(row[1 : 1 + len(self.runs)])
            stats = [
                Text(
                    fmt_stat(
                        {"mean": row[at], "std": row[at + 1], "n": row[at + 2]} if row[at] is not None else None,
                        with_n=with_n,
                    ),
                    justify="right",
                )
                for _, at, with_n in groups
            ]
            if any(isinstance(v, str) and len(v) > RUN_COL_WIDTH for v in values):
                for i, v in enumerate(values):
                    if v is not None:
                        notes.append(f"{letter(i)} {name}: {v}")
                continue
            factors = common_scale(name, self.tasks, [isinstance(v, (int, float)) for v in values])
            if factors:
                values = [scaled(v, f) for v, f in zip(values, factors)]
                rescaled.append(name)
                name = f"{name} (0-100)"
            grid.add_row(name, *stats, *(cell(v) for v in values))
        legend = [
            f"{lab.split()[0]} = {r.experiment}/{r.run_id} ({t or '?'})"
            for lab, r, t in zip(self.labels, self.runs, self.tasks)
        ]
        if rescaled:
            legend.append(f"on one 0-100 scale (0-1 values x100): {', '.join(rescaled)}")
        self.query_one("#cmp-legend", Static).update(Text("\n".join(legend + notes)))

    def _draw_config(self) -> None:
        rows = run_differences(self.runs) if len(self.runs) > 1 else []
        grid = self.query_one("#cfg-table", DataTable)
        grid.clear(columns=True)
        grid.add_column("", key="section")
        grid.add_column("key", key="key")
        for i in range(len(self.runs)):
            grid.add_column(f"{MARKERS[i % len(MARKERS)]} {letter(i)}", key=f"r{i}")
        for section, key, *values in rows:
            grid.add_row(SECTION_SHORT.get(section, section), key, *(cell(v) for v in values))
        per: dict[str, int] = {}
        for section, *_ in rows:
            per[section] = per.get(section, 0) + 1
        what = ", ".join(f"{section} {n}" for section, n in per.items())
        self.query_one("#cfg-title", Static).update(
            Text(
                f"differ: {what} (equal values not shown)"
                if rows
                else "same config, code, data, environment and packages"
            )
        )

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        tabs = self.query_one("#compare-tabs", TabbedContent)
        tabs.query_one(Tabs).focus()  # else TabbedContent follows a focused table back to its pane
        tabs.active = tab
        if tab != "compare-curves":
            self.query_one("#cmp-table" if tab == "compare-results" else "#cfg-table").focus()

    def action_next_metric(self) -> None:
        keys: list[str] = []
        for s in self.states:
            keys += [k for k in eval_keys(s.evals) if k not in keys]
        if keys:
            self.metric = keys[(keys.index(self.metric) + 1) % len(keys)] if self.metric in keys else keys[0]
            self._draw_curves()

    def action_export(self) -> None:
        runs = self.runs
        self.ask_export(
            f"comparison of {len(runs)} run(s) and their tables",
            lambda folder, formats: export_runs(runs, folder, formats),
        )
