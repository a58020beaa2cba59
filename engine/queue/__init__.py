"""The job queue of a runs directory: shared by every console and the CLI, kept on disk.

``jobqueue`` (the queue file under ``flock``, its entries, GPU assignment, control),
``scheduler`` (the small process that starts waiting jobs when they fit), ``jobproc``
(the detached process that runs one queued job).

May import: ``engine.job`` and everything below it.
"""
