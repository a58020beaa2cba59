"""Old entry point ``python -m engine.jobproc``: runs ``engine.queue.jobproc``.

Kept for queue entries and job command lines written by an earlier version.
"""

if __name__ == "__main__":
    import runpy

    runpy.run_module("engine.queue.jobproc", run_name="__main__", alter_sys=True)
