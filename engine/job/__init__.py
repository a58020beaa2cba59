"""Running one experiment as a job, wherever it runs.

``runner`` (``run_experiment``: open the run, preflight, hand it to its task, record the
end; the launcher and Slurm paths), ``commands`` (the command lines that start a job's
processes: launcher, Slurm batch script), ``ending`` (a job's end written for it by the
process that started or followed it), ``worker`` (the process a launcher starts per rank),
``preflight`` (checks before any work), ``preempt`` (stop signals become checkpoints),
``environment`` (package versions recorded with the run), ``system`` (CPU / GPU samples),
``trackers`` (``report_to``: TensorBoard, W&B, MLflow, trackio), ``slurm`` / ``slurmjob``
(the executor on a Slurm cluster and the batch job's side).

May import: ``engine.tasks`` and everything below it.
"""
