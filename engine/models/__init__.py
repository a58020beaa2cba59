"""Models: presets, where a run's model comes from, and parameter tables.

``presets`` (``bert-base``, ``bert-tiny``, ``bert-micro``; building a model and its
tokenizer), ``source`` (one decision of where an experiment's model comes from: preset,
folder, Hub id or ``run:<experiment>``), ``params`` (per-module parameter counts and diffs).

May import: ``engine.manifest``, ``engine.hub``, ``engine.data``, ``engine.store`` and the leaves.
"""
