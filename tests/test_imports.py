"""engine/ stays headless (no textual, rich or tui) and light (no torch on import or --help)."""

import pkgutil
import subprocess
import sys
import time
from pathlib import Path

import engine

REPO = Path(__file__).resolve().parent.parent


def _modules():
    return sorted(m.name for m in pkgutil.walk_packages(engine.__path__, "engine."))


def test_engine_never_imports_ui():
    code = (
        "import importlib, sys\n"
        f"for m in {_modules()!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'tui')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""


def test_import_engine_is_light():
    code = (
        "import sys, engine, engine.cli, engine.manifest, engine.runs, engine.events, engine.tables\n"
        "print(','.join(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""


def test_help_is_fast_and_light():
    code = (
        "import sys, time\n"
        "from tui.entry import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('HEAVY=' + ','.join(m for m in ('torch', 'transformers', 'textual') if m in sys.modules))\n"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    elapsed = time.perf_counter() - t0
    assert "HEAVY=\n" in out.stdout + "\n" and "usage: lmconsole" in out.stdout
    assert elapsed < 1.0, elapsed


def test_another_package_named_engine_is_a_clear_message(tmp_path):
    """The import names are the fixed folders `engine` and `tui`: a foreign `engine` earlier on
    sys.path must stop lmconsole with one line that names it, not a confusing ImportError."""
    fake = tmp_path / "engine"
    fake.mkdir()
    (fake / "__init__.py").write_text("# some other project's engine\n")
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from tui.entry import main; sys.exit(main(['runs']))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2
    assert "is not lmconsole's engine" in out.stderr and str(fake) in out.stderr
    assert "Traceback" not in out.stderr
