"""Sweeps: hyperparameter search over an experiment's manifest keys, each trial a run of the queue.

Optuna does the searching (samplers, pruners, storage); this package is the thin layer
between it and lmconsole: ``study`` opens a sweep's study (SQLite in the runs directory by
default, any SQLAlchemy URL for a study shared by several machines) and asks it for a
trial's parameters (the scheduler does, when it starts a trial's queue job); ``trial`` is
the sink that reports a running trial's evaluations, hears the pruner and tells the
study how the trial ended; ``summary`` is what every reader of a sweep shows (the CLI's
``lmconsole sweep``, a console view): trials, best, importances.

May import: ``engine.manifest``, ``engine.store`` and the leaves. The queue (below which
the job layer reports trials) and the CLI import this package; it imports neither.
Optuna is an optional dependency (``pip install lmconsole[sweep]``), imported inside the
functions that need it.
"""
