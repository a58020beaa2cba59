"""The ``lmconsole`` command line: one function per command, on top of the whole engine."""
