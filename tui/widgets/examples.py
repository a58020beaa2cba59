"""The run view's Examples tab: a fine-tuned run's evaluation rows and mistakes.

Rows come from the predictions the run's final evaluation saved
(:func:`engine.study.examples.load_examples`, read in a worker thread); nothing is
recomputed. Keys: ``w`` wrong only, ``x`` the next confusion cell (classification) or error
kind (QA), ``o`` most confident first / evaluation order. The line above the rows gives the
count per cell or kind; the lines below show the highlighted row in full.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from engine.errors import UserError
from engine.study.examples import QA_KINDS, QA_MISTAKES, ClassExamples, load_examples

SHORT_KINDS = dict(zip(QA_KINDS, ("correct", "wrong", "unanswerable", "no answer")))


class ExamplesPane(Vertical):
    DEFAULT_CSS = """
    ExamplesPane { height: 1fr; }
    ExamplesPane #ex-summary { height: auto; max-height: 3; padding: 0 1; }
    ExamplesPane DataTable { height: 1fr; }
    ExamplesPane #ex-detail { height: 4; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("w", "toggle_wrong", "Wrong only"),
        Binding("x", "next_filter", "Cell/kind"),
        Binding("o", "toggle_order", "Order"),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.run = None
        self.examples = None
        self.wrong_only = True  # mistakes are what this tab is for
        self.by_confidence = True
        self.filter_index = -1  # -1: no cell/kind; else a position in self.filters()
        self.shown: list = []

    def compose(self) -> ComposeResult:
        yield Static("examples not loaded", id="ex-summary")
        yield DataTable(id="ex-table", cursor_type="row", zebra_stripes=False)
        yield Static("", id="ex-detail")

    def start(self, run, mirror: str = "") -> None:
        """Read ``run``'s saved predictions (once per run)."""
        if run is None:
            self.query_one("#ex-summary", Static).update("the job has not started a run yet")
            return
        if self.run is not None and self.run.path == run.path:
            return
        self.run = run
        self.query_one("#ex-summary", Static).update("reading the saved predictions …")
        self._load(run, mirror)

    @work(thread=True, exclusive=True, group="examples", exit_on_error=False)
    def _load(self, run, mirror: str) -> None:
        try:
            examples = load_examples(run, mirror)
        except UserError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a damaged file must not close the view
            self.app.call_from_thread(self._failed, f"cannot read the predictions: {type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._loaded, examples)

    def _failed(self, message: str) -> None:
        self.query_one("#ex-summary", Static).update(Text(message))

    def _loaded(self, examples) -> None:
        self.examples = examples
        self._draw()

    # -- filters ------------------------------------------------------------------------------
    def filters(self) -> list:
        """What ``x`` steps through: the confusion cells (gold, predicted), or the QA error kinds."""
        ex = self.examples
        if isinstance(ex, ClassExamples):
            n = len(ex.counts())
            return [(g, p) for g in range(n) for p in range(n)]
        return list(QA_MISTAKES)

    def action_toggle_wrong(self) -> None:
        self.wrong_only = not self.wrong_only
        self._draw()

    def action_next_filter(self) -> None:
        if self.examples is None:
            return
        self.filter_index += 1
        if self.filter_index >= len(self.filters()):
            self.filter_index = -1
        self._draw()

    def action_toggle_order(self) -> None:
        self.by_confidence = not self.by_confidence
        self._draw()

    # -- drawing ------------------------------------------------------------------------------
    def _draw(self) -> None:
        ex = self.examples
        if ex is None:
            return
        table = self.query_one(DataTable)
        table.clear(columns=True)
        chosen = self.filters()[self.filter_index] if self.filter_index >= 0 else None
        order = "most confident first" if self.by_confidence else "in order"
        if isinstance(ex, ClassExamples):
            counts = ex.counts()
            cells = "  ".join(
                f"{ex.name(g)}→{ex.name(p)} {counts[g][p]}" for g in range(len(counts)) for p in range(len(counts))
            )
            wrong = self.wrong_only and (chosen is None or chosen[0] != chosen[1])
            self.shown = ex.select(wrong_only=wrong, cell=chosen, by_confidence=self.by_confidence)
            what = f"cell {ex.name(chosen[0])}→{ex.name(chosen[1])}" if chosen else ("wrong" if wrong else "all")
            summary = f"gold→predicted: {cells}\n{what}: {len(self.shown)} rows, {order} (w x o)"
            table.add_columns("#", "gold", "pred", "conf", "text")
            for r in self.shown:
                gold, pred = Text(ex.name(r.gold)), Text(ex.name(r.prediction))
                table.add_row(r.index, gold, pred, f"{r.confidence:.3f}", Text(r.text))
        else:
            kinds = "  ".join(f"{SHORT_KINDS[k]} {n}" for k, n in ex.counts().items())
            self.shown = ex.select(kind=chosen or "", wrong_only=self.wrong_only, by_confidence=self.by_confidence)
            what = chosen or ("mistakes" if self.wrong_only else "all")
            summary = f"{kinds}\n{what}: {len(self.shown)} questions, {order} (w x o)"
            table.add_columns("kind", "conf", "question", "predicted")
            for r in self.shown:
                said = r.prediction or "(no answer)"
                table.add_row(SHORT_KINDS[r.kind], f"{r.confidence:.3f}", Text(r.question), Text(said))
        self.query_one("#ex-summary", Static).update(Text(summary))
        self._detail(0)

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail(event.cursor_row)

    def _detail(self, i: int) -> None:
        text = ""
        if 0 <= i < len(self.shown):
            r = self.shown[i]
            if isinstance(self.examples, ClassExamples):
                text = r.text
            else:
                gold = " | ".join(r.gold) if r.gold else "(no answer)"
                text = f"gold {gold}; null - span {r.na_score:.3f}\n{r.marked_context(200)}"
        self.query_one("#ex-detail", Static).update(Text(text))
