"""The ``lmconsole`` command line, on top of the whole engine.

``main.py`` holds the table of commands (name, function, help, arguments) and ``main()``;
the commands live by family: ``run.py`` (run), ``runs.py`` (runs, tag, note, archive,
delete, export, compare), ``models.py`` (params, push), ``study.py`` (check, report,
verify), ``jobs.py`` (queue, attach, control), ``look.py`` (predict, examples),
``provenance.py`` (rerun, diff, clone). ``refs.py`` finds the runs a command names,
``output.py`` is what they print with. A command that cannot do what was asked raises
``engine.errors.UserError``; ``main`` prints it once.
"""
