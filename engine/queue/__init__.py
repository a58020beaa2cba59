"""The job queue of a runs directory: shared by every console and the CLI, kept on disk.

``entry`` (a queue entry and the whole queue file as typed data, with their JSON),
``queuefile`` (``runs/.queue/queue.json`` read and changed under ``flock``),
``gpus`` (the machine's GPUs, what a job needs, which it gets),
``schedule`` (each entry's status derived from its run; which waiting jobs start now),
``launch`` (job processes, job threads for tests, starting the scheduler),
``jobqueue`` (:class:`~engine.queue.jobqueue.JobQueue`, the clients' API, and its ``Job`` view),
``scheduler`` (the small process that starts waiting jobs when they fit), ``jobproc``
(the detached process that runs one queued job).

May import: ``engine.job`` and everything below it.
"""
