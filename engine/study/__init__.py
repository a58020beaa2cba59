"""Reading many runs together: exports, the study report and its verification.

``export`` (every table as CSV, Markdown, LaTeX and JSON, one folder per export),
``report`` (the study report with its flags and plots), ``verify`` (recompute the
reported numbers from the saved predictions).

May import: ``engine.queue`` and everything below it.
"""
