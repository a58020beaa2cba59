"""What an experiment does, one module per ``task`` of the manifest.

``inspect`` (parameter tables), ``pretrain`` (MLM + NSP, perplexity), ``classify``
(SST-2 style), ``qa`` (SQuAD v2 style), ``push`` (publish a run's model), and ``common``
(model and data setup they share). Each task is a function ``(ctx) -> results``.

May import: ``engine.train`` and everything below it.
"""
