"""Datasets: the embedded corpora, NSP pair building, and the on-disk cache they share.

``cache`` (``LMCONSOLE_CACHE``: generated corpora, trained tokenizers), ``embedded``
(small deterministic corpora in the Hub layout: wikitext, sst2, squad_v2), ``nsp``
(BERT's next-sentence pairs and masking), ``prepare`` (those pairs for a corpus of any
size: streamed through files on disk, on ``num_proc`` processes).

May import: the leaves only.
"""
