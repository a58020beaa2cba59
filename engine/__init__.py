"""lmconsole's engine: everything headless, from the manifest to a trained, reported model.

The map, one layer per folder; a layer imports only from the layers below it
(``lint-imports`` checks the contract in pyproject.toml)::

    cli/        the ``lmconsole`` commands
    study/      many runs read together: export, the study report, verify
    queue/      the queue of a runs directory on disk, the scheduler, the job process
    job/        one experiment as a job: runner, preflight, preemption, environment,
                system samples, trackers, Slurm
    sweep/      a sweep's Optuna study: asking it for trials, a trial's reports, the summary
    tasks/      what an experiment does: inspect, pretrain, classify, qa, push
    train/      the training loop the training tasks share
    models/     presets, where a model comes from, parameter tables
    manifest.py the experiments: typed, validated (experiments.toml)
    hub/        where a dataset or model comes from on the Hub; publishing a model
    data/       embedded corpora, NSP pairs, the cache
    store/      run directories: the source of truth about every run
    metrics/    official metric definitions, scales, flags for degenerate numbers
    leaves      errors, status, files, events, tables, secrets, device (this folder)

``lmconsole run pretrain`` goes: ``cli/main.py`` loads the manifest (``manifest.load``) and hands
the command to ``cli/run.py``, which in the foreground calls ``job.runner.run_experiment``. With
``--detach`` (or ``r`` in the console) the experiment becomes an entry of the queue
(``queue/entry.py``, ``queue/queuefile.py``); the scheduler (``queue/scheduler.py``) places it on
free GPUs and starts ``queue/jobproc.py``, which calls the same function. The runner opens a run
directory (``store/runs.py``), runs ``job/preflight.py``, then the task (``tasks/pretrain.py``),
which builds its data and model (``data/``, ``models/``) and hands them to ``train/loop.py``:
every step, evaluation and checkpoint becomes an event (``events.py``) in the run's
``events.jsonl``, and the final model lands in the run's ``model/``. The console,
``lmconsole runs``, exports and the report read run directories (``store/``) and nothing else.

Headless by design: nothing here imports ``textual``, ``rich`` or ``tui`` (a test enforces it),
and heavy libraries (torch, transformers, datasets) are imported inside the functions that need
them, so ``import engine`` and ``lmconsole --help`` stay fast. ``jobproc.py``, ``scheduler.py``
and ``slurm.py`` here only forward old ``python -m engine.X`` command lines to their new homes.
"""

__version__ = "0.1.0"
DISTRIBUTION = "lmconsole"  # tui.entry checks it: another installed package named `engine` must not stand in
