"""The console's one loaded model: what the run view's Try tab answers with.

A model takes seconds to load and its weights stay in memory, so the console holds at most one,
in this slot on the app:

- reopening the run view of the same run within :attr:`ModelSlot.KEEP_S` seconds of closing it
  reuses the loaded model (no second load);
- opening another run's view lets the held model go at once, before anything else loads;
- otherwise the model is let go :attr:`ModelSlot.KEEP_S` seconds after its view closed.
"""

from __future__ import annotations

from pathlib import Path


class ModelSlot:
    KEEP_S = 60.0  # seconds a closed view's model is kept for a reopening of the same run

    def __init__(self, app):
        self.app = app
        self.path: Path | None = None  # the run whose model is held
        self.predictor = None
        self._timer = None

    def holding(self, run) -> object | None:
        """The held model if it is ``run``'s (and it stays: a pending release is called off)."""
        if run is None or self.predictor is None or self.path != Path(run.path):
            return None
        self._stop_timer()
        return self.predictor

    def put(self, run, predictor) -> None:
        """Hold ``predictor`` as ``run``'s model (another held model is let go first)."""
        if self.predictor is not None and self.predictor is not predictor:
            self.release()
        self._stop_timer()
        self.path, self.predictor = Path(run.path), predictor

    def keep_only(self, run) -> None:
        """A view of ``run`` opened: a model of another run is let go now."""
        if self.predictor is not None and (run is None or self.path != Path(run.path)):
            self.release()

    def release_later(self) -> None:
        """The view closed: let the model go in :attr:`KEEP_S` seconds unless its run is reopened."""
        if self.predictor is not None:
            self._stop_timer()
            self._timer = self.app.set_timer(self.KEEP_S, self.release)

    def release(self) -> None:
        self._stop_timer()
        if self.predictor is not None:
            self.predictor.close()
        self.path, self.predictor = None, None

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None


def model_slot(app) -> ModelSlot:
    """The app's slot, made on first use."""
    slot = getattr(app, "_model_slot", None)
    if slot is None:
        slot = ModelSlot(app)
        app._model_slot = slot
    return slot
