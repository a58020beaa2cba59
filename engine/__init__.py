"""lmconsole engine: manifest, run store, training tasks, metrics and export.

Headless by design: nothing here imports ``textual``, ``rich`` or ``tui`` (a test
enforces it), and heavy libraries (torch, transformers, datasets) are imported
lazily inside the functions that need them, so ``import engine`` and
``lmconsole --help`` stay fast.
"""

__version__ = "0.1.0"
DISTRIBUTION = "lmconsole"  # tui.entry checks it: another installed package named `engine` must not stand in
