"""What a run needs to be rerun exactly, recorded once in its directory when the job starts.

Files in the run directory (small: the diff is capped; nothing here holds a token):

``environment.json``
    Python, platform, the main packages' versions (the study report reads these), the device,
    CUDA / cuDNN / driver versions and GPU name, CPU threads, relevant environment variables
    (``CUDA_VISIBLE_DEVICES``, ``OMP_*``, ``HF_*``, ... never a name holding TOKEN, KEY, SECRET
    or PASSWORD, and every value passed through :func:`engine.secrets.redact`), the code
    (``git``: commit, branch, dirty flag of the repository holding the manifest), the manifest
    (``manifest``: path and SHA-256 of its text) and the data (``data``: the Hub revision, or a
    fingerprint of the local files).
``packages.txt``
    Every installed distribution, ``name==version``, sorted.
``manifest.toml``
    The manifest file's text as the job read it.
``code.diff``
    When the repository is dirty: ``git diff HEAD`` of tracked files, cut at
    :data:`DIFF_LIMIT` bytes with a note saying so.

``lmconsole diff`` and ``lmconsole rerun`` compare these between runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from engine.files import atomic_write_json, atomic_write_text
from engine.secrets import redact

PACKAGES = ("lmconsole", "torch", "transformers", "datasets", "huggingface_hub", "tokenizers", "sacrebleu", "nltk")
#: The diff of a dirty tree is kept up to this size (bytes); larger diffs are cut with a note.
DIFF_LIMIT = 256 * 1024
#: Local data files are fingerprinted by content up to this total size, above it by size and mtime.
HASH_DATA_LIMIT = 512 * 2**20
#: Environment variables that change what a job computes or where it reads from.
ENV_PREFIXES = ("HF_", "CUDA_", "OMP_", "MKL_", "TORCH_", "PYTORCH_", "NCCL_", "CUBLAS_", "TOKENIZERS_", "LMCONSOLE_")
ENV_NAMES = ("PYTHONHASHSEED", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_CACHE")
_SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
RERUN_MARK = "# lmconsole: rerun of "  # the first line of a manifest written by `lmconsole rerun`
FILES = ("environment.json", "packages.txt", "manifest.toml", "code.diff")


def environment(device: str = "") -> dict:
    """Versions, platform and the device (``device`` as the job resolved it, e.g. ``cuda:0``)."""
    out: dict = {"python": platform.python_version(), "platform": platform.platform(), "executable": sys.executable}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = ""
    out["device"] = device
    out["cpu_count"] = os.cpu_count() or 0
    try:
        import torch

        out["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            out["cuda"] = torch.version.cuda or ""
            out["gpu"] = torch.cuda.get_device_name(0)
            out["cudnn"] = str(torch.backends.cudnn.version() or "")
            out["driver"] = _driver_version()
    except Exception:  # noqa: BLE001 - the environment note must never fail a job
        pass
    return out


def _driver_version() -> str:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else ""


def env_vars(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables that matter to a job; secrets never (by name, and by value)."""
    environ = dict(os.environ) if environ is None else environ
    keep = {}
    for name in sorted(environ):
        if _SECRET_NAME.search(name):
            continue
        if name.startswith(ENV_PREFIXES) or name in ENV_NAMES:
            keep[name] = redact(environ[name])
    return keep


def installed_packages() -> list[str]:
    """Every installed distribution as ``name==version``, sorted by name (first of duplicates)."""
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return [seen[k] for k in sorted(seen)]


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None


def code_state(folder: Path) -> tuple[dict, str]:
    """The git state of the repository holding ``folder``, and the diff of its tracked files when dirty.

    Not in a repository (or no git): ``{"repository": False}`` and no diff.
    """
    root = _git(folder, "rev-parse", "--show-toplevel")
    if root is None:
        return {"repository": False}, ""
    commit = (_git(folder, "rev-parse", "HEAD") or "").strip()
    branch = (_git(folder, "rev-parse", "--abbrev-ref", "HEAD") or "").strip()
    status = _git(folder, "status", "--porcelain", "--untracked-files=no") or ""
    dirty = bool(status.strip())
    state = {"repository": True, "root": root.strip(), "commit": commit, "branch": branch, "dirty": dirty}
    if not dirty:
        return state, ""
    diff = redact(_git(folder, "diff", "HEAD", "--no-color", "--no-ext-diff") or "")
    data = diff.encode()
    state["diff_bytes"] = len(data)
    state["diff_sha256"] = hashlib.sha256(data).hexdigest()
    if len(data) > DIFF_LIMIT:
        cut = data[:DIFF_LIMIT].decode("utf-8", "ignore")
        diff = cut + f"\n# lmconsole: diff cut at {DIFF_LIMIT:,} of {len(data):,} bytes\n"
        state["diff_cut"] = True
    return state, diff


def data_fingerprint(spec: str, source: str) -> dict:
    """What the dataset ``spec`` resolved to: a Hub revision, or a fingerprint of the local files."""
    out: dict = {"dataset": spec, "source": source}
    folder = Path(source)
    if not folder.is_dir():  # a Hub id: the revision it resolves to now
        try:
            from huggingface_hub import HfApi

            out["revision"] = HfApi().dataset_info(source, timeout=10).sha or ""
        except Exception as exc:  # noqa: BLE001 - offline or not found: say so, never fail the job
            out["revision"] = ""
            out["revision_error"] = redact(f"{type(exc).__name__}: {str(exc).strip()[:160]}")
        return out
    if folder.parent.name == "snapshots":  # a cached Hub snapshot: the folder is named by its commit
        out["revision"] = folder.name
    files = sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith("."))
    total = sum(f.stat().st_size for f in files)
    by_content = total <= HASH_DATA_LIMIT
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.relative_to(folder)}\0{f.stat().st_size}\0".encode())
        if by_content:
            digest.update(hashlib.sha256(f.read_bytes()).digest())
        else:
            digest.update(str(f.stat().st_mtime_ns).encode())
    out.update(files=len(files), bytes=total, fingerprint=digest.hexdigest())
    out["by"] = "content" if by_content else "size+mtime"
    return out


def record(run_path: Path, manifest_path: Path, dataset: str, source: str, device: str = "") -> dict:
    """Write the run's environment files (once: an existing ``environment.json`` is kept); returns it."""
    out_path = run_path / "environment.json"
    if out_path.exists():
        try:
            return json.loads(out_path.read_text())
        except (OSError, ValueError):
            pass  # unreadable: write it anew
    env = environment(device)
    env["env"] = env_vars()
    manifest_path = Path(manifest_path)
    try:
        text = manifest_path.read_text()
    except OSError:
        text = ""
    if text:
        atomic_write_text(run_path / "manifest.toml", redact(text))
    if text.startswith(RERUN_MARK):  # a manifest `lmconsole rerun` wrote: the run it repeats
        env["rerun_of"] = text[len(RERUN_MARK) :].splitlines()[0].strip()
    env["manifest"] = {"path": str(manifest_path.resolve()), "sha256": hashlib.sha256(text.encode()).hexdigest()}
    env["git"], diff = code_state(manifest_path.resolve().parent)
    if diff:
        atomic_write_text(run_path / "code.diff", diff)
    env["data"] = data_fingerprint(dataset, source) if dataset else {}
    packages = installed_packages()
    atomic_write_text(run_path / "packages.txt", "\n".join(packages) + "\n")
    env["packages"] = len(packages)
    atomic_write_json(out_path, env)
    return env


def read_packages(run_path: Path) -> dict[str, str]:
    """A run's ``packages.txt`` as {name: version} (empty for runs recorded before it existed)."""
    try:
        lines = (run_path / "packages.txt").read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split("==", 1) for line in lines if "==" in line)


# -- comparing two runs -------------------------------------------------------------------------

#: environment.json keys shown by :func:`differences` under "environment" (the rest have sections).
_ENV_KEYS = ("python", "platform", "device", "cuda", "cudnn", "driver", "gpu", "cpu_count", "torch_threads")
_MISSING = "-"


def _flat(value) -> str:
    return _MISSING if value is None else json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def differences(run_a: Path, run_b: Path) -> list[tuple[str, str, str, str]]:
    """What differs between two run directories: (section, key, value in a, value in b) rows.

    Sections: ``config`` (``config.json`` keys), ``code`` (commit, branch, dirty, the diff's
    hash), ``data`` (dataset fingerprint or revision, tokenizer hash), ``environment``
    (Python, platform, device, CUDA, threads, recorded environment variables) and ``packages``
    (``packages.txt``). A value a run did not record shows as ``-``.
    """
    rows: list[tuple[str, str, str, str]] = []

    def add(section: str, a: dict, b: dict, keys=None) -> None:
        for key in keys if keys is not None else sorted(set(a) | set(b)):
            va, vb = _flat(a.get(key)), _flat(b.get(key))
            if va != vb:
                rows.append((section, key, va, vb))

    add("config", _read(run_a / "config.json"), _read(run_b / "config.json"))
    env_a, env_b = _read(run_a / "environment.json"), _read(run_b / "environment.json")
    code_keys = ("commit", "branch", "dirty", "diff_sha256", "diff_cut")
    add("code", env_a.get("git") or {}, env_b.get("git") or {}, code_keys)
    data_keys = ("source", "revision", "fingerprint")
    add("data", env_a.get("data") or {}, env_b.get("data") or {}, data_keys)
    add("data", env_a, env_b, ("tokenizer_sha256",))
    add("environment", env_a, env_b, _ENV_KEYS)
    add("environment", env_a.get("env") or {}, env_b.get("env") or {})
    pk_a, pk_b = read_packages(run_a), read_packages(run_b)
    if pk_a and pk_b:
        add("packages", pk_a, pk_b)
    else:  # a run recorded before packages.txt: the main versions environment.json holds
        add("packages", env_a, env_b, PACKAGES)
    return rows


def what_changed_since(run_path: Path, manifest_path: Path) -> list[tuple[str, str, str, str]]:
    """How the code and packages here and now differ from what ``run_path`` recorded (for a rerun)."""
    env = _read(run_path / "environment.json")
    rows: list[tuple[str, str, str, str]] = []
    state, _diff = code_state(Path(manifest_path).resolve().parent)
    before = env.get("git") or {}
    for key in ("commit", "branch", "dirty", "diff_sha256"):
        va, vb = _flat(before.get(key)), _flat(state.get(key))
        if va != vb:
            rows.append(("code", key, va, vb))
    old, new = read_packages(run_path), dict(p.split("==", 1) for p in installed_packages())
    if old:
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                rows.append(("packages", key, old.get(key, _MISSING), new.get(key, _MISSING)))
    return rows
