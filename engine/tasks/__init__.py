"""What an experiment does, one module per ``task`` of the manifest.

``inspect`` (parameter tables), ``pretrain`` (MLM + NSP, perplexity), ``classify``
(SST-2 style), ``qa`` (SQuAD v2 style), ``push`` (publish a run's model), and ``common``
(model and data setup they share). Each task is a function ``(ctx) -> results``:
:data:`TASK_FUNCTIONS` names them, :func:`task_function` imports one.

May import: ``engine.train`` and everything below it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.train.context import TaskContext

# The function that runs each task a job can run ("module:function"; a study runs its steps,
# nothing itself). Named, not imported: a task's module brings torch and transformers with it.
TASK_FUNCTIONS: Mapping[str, str] = {
    "inspect": "engine.tasks.inspect:run",
    "pretrain": "engine.tasks.pretrain:run",
    "classify": "engine.tasks.classify:run",
    "qa": "engine.tasks.qa:run",
    "push": "engine.tasks.push:run",
}


def task_function(task: str) -> Callable[[TaskContext], dict]:
    """The function that runs ``task`` (a key of :data:`TASK_FUNCTIONS`), its module imported now."""
    module, name = TASK_FUNCTIONS[task].split(":")
    return getattr(importlib.import_module(module), name)
