"""The run view's Try tab: type an input and read what the run's saved model answers.

The model loads in a worker thread the first time the tab is shown (the state line says
loading / ready / why not); each input is answered in a worker thread too, with the
evaluation's own code (:mod:`engine.study.predict`), shown as text with probability bars,
its latency, and the last few inputs below. The loaded model lives in the app's one
:class:`~tui.modelslot.ModelSlot`: reopening the same run soon reuses it, another run's view
lets it go. :meth:`TryPane.release` hands it back; the run view calls it when it closes.
"""

from __future__ import annotations

from collections import deque
from functools import partial

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Input, Static

from engine.errors import UserError
from engine.study.predict import answer_lines, load_predictor

from ..modelslot import model_slot

PLACEHOLDERS = {
    "pretrain": "a sentence with [MASK] (enter)",
    "classify": "a sentence to classify (enter)",
    "qa": "a question about the passage below (enter)",
}


class TryPane(Vertical):
    DEFAULT_CSS = """
    TryPane { height: 1fr; }
    TryPane #try-state { height: 1; padding: 0 1; color: $text-muted; }
    TryPane Input { margin: 0 1; }
    TryPane #try-result-box { height: 1fr; padding: 0 1; }
    TryPane #try-history { height: auto; max-height: 4; padding: 0 1; color: $text-muted; }
    """

    HISTORY = 3  # inputs kept below the result (the tab must fit 80x24)
    # (run) -> Predictor; one torch thread on the CPU (see load_predictor); tests put a fake here
    loader = staticmethod(partial(load_predictor, threads=1))

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.run = None
        self.predictor = None
        self.state = "idle"  # idle, loading, ready, failed
        self.failure = ""  # why the load failed, said again when the user asks for a prediction
        self.history: deque[str] = deque(maxlen=self.HISTORY)

    def compose(self) -> ComposeResult:
        yield Static("model not loaded: open this tab on a finished run", id="try-state")
        yield Input(placeholder="", compact=True, id="try-input")
        yield Input(placeholder="the passage the answer comes from (qa)", compact=True, id="try-context")
        with VerticalScroll(id="try-result-box"):
            yield Static("", id="try-result")
        yield Static("", id="try-history")

    def on_mount(self) -> None:
        self.query_one("#try-context").display = False

    def _say(self, text: str) -> None:
        self.query_one("#try-state", Static).update(Text(text))

    # -- loading ------------------------------------------------------------------------------
    def start(self, run) -> None:
        """Load ``run``'s model unless it is loaded or loading (another run's model is let go first)."""
        if run is None:
            self._say("the job has not started a run yet: nothing to try")
            return
        if self.run is not None and self.run.path == run.path and self.state in ("loading", "ready"):
            return
        self.release()
        slot = model_slot(self.app)
        task = run.config().get("task", "")
        self.query_one("#try-input", Input).placeholder = PLACEHOLDERS.get(task, "")
        self.query_one("#try-context").display = task == "qa"
        held = slot.holding(run)
        if held is not None:  # loaded by an earlier view of this run: no second load
            self.run = run
            self._ready(held, "kept from before")
            return
        slot.keep_only(run)  # another run's model goes before this one loads
        self.run, self.state = run, "loading"
        self._say(f"loading the model of {run.experiment} …")
        self._load(self.app, run)

    @work(thread=True, exclusive=True, group="try-load", exit_on_error=False)
    def _load(self, app, run) -> None:
        # ``app`` taken before: once the view has closed, this pane no longer finds its app
        try:
            predictor = self.loader(run)
        except UserError as exc:
            app.call_from_thread(self._failed, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a model that cannot load must not close the view
            app.call_from_thread(self._failed, f"cannot load the model: {type(exc).__name__}: {exc}")
            return
        app.call_from_thread(self._loaded, run, predictor)

    def _loaded(self, run, predictor) -> None:
        if self.run is None:  # the view closed while it loaded: kept a while for a reopening, like any model
            slot = model_slot(self.app)
            if slot.predictor is None:
                slot.put(run, predictor)
                slot.release_later()
            else:  # a later view loaded one meanwhile: never two
                predictor.close()
            return
        if run is not self.run:  # another run was asked for meanwhile
            predictor.close()
            return
        model_slot(self.app).put(run, predictor)
        self._ready(predictor, f"loaded in {predictor.load_s:.1f} s")

    def _ready(self, predictor, how: str) -> None:
        self.predictor, self.state = predictor, "ready"
        device = getattr(predictor.device, "type", predictor.device)
        self._say(f"ready: {predictor.task} model on {device}, {how}")
        self.query_one("#try-input", Input).focus()

    def _failed(self, message: str) -> None:
        self.state, self.failure = "failed", message
        self._say(message)

    def release(self) -> None:
        """Hand the model back to the app's slot, which lets it go in a while unless its run is reopened."""
        if self.predictor is not None:
            model_slot(self.app).release_later()
        self.predictor, self.run, self.state = None, None, "idle"

    # -- predicting ---------------------------------------------------------------------------
    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.predictor is None:
            # a load that failed keeps saying why (a pruned trial: no saved model), not just "no model"
            said = {"loading": "the model is not loaded yet", "failed": self.failure}
            self._say(said.get(self.state, "no model to try"))
            return
        text = self.query_one("#try-input", Input).value.strip()
        if self.predictor.task == "qa":
            row = {"question": text, "context": self.query_one("#try-context", Input).value}
        else:
            row = {"text": text}
        self._predict(self.predictor, row)

    @work(thread=True, exclusive=True, group="try-predict", exit_on_error=False)
    def _predict(self, predictor, row: dict) -> None:
        try:
            results, seconds = predictor.timed([row])
        except UserError as exc:
            self.app.call_from_thread(self._show_error, str(exc))
            return
        self.app.call_from_thread(self._show, predictor.task, results[0], seconds)

    def _show_error(self, message: str) -> None:
        self.query_one("#try-result", Static).update(Text(message))

    def _show(self, task: str, result: dict, seconds: float) -> None:
        lines = answer_lines(task, result)
        self.query_one("#try-result", Static).update(Text("\n".join(lines + [f"({seconds * 1000:.0f} ms)"])))
        self.history.appendleft(short_answer(task, result))
        earlier = list(self.history)[1:]
        self.query_one("#try-history", Static).update(Text("\n".join(["earlier:", *earlier]) if earlier else ""))


def short_answer(task: str, result: dict, width: int = 76) -> str:
    """One line for the history: the input and the answer."""
    if task == "qa":
        said = f"{result['question']} -> {'no answer' if result['no_answer'] else repr(result['answer'])}"
    elif task == "classify":
        said = f"{result['text']} -> {result['label']} ({result['confidence']:.2f})"
    else:
        tops = ", ".join(m["top"][0]["token"] for m in result["masks"] if m["top"])
        said = f"{result['text']} -> {tops}"
    return said if len(said) <= width else said[: width - 1] + "…"
