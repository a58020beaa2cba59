"""The training loop shared by every training task.

``loop`` (optimizer, schedule, epochs, evaluation, checkpoints, precision, DDP),
``context`` (the job context a task and the loop are handed: the run, the experiment,
emit / log / poll), ``best`` (after each evaluation: the best model so far, early stopping),
``oom`` (``auto_find_batch_size``: out-of-memory errors and the smaller micro-batches).

May import: ``engine.models`` and everything below it.
"""
