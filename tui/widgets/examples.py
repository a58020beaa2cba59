"""The run view's Examples tab: a run's evaluation rows and mistakes (masked tokens of a pretraining run).

Rows come from the predictions the run saved (:func:`engine.study.examples.load_examples`,
read in a worker thread): the final evaluation's first, ``E`` steps back through every
evaluation the run kept (``predictions/epoch-N.jsonl``); nothing is recomputed. Keys: ``w``
wrong only, ``x`` the next confusion cell (classification) or error kind (QA), ``o`` most
confident first / evaluation order, ``E`` an earlier evaluation. The line above the rows
gives the count per cell or kind; the lines below show the highlighted row in full.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from engine.errors import UserError
from engine.study.examples import QA_KINDS, QA_MISTAKES, ClassExamples, MaskExamples, example_epochs, load_examples

SHORT_KINDS = dict(zip(QA_KINDS, ("correct", "wrong", "unanswerable", "no answer")))


class ExamplesPane(Vertical):
    DEFAULT_CSS = """
    ExamplesPane { height: 1fr; }
    ExamplesPane #ex-summary { height: auto; max-height: 3; padding: 0 1; }
    ExamplesPane DataTable { height: 1fr; }
    ExamplesPane #ex-detail { height: 4; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("w", "toggle_wrong", "Wrong only", tooltip="only the mistakes / every row"),
        Binding("x", "next_filter", "Cell/kind", tooltip="the next confusion cell (classify) or error kind (qa)"),
        Binding("o", "toggle_order", "Order", tooltip="most confident first / evaluation order"),
        # not in the footer (the summary line names it): the footer is full at 80 columns
        Binding(
            "E",
            "earlier_epoch",
            "Epoch",
            show=False,
            tooltip="an earlier evaluation (each one the run kept), then final",
        ),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.run = None
        self.examples = None
        self.wrong_only = True  # mistakes are what this tab is for
        self.by_confidence = True
        self.filter_index = -1  # -1: no cell/kind; else a position in self.filters()
        self.shown: list = []
        self.mirror = ""
        self.epochs: list[int | float | None] = []  # what E steps through: None = the final evaluation, then epochs
        self.epoch_index = 0

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
        self.run, self.mirror, self.epoch_index, self.epochs = run, mirror, 0, []
        self.query_one("#ex-summary", Static).update("reading the saved predictions …")
        self._load(run, mirror, None)

    def action_earlier_epoch(self) -> None:
        if self.run is None or len(self.epochs) < 2:
            self.app.notify("no other evaluation saved for this run" if self.run is not None else "no run yet")
            return
        self.epoch_index = (self.epoch_index + 1) % len(self.epochs)
        self.query_one("#ex-summary", Static).update("reading the saved predictions …")
        self._load(self.run, self.mirror, self.epochs[self.epoch_index])

    @work(thread=True, exclusive=True, group="examples", exit_on_error=False)
    def _load(self, run, mirror: str, epoch: int | float | None) -> None:
        try:
            if not self.epochs:  # once per run: the final evaluation (pretraining: the last), then back
                saved = example_epochs(run)[::-1]
                task = run.config().get("task", "")
                self.epochs = list(saved) if task == "pretrain" else [None, *saved]
            examples = load_examples(run, mirror, epoch)
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
        """What ``x`` steps through: the confusion cells (gold, predicted), the QA error kinds, or nothing."""
        ex = self.examples
        if isinstance(ex, ClassExamples):
            n = len(ex.counts())
            return [(g, p) for g in range(n) for p in range(n)]
        return [] if isinstance(ex, MaskExamples) else list(QA_MISTAKES)

    def _which(self) -> str:
        """Which evaluation is shown, and whether E has others."""
        ex = self.examples
        epoch = getattr(ex, "epoch", None)
        words = "final evaluation" if epoch is None else f"epoch {epoch}" if epoch else "before training"
        return f"{words}, {len(self.epochs)} saved (w x o E)" if len(self.epochs) > 1 else f"{words} (w x o)"

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
        if isinstance(ex, MaskExamples):
            ranks = "  ".join(f"{k} {n}" for k, n in ex.counts().items())
            self.shown = ex.select(wrong_only=self.wrong_only, by_confidence=self.by_confidence)
            what = "wrong" if self.wrong_only else "all"
            summary = f"gold token ranked: {ranks}\n{what}: {len(self.shown)} masked, {order}; {self._which()}"
            table.add_columns("#", "gold", "pred", "conf", "masked text")
            for m in self.shown:
                context = f"{m.left[-24:]} [MASK]{m.right}"  # the tokens just before the mask matter most
                table.add_row(
                    f"{m.index}:{m.position}", Text(m.gold), Text(m.prediction), f"{m.confidence:.3f}", Text(context)
                )
        elif isinstance(ex, ClassExamples):
            counts = ex.counts()
            cells = "  ".join(
                f"{ex.name(g)}→{ex.name(p)} {counts[g][p]}" for g in range(len(counts)) for p in range(len(counts))
            )
            wrong = self.wrong_only and (chosen is None or chosen[0] != chosen[1])
            self.shown = ex.select(wrong_only=wrong, cell=chosen, by_confidence=self.by_confidence)
            what = f"cell {ex.name(chosen[0])}→{ex.name(chosen[1])}" if chosen else ("wrong" if wrong else "all")
            summary = f"gold→predicted: {cells}\n{what}: {len(self.shown)} rows, {order}; {self._which()}"
            table.add_columns("#", "gold", "pred", "conf", "text")
            for r in self.shown:
                gold, pred = Text(ex.name(r.gold)), Text(ex.name(r.prediction))
                table.add_row(r.index, gold, pred, f"{r.confidence:.3f}", Text(r.text))
        else:
            kinds = "  ".join(f"{SHORT_KINDS[k]} {n}" for k, n in ex.counts().items())
            self.shown = ex.select(kind=chosen or "", wrong_only=self.wrong_only, by_confidence=self.by_confidence)
            what = chosen or ("mistakes" if self.wrong_only else "all")
            summary = f"{kinds}\n{what}: {len(self.shown)} questions, {order}; {self._which()}"
            table.add_columns("kind", "conf", "question", "predicted")
            for r in self.shown:
                said = r.prediction or "(no answer)"
                table.add_row(SHORT_KINDS[r.kind], f"{r.confidence:.3f}", Text(r.question), Text(said))
        self.query_one("#ex-summary", Static).update(Text(summary))
        self._detail(0)

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        # The table's row now, not the event's: a redraw's late highlight (a busy machine) must not
        # show another row's text below the cursor.
        self._detail(self.query_one(DataTable).cursor_row)

    def _detail(self, i: int) -> None:
        text = ""
        if 0 <= i < len(self.shown):
            r = self.shown[i]
            if isinstance(self.examples, MaskExamples):
                tops = "  ".join(f"{t} {p:.3f}" for t, p in r.top)
                text = f"gold {r.gold} ({r.gold_probability:.3f}); top: {tops}\n{r.masked_text()}"
            elif isinstance(self.examples, ClassExamples):
                text = r.text
            else:
                gold = " | ".join(r.gold) if r.gold else "(no answer)"
                text = f"gold {gold}; null - span {r.na_score:.3f}\n{r.marked_context(200)}"
        self.query_one("#ex-detail", Static).update(Text(text))
