"""The run store: run directories on disk, the one source of truth about a run.

``runs`` (a run's directory, its writer and readers, the store of all runs), ``writer``
(the protocol a job writes its run through, and a writer that writes nothing), ``meta``
(tags, note, archive flag), ``listing`` (the rows of ``lmconsole runs`` and the console's
runs tab, with their cache), ``follow`` (reading a live run's events as they are written, and
the metric history a ``RunFeed`` builds of them for the console and the queue),
``seeds`` (runs of one experiment over several seeds, and their mean / std), ``predictions``
(each evaluation's predictions, kept per epoch for browsing).

May import: the leaves (``engine.errors``, ``status``, ``files``, ``events``, ``tables``,
``device``). Nothing here knows about training, the queue or the manifest.
"""
