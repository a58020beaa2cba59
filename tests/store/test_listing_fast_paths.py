"""The fast paths of the run listing (a store of 1,000 runs) give the same answers as full reads.

Small files only (a few thousand lines): the scale itself is measured by bench/store_scale.py,
and ``python bench/store_scale.py check`` checks that its generated store reads back as real runs do.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from engine.events import EvalFinished, LogEmitted, StatusChanged, StepLogged, to_json
from engine.store.listing import RowCache, last_step, list_rows, run_row
from engine.store.runs import OwnerLock, Run, RunStore, read_json_object


def _full_read_last_step(run: Run):
    steps = [e for e in run.events() if isinstance(e, StepLogged)]
    return (steps[-1].step, steps[-1].total_steps) if steps else None


def _store(tmp_path: Path) -> RunStore:
    store = RunStore(tmp_path / "runs")
    return store


def test_last_step_from_the_tail_matches_a_full_read(tmp_path):
    store = _store(tmp_path)
    run = store.create("exp", {"task": "pretrain", "model": "bert-tiny"})
    lines = [
        to_json(StepLogged(step=i, epoch=i / 3000, loss=1.0, learning_rate=1e-4, total_steps=3000))
        for i in range(1, 3001)
    ]
    # far more than the first 64 KiB block after the last step: the backward scan must go further back
    lines += [to_json(LogEmitted(level="info", message="x" * 200)) for _ in range(1500)]
    lines += [to_json(EvalFinished(epoch=1, step=3000, split="test", metrics={"accuracy": 0.5}))]
    run.events_path.write_text("\n".join(lines) + "\n")
    assert run.events_path.stat().st_size > 4 * 65536
    assert last_step(run) == _full_read_last_step(run) == (3000, 3000)
    # a small first block makes every line cross a block boundary somewhere: still the same answer
    assert last_step(run, tail_bytes=100) == (3000, 3000)
    # a torn last line (a writer mid-append) and a foreign line are skipped, as a full read skips them
    with open(run.events_path, "a") as fh:
        fh.write('["StepLogged"]\n{"event":"StepLogged","step":"x"}\n{"event":"StepLogged","step":4000,"tot')
    assert last_step(run) == (3000, 3000)


def test_last_step_without_any_step_and_on_an_empty_or_missing_file(tmp_path):
    store = _store(tmp_path)
    run = store.create("exp", {"task": "inspect"})
    assert last_step(run) is None  # no events.jsonl yet
    run.events_path.write_text("")
    assert last_step(run) is None
    run.events_path.write_text("".join(to_json(StatusChanged(status="running")) + "\n" for _ in range(3000)))
    assert last_step(run, tail_bytes=512) is None and _full_read_last_step(run) is None
    run.events_path.write_text(
        to_json(StepLogged(step=7, epoch=0.1, loss=1.0, learning_rate=1e-4))
        + "\n"
        + "".join(to_json(StatusChanged(status="running")) + "\n" for _ in range(3000))
    )
    assert last_step(run, tail_bytes=512) == _full_read_last_step(run) == (7, 0)


def test_run_row_reads_each_file_once_and_says_the_same(tmp_path, monkeypatch):
    store = _store(tmp_path)
    ok = store.create("exp", {"task": "classify", "model": "m", "learning_rate": 1e-4})
    (ok.path / "status.json").write_text(json.dumps({"status": "finished", "reason": ""}))
    (ok.path / "results.json").write_text(json.dumps({"final": {"accuracy": 0.9}}))
    bad = store.create("exp", {"task": "classify", "model": "m"})
    (bad.path / "status.json").write_text("{not json")
    (bad.path / "results.json").write_text("[1, 2]")
    opened = []
    real_open = open

    def counting_open(path, *a, **k):
        opened.append(os.path.basename(os.fspath(path)))
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", counting_open)
    rows = {r.run.path: r for r in list_rows(store)}
    monkeypatch.undo()
    for name in ("status.json", "config.json", "results.json", "meta.json", "events.jsonl"):
        assert opened.count(name) <= 2, (name, opened.count(name))  # one per run, two runs
    row_ok, row_bad = rows[ok.path], rows[bad.path]
    assert row_ok.status == "finished" and row_ok.result_key == "accuracy" and row_ok.problems == []
    assert row_ok.results == {"final": {"accuracy": 0.9}}
    # the problems are those Run.problems() reports, in its order, and the status as Run.status() says
    assert row_bad.problems == bad.problems() and len(row_bad.problems) == 2
    assert row_bad.status == bad.status()["status"] == "unreadable"
    assert run_row(bad).reason == "; ".join(bad.problems())
    assert read_json_object(str(bad.path / "results.json"))[1].startswith(
        "unreadable: results.json: expected a JSON object"
    )


def test_row_cache_keeps_ended_runs_and_reads_every_other_run_again(tmp_path):
    store = _store(tmp_path)
    done = store.create("exp", {"task": "classify"})
    (done.path / "status.json").write_text(json.dumps({"status": "finished"}))
    (done.path / "results.json").write_text(json.dumps({"final": {"accuracy": 0.9}}))
    live = store.create("exp", {"task": "pretrain"})
    (live.path / "status.json").write_text(json.dumps({"status": "running"}))  # no owner: interrupted
    cache = RowCache()
    first = {r.run.path: r for r in cache.load(store.runs())}
    assert first[live.path].status == "interrupted" and first[done.path].result_key == "accuracy"
    # a resume holds the lock before it writes status.json: the row says running at once
    lock = OwnerLock(live.path / "owner.lock")
    assert lock.acquire()
    try:
        live.events_path.write_text(to_json(StepLogged(step=5, epoch=0.1, loss=1.0, learning_rate=1e-4, total_steps=10)))
        second = {r.run.path: r for r in cache.load(store.runs())}
        assert second[live.path].status == "running" and second[live.path].progress == "5/10 50%"
    finally:
        lock.release()
    assert second[done.path] is first[done.path]  # an ended run with the same files: the cached row
    (done.path / "meta.json").write_text(json.dumps({"tags": ["best"]}))
    assert {r.run.path: r for r in cache.load(store.runs())}[done.path].tags == ["best"]


def test_runs_listing_skips_symlinks_and_folders_without_config(tmp_path):
    store = _store(tmp_path)
    real = store.create("exp", {"task": "inspect"})
    (store.root / "exp" / "no-config").mkdir()
    os.symlink(real.path, store.root / "exp" / "link-to-run")
    (store.root / "exp" / "a-file").write_text("{}")
    assert [r.path for r in store.runs()] == [real.path]


def test_list_table_lays_out_as_a_data_table():
    """The runs pane's table (rows added in one go, widths measured once per row) ends up as DataTable's own."""
    import asyncio

    from rich.text import Text
    from textual.app import App
    from textual.widgets import DataTable

    from tui.widgets.panes import ListTable

    class Two(App):
        def compose(self):
            yield DataTable(id="plain")
            yield ListTable(id="fast")

    def rows(n, wide=None):
        return [
            (
                f"k{i}",
                [
                    f"exp-{i % 7}",
                    Text(f"{i * 1.5:g}", justify="right"),
                    "x" * (i % 13),
                    "a very long note" if i == wide else "",
                ],
            )
            for i in range(n)
        ]

    def state(t):
        return (
            [c.content_width for c in t.ordered_columns],
            [r.key.value for r in t.ordered_rows],
            t.virtual_size,
            t.cursor_row,
            [t.get_row(r.key) for r in t.ordered_rows],
        )

    async def go():
        app = Two()
        async with app.run_test(size=(100, 40)) as pilot:
            plain, fast = app.query_one("#plain", DataTable), app.query_one("#fast", ListTable)
            for t in (plain, fast):
                for c in ("experiment", "lr", "tags", "note"):
                    t.add_column(c, key=c)
            for batch in (rows(50), rows(20), rows(50, wide=3), rows(0), rows(35)):
                for t in (plain, fast):
                    t.clear()
                for k, c in batch:
                    plain.add_row(*c, key=k)
                fast.add_keyed_rows(batch)
                await pilot.pause()
                assert state(fast) == state(plain)
            try:
                fast.add_keyed_rows(rows(1))  # k0 is there already, as add_row refuses
            except Exception as exc:  # noqa: BLE001
                assert type(exc).__name__ == "DuplicateKey"
            else:
                raise AssertionError("a duplicate key was accepted")

    asyncio.run(go())


def test_list_table_draws_what_a_data_table_draws_when_scrolled_sideways():
    """ListTable skips rendering the cells outside its view: the lines on screen, with their
    styles, are DataTable's own at any horizontal scroll, with fixed columns and the cursor on a row."""
    import asyncio

    from rich.text import Text
    from textual.app import App
    from textual.widgets import DataTable

    from tui.widgets.panes import ListTable

    class One(App):
        def __init__(self, cls):
            super().__init__()
            self.cls = cls

        def compose(self):
            yield self.cls(id="t", cursor_type="row", zebra_stripes=True)

    cols = ["mark", "experiment", "started", "status", "result", "tags", "lr", "bs", "note"]
    rows = [
        (
            f"k{i}",
            [
                Text("●" if i % 5 == 0 else " "),
                f"exp-{i % 7}",
                f"12-0{i % 9} 10:{i:02d}",
                "finished" if i % 3 else "failed",
                f"acc {i / 40:.3f}",
                "keep" * (i % 3),
                Text(f"{i * 1.5:g}e-5", justify="right"),
                str(8 * (1 + i % 4)),
                "a note " * (i % 4),
            ],
        )
        for i in range(40)
    ]

    def screen(t):
        return [[(seg.text, seg.style) for seg in t.render_line(y)] for y in range(t.size.height)]

    async def go(cls):
        app = One(cls)
        shown = []
        async with app.run_test(size=(40, 16)) as pilot:
            t = app.query_one("#t", DataTable)
            t.fixed_columns = 2
            for c in cols:
                t.add_column(c, key=c)
            for k, c in rows:
                t.add_row(*c, key=k)
            t.move_cursor(row=3)
            await pilot.pause()
            assert t.virtual_size.width > t.size.width
            for x in (0, 3, 11, 25, 1000):
                t.scroll_to(x=x, animate=False, immediate=True)
                await pilot.pause()
                shown.append((t.scroll_x, screen(t)))
            skipped = getattr(t, "_offscreen", None)
        return shown, skipped

    plain, _ = asyncio.run(go(DataTable))
    fast, skipped = asyncio.run(go(ListTable))
    assert skipped  # cells were skipped at the last position (not a vacuous pass)
    for (x, a), (y, b) in zip(plain, fast):
        assert x == y and a == b, x


def test_list_table_re_adding_the_same_rows_shows_their_cells():
    """A row re-added with the same cell list reuses its objects, but never a cell that
    ``update_cell`` changed in between: the table shows the cells it was given, as DataTable does."""
    import asyncio

    from textual.app import App

    from tui.widgets.panes import ListTable

    class One(App):
        def compose(self):
            yield ListTable(id="t")

    async def go():
        app = One()
        async with app.run_test(size=(60, 12)) as pilot:
            t = app.query_one("#t", ListTable)
            for c in ("a", "b"):
                t.add_column(c, key=c)
            rows = [(f"k{i}", [f"a{i}", f"b{i}"]) for i in range(5)]
            t.add_keyed_rows(rows)
            await pilot.pause()
            t.update_cell("k2", "b", "changed")
            assert t.get_row("k2") == ["a2", "changed"]
            t.clear()
            t.add_keyed_rows(rows[1:3])  # the same lists again: k1 reuses its objects, k2 gets its cells back
            await pilot.pause()
            assert [t.get_row(k) for k in ("k1", "k2")] == [["a1", "b1"], ["a2", "b2"]]
            assert t.rows[t._made["k1"][1]] is t._made["k1"][3]
            t.clear()
            t.add_keyed_rows(rows)
            await pilot.pause()
            assert [t.get_row(k) for k, _ in rows] == [c for _, c in rows]

    asyncio.run(go())


def test_a_pruned_trial_lists_its_last_evaluation_as_its_result(tmp_path):
    from support.fakes import write_run

    from engine.files import atomic_write_json

    run = write_run(tmp_path, "sw", "20260104-090000-000000-0003", "pruned", task="classify")
    atomic_write_json(run.path / "results.json", {"final": {"accuracy": 0.582}, "history": [{"accuracy": 0.582}]})
    row = run_row(run)
    assert (row.status, row.result_text) == ("pruned", "accuracy 0.582")
    failed = write_run(tmp_path, "sw", "20260104-090000-000000-0004", "failed", task="classify")
    atomic_write_json(failed.path / "results.json", {"final": {"accuracy": 0.6}})
    assert run_row(failed).result_text == ""  # a failed run's numbers are not a result
