"""Old entry point ``python -m engine.slurm``: runs ``engine.job.slurmjob``.

Kept for Slurm batch scripts written by an earlier version (a requeue reruns the stored script).
"""

if __name__ == "__main__":
    import runpy

    runpy.run_module("engine.job.slurmjob", run_name="__main__", alter_sys=True)
