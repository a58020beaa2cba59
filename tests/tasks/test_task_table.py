"""The table of task functions: one for every task a job runs, each importable."""

from engine.manifest import STEP_TASKS, TASKS
from engine.tasks import TASK_FUNCTIONS, task_function


def test_every_task_a_job_runs_has_a_function():
    # a study runs its steps as jobs of their own, nothing itself
    assert set(TASK_FUNCTIONS) == set(TASKS + STEP_TASKS) - {"study"}
    for task in TASK_FUNCTIONS:
        assert callable(task_function(task))
