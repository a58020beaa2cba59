"""Old entry point ``python -m engine.scheduler``: runs ``engine.queue.scheduler``.

Kept for schedulers started by an earlier version.
"""

if __name__ == "__main__":
    import runpy

    runpy.run_module("engine.queue.scheduler", run_name="__main__", alter_sys=True)
