"""engine/ stays headless (no textual, rich or tui) and light (no torch on import or --help),
and neither engine/ nor tui/ imports in a circle (lazy imports inside functions included)."""

import ast
import pkgutil
import resource
from re import MULTILINE
from re import finditer as re_finditer
from re import search as re_search
import subprocess
import sys
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
        "import sys, engine, engine.cli.main, engine.manifest, engine.store.runs, engine.events, engine.tables\n"
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
    # CPU seconds of the child, not wall time: a busy shared machine must not fail this by luck
    # (the heavy imports it guards against cost several CPU seconds, far above the bound).
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert "HEAVY=\n" in out.stdout + "\n" and "usage: lmconsole" in out.stdout
    assert cpu < 1.0, cpu


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


def import_graph(folder: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, from the source: every ``import`` and
    ``from ... import`` anywhere in the file (top level or inside a function), relative or
    absolute. ``from pkg import name`` counts as importing ``pkg.name`` when that is a module."""
    files = {}
    for path in sorted(Path(folder).rglob("*.py")):
        parts = [package, *path.relative_to(folder).with_suffix("").parts]
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        here = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in files:  # engine.store.runs.RunStore -> engine.store.runs
                    name = name.rpartition(".")[0]
                if name and name != mod:
                    graph[mod].add(name)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            nxt = next(todo, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def describe_cycles(graph: dict[str, set[str]], cycles: list[list[str]]) -> str:
    lines = []
    for comp in cycles:
        inside = set(comp)
        lines.append("circle: " + ", ".join(comp))
        lines += [f"  {m} -> {', '.join(sorted(graph[m] & inside))}" for m in comp]
    return "\n".join(lines)


def test_no_import_cycles():
    for package in ("engine", "tui"):
        graph = import_graph(REPO / package, package)
        assert len(graph) > 10, sorted(graph)  # found the modules by itself
        cycles = import_cycles(graph)
        assert not cycles, describe_cycles(graph, cycles)


def test_cycle_finder_sees_a_lazy_circle(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from .sub import b\n")
    (tmp_path / "pkg" / "sub" / "b.py").write_text("def f():\n    from ..c import x\n")
    (tmp_path / "pkg" / "c.py").write_text("import pkg.a\nimport os\n")
    graph = import_graph(tmp_path / "pkg", "pkg")
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"}
    assert import_cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def test_batch_scripts_of_before_the_slurmjob_module_still_run_the_job_side():
    """A requeue reruns the stored sbatch script: older ones say `python -m engine.slurm`."""
    out = subprocess.run(
        [sys.executable, "-m", "engine.slurm", "--help"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert out.returncode == 0 and "--lmc-manifest" in out.stdout


def test_nothing_test_only_ships_and_tests_share_through_support():
    """The installed packages hold no test scaffolding; tests share helpers through tests/support only."""
    shipped = [p for top in ("engine", "tui") for p in (REPO / top).rglob("*.py")]
    for path in shipped:
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m.split(".")[0] for m in names} & {"pytest", "support", "conftest", "hypothesis"}, path
    cross = r"^\s*(from (conftest|bench|test_\w+)\b.* import|import (conftest|bench|test_\w+)\b)"
    for path in (REPO / "tests").rglob("*.py"):
        assert not re_search(cross, path.read_text(), MULTILINE), path


def test_no_history_in_the_code():
    """Comments and docs say what and why; which issue asked for a change lives in the tracker."""
    paths = [p for top in ("engine", "tui", "tests") for p in (REPO / top).rglob("*.py")] + [REPO / "README.md"]
    found = [f"{p.relative_to(REPO)}: {m.group(0)}" for p in paths for m in re_finditer(r"\b[Ii]ssue #?\d+", p.read_text())]
    assert not found, found
