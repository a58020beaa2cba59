"""The engine's expected failures, in one leaf module that imports nothing of the engine.

Each carries a one-line reason for the user (and, for :class:`JobError` and
:class:`UserError`, a hint).
They live here, not beside the code that raises them, so that any module can raise
or catch them without importing the job runner, the Hub helpers or the manifest
parser (that is what made the engine's imports go round in circles).
"""

from __future__ import annotations

from pathlib import Path


class JobError(Exception):
    """An expected failure with a one-line reason and a hint for the user."""

    def __init__(self, reason: str, hint: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


class UserError(Exception):
    """A command cannot do what was asked, for a reason the user can fix: one line, and what to do.

    The command line prints it once (``lmconsole: <message>; <hint>``) and exits with
    ``code``: 2 when the request itself cannot be carried out as given (a name that
    matches nothing, a missing confirmation), 1 when it was tried and failed.
    """

    def __init__(self, message: str, hint: str = "", code: int = 2):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class NotFound(UserError):
    """No run, experiment or job matches what the user named."""


class Cancelled(Exception):
    """Raised inside a task when the user cancels; the task saves a checkpoint first."""


class Interrupted(Cancelled):
    """Raised at a step boundary after a stop signal (SIGTERM/SIGINT/SIGUSR1); the task saves a checkpoint first."""

    def __init__(self, signal_name: str = ""):
        super().__init__(signal_name)
        self.signal_name = signal_name


class Pruned(Exception):
    """Raised by the training loop at an epoch boundary when a sweep's pruner stops the trial.

    ``results``: what the loop would have returned (final metrics of the last evaluation, the
    history), so the run keeps its results so far.
    """

    def __init__(self, reason: str, results: dict):
        super().__init__(reason)
        self.reason = reason
        self.results = results


class ResolveError(Exception):
    """A dataset or model that cannot be found; the message says what to do."""


class VerifyError(Exception):
    """A run that cannot be verified (no saved predictions, unfinished), one line."""


class ManifestError(Exception):
    """One or more problems with a manifest; ``problems`` has one line each."""

    def __init__(self, path, problems: list[str]):
        self.path = Path(path)
        self.problems = list(problems)
        super().__init__(self.format())

    def format(self) -> str:
        head = f"{self.path}: {len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}"
        return head + "\n" + "\n".join(f"  - {p}" for p in self.problems)
