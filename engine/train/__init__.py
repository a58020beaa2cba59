"""The training loop shared by every training task.

``loop`` (optimizer, schedule, epochs, evaluation, checkpoints, precision, DDP),
``context`` (the job context a task and the loop are handed: the run, the experiment,
emit / log / poll).

May import: ``engine.models`` and everything below it.
"""
