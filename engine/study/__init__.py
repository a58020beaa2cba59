"""Reading many runs together: exports, the study report and its verification.

``export`` (every table as CSV, Markdown, LaTeX and JSON, one folder per export),
``report`` (the study report with its flags and plots), ``verify`` (recompute the
reported numbers from the saved predictions), ``predict`` (a run's saved model on new
input, with the evaluation's own forward and decoding code), ``examples`` (a run's
evaluation rows and mistakes, read from its saved predictions).

May import: ``engine.queue`` and everything below it.
"""
