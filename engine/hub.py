"""Resolution of datasets and models: Hub id, local mirror folder, or embedded data.

One function per kind decides *where* something comes from and returns a local
folder or Hub id; loading then always goes through the same
``datasets.load_dataset`` / ``from_pretrained`` calls. With the Hub unreachable
and nothing cached or mirrored, :class:`ResolveError` says so within seconds and
names the two ways out, instead of hanging on network retries.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from functools import lru_cache
from pathlib import Path

HUB_HOST = "huggingface.co"


class ResolveError(Exception):
    """A dataset or model that cannot be found; the message says what to do."""


def mirror_root(setting: str = "") -> Path | None:
    value = os.environ.get("LMCONSOLE_MIRROR") or setting
    return Path(value).expanduser() if value else None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect (cached per process) instead of minutes of HTTP retries."""
    if hub_offline():
        return False
    endpoint = os.environ.get("HF_ENDPOINT", f"https://{HUB_HOST}")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_snapshot(repo_id: str, repo_type: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, repo_type=repo_type, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means "not cached"
        return None


def resolve_dataset(spec: str, mirror: str = "") -> str:
    """Return a local folder or Hub id for ``load_dataset``.

    ``embedded:<name>`` -> generated folder; an existing local folder -> itself;
    ``owner/name`` found under the mirror -> that folder; else the Hub id when the
    Hub is reachable, else a cached snapshot, else :class:`ResolveError`.
    """
    if spec.startswith("embedded:"):
        from .data.embedded import EMBEDDED_NAMES, ensure_embedded

        name = spec.split(":", 1)[1]
        if name not in EMBEDDED_NAMES:
            raise ResolveError(f"dataset {spec!r}: unknown embedded corpus; expected one of "
                               + ", ".join(f"embedded:{n}" for n in EMBEDDED_NAMES))
        return str(ensure_embedded(name))
    local = Path(spec).expanduser()
    if local.is_dir():
        return str(local)
    if looks_local(spec):
        raise _missing_local(spec, "dataset")
    root = mirror_root(mirror)
    if root is not None and (root / spec).is_dir():
        return str(root / spec)
    if hub_reachable():
        return spec
    cached = _cached_snapshot(spec, "dataset")
    if cached is not None:
        return str(cached)
    raise ResolveError(
        f"dataset {spec!r}: the Hugging Face Hub is unreachable and no cached copy or mirror was found. "
        f"Either put a copy in the Hub layout under a mirror folder ({'LMCONSOLE_MIRROR or settings.data_mirror' if root is None else root}/{spec}), "
        "or use a local folder / an embedded:<name> dataset."
    )


def looks_local(spec: str) -> bool:
    """A path, not a Hub id: absolute, ./ ../ ~ prefixed, or more than one '/' (Hub ids are OWNER/NAME)."""
    return spec.startswith(("/", "./", "../", "~", ".")) or spec.count("/") > 1 or "\\" in spec


def _missing_local(spec: str, what: str) -> "ResolveError":
    return ResolveError(f"{what} {spec!r}: no such local folder ({Path(spec).expanduser().absolute()}); "
                        "check the path (relative paths start from the folder you run lmconsole in)")


def resolve_model_path(spec: str, mirror: str = "", what: str = "model") -> str:
    """Local folder or Hub id for ``from_pretrained`` (presets and run: refs are handled by models)."""
    local = Path(spec).expanduser()
    if local.is_dir():
        if what == "model" and not (local / "config.json").exists():
            raise ResolveError(f"model {spec!r}: folder has no config.json; expected a saved transformers model")
        return str(local)
    if looks_local(spec):
        raise _missing_local(spec, what)
    root = mirror_root(mirror)
    if root is not None and (root / spec / "config.json").exists():
        return str(root / spec)
    if hub_reachable():
        return spec
    cached = _cached_snapshot(spec, "model")
    if cached is not None and (cached / "config.json").exists():
        return str(cached)
    raise ResolveError(
        f"{what} {spec!r}: the Hugging Face Hub is unreachable and no cached copy or mirror was found. "
        "Either download it where the Hub is reachable and copy it to a mirror folder "
        "(LMCONSOLE_MIRROR/<owner>/<name> with config.json), or use a preset such as 'bert-tiny'."
    )


def folder_identity(folder: Path) -> list:
    """What a local dataset folder holds: its resolved path and its data files' names, sizes, mtimes."""
    folder = Path(folder)
    files = sorted((str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns)
                   for f in folder.rglob("*") if f.is_file() and f.suffix in (".parquet", ".arrow", ".json", ".jsonl",
                                                                              ".csv", ".txt", ".md"))
    return [str(folder.resolve()), files]


def _local_cache_dir(folder: Path) -> str:
    """An Arrow cache of ``datasets`` for this folder *as it is now*.

    ``datasets`` keys the cache of a local folder by the folder's name alone, so two
    folders called ``sst2-v1`` (a test cache and the user cache, or two mirror copies),
    or a folder whose files were regenerated, silently share one cache and the second
    reads the first one's rows. Keying by path and file sizes/mtimes prevents that.
    """
    import datasets

    digest = hashlib.sha256(json.dumps(folder_identity(folder)).encode()).hexdigest()[:16]
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "lmconsole-local" / f"{Path(folder).name}-{digest}")


def load_dataset_split(spec: str, config: str, split: str, mirror: str = ""):
    """``datasets.load_dataset`` on whatever :func:`resolve_dataset` found."""
    import datasets

    source = resolve_dataset(spec, mirror)
    kwargs = {"cache_dir": _local_cache_dir(Path(source))} if Path(source).is_dir() else {}
    try:
        try:
            return datasets.load_dataset(source, config or None, split=split, **kwargs)
        except (ValueError, FileNotFoundError):
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a damaged Arrow file in our cache of a local folder
            if "cache_dir" not in kwargs:
                raise
            import shutil

            shutil.rmtree(kwargs["cache_dir"], ignore_errors=True)  # rebuilt once from the folder
            try:
                return datasets.load_dataset(source, config or None, split=split, **kwargs)
            except Exception:  # noqa: BLE001
                raise ResolveError(f"dataset {spec!r} ({config}): its cache {kwargs['cache_dir']} cannot be read "
                                   f"({str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__}); "
                                   f"delete that folder (rm -r {kwargs['cache_dir']}) and run again") from None
    except ValueError as exc:
        if "split" in str(exc).lower() or "Unknown split" in str(exc):
            raise ResolveError(f"dataset {spec!r} ({config}): no split {split!r}: {exc}") from None
        raise ResolveError(f"dataset {spec!r} ({config}): {exc}") from None
    except FileNotFoundError as exc:
        raise ResolveError(f"dataset {spec!r} ({config}): {exc}") from None
