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
from functools import lru_cache
from pathlib import Path

from engine.errors import ResolveError

HUB_HOST = "huggingface.co"


def mirror_root(setting: str = "") -> Path | None:
    value = os.environ.get("LMCONSOLE_MIRROR") or setting
    return Path(value).expanduser() if value else None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def hub_endpoint() -> str:
    """The Hub endpoint huggingface_hub uses: ``HF_ENDPOINT`` (scheme, host and port) or the public Hub."""
    return (os.environ.get("HF_ENDPOINT") or f"https://{HUB_HOST}").rstrip("/")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Can we talk to the Hub? One HEAD request, answered within ``timeout`` seconds, cached per process.

    The request goes through huggingface_hub's own configured HTTP session, so it
    honours ``HF_ENDPOINT`` (scheme, host, port) and the proxy variables
    (``HTTPS_PROXY``...) exactly as downloads will. Any HTTP answer, even 401 or
    404, means reachable; a connection error or timeout means not. The request
    runs in a daemon thread with a hard deadline, since name resolution offline
    is not bounded by the HTTP timeout.
    """
    if hub_offline():
        return False
    proxies = tuple(
        os.environ.get(v, "")
        for v in (
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
            "NO_PROXY",
            "no_proxy",
        )
    )
    return _reachable(f"{hub_endpoint()}/api/models/{LEGACY_IDS['bert-base-uncased']}", proxies, timeout)


def probe_url(url: str, timeout: float = 3.0) -> bool:
    """One HEAD request with urllib (proxy variables honoured), for servers other than the Hub
    (huggingface_hub's session refuses every request under ``HF_HUB_OFFLINE``)."""
    return _reachable(url, (), timeout, via_hub_session=False)


@lru_cache(maxsize=16)
def _reachable(url: str, _proxies: tuple, timeout: float, via_hub_session: bool = True) -> bool:
    import threading

    answer: list[bool] = []

    def probe() -> None:
        try:
            if via_hub_session:
                from huggingface_hub import get_session

                get_session().head(url, timeout=timeout, follow_redirects=False)
            else:
                import urllib.error
                import urllib.request

                try:
                    urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
                except urllib.error.HTTPError:
                    pass  # an HTTP answer (401, 404...) is an answer
            answer.append(True)
        except Exception:  # noqa: BLE001 - any transport failure means "not reachable"
            answer.append(False)

    worker = threading.Thread(target=probe, name="hub-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return bool(answer and answer[0])


# Legacy ids of the models the Hub moved under an organisation: both spellings
# resolve, in mirrors and in the HF cache; the canonical one is what we write and document.
LEGACY_IDS = {
    "bert-base-uncased": "google-bert/bert-base-uncased",
    "bert-base-cased": "google-bert/bert-base-cased",
    "bert-large-uncased": "google-bert/bert-large-uncased",
    "bert-large-cased": "google-bert/bert-large-cased",
    "bert-base-multilingual-cased": "google-bert/bert-base-multilingual-cased",
    "bert-base-multilingual-uncased": "google-bert/bert-base-multilingual-uncased",
    "bert-base-chinese": "google-bert/bert-base-chinese",
    "bert-large-uncased-whole-word-masking": "google-bert/bert-large-uncased-whole-word-masking",
    "distilbert-base-uncased": "distilbert/distilbert-base-uncased",
    "distilbert-base-cased": "distilbert/distilbert-base-cased",
    "roberta-base": "FacebookAI/roberta-base",
    "roberta-large": "FacebookAI/roberta-large",
    "albert-base-v2": "albert/albert-base-v2",
}
_CANONICAL_TO_LEGACY = {v: k for k, v in LEGACY_IDS.items()}


def canonical_id(spec: str) -> str:
    """``bert-base-uncased`` -> ``google-bert/bert-base-uncased``; anything else unchanged."""
    return LEGACY_IDS.get(spec, spec)


def id_spellings(spec: str) -> list[str]:
    """The canonical id first, then the legacy one (if the model has one)."""
    canon = canonical_id(spec)
    legacy = _CANONICAL_TO_LEGACY.get(canon)
    return [canon] + ([legacy] if legacy else [])


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
        from engine.data.embedded import EMBEDDED_NAMES, ensure_embedded

        name = spec.split(":", 1)[1]
        if name not in EMBEDDED_NAMES:
            raise ResolveError(
                f"dataset {spec!r}: unknown embedded corpus; expected one of "
                + ", ".join(f"embedded:{n}" for n in EMBEDDED_NAMES)
            )
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
    where = "LMCONSOLE_MIRROR or settings.data_mirror" if root is None else root
    raise ResolveError(
        f"dataset {spec!r}: the Hugging Face Hub is unreachable and no cached copy or mirror was found. "
        f"Either put a copy in the Hub layout under a mirror folder ({where}/{spec}), "
        "or use a local folder / an embedded:<name> dataset."
    )


def looks_local(spec: str) -> bool:
    """A path, not a Hub id: absolute, ./ ../ ~ prefixed, or more than one '/' (Hub ids are OWNER/NAME)."""
    return spec.startswith(("/", "./", "../", "~", ".")) or spec.count("/") > 1 or "\\" in spec


def _missing_local(spec: str, what: str) -> ResolveError:
    return ResolveError(
        f"{what} {spec!r}: no such local folder ({Path(spec).expanduser().absolute()}); "
        "check the path (relative paths start from the folder you run lmconsole in)"
    )


def resolve_model_path(spec: str, mirror: str = "", what: str = "model") -> str:
    """Local folder or Hub id for ``from_pretrained`` (presets and run: refs: ``engine.models.source``)."""
    local = Path(spec).expanduser()
    if local.is_dir():
        if what == "model" and not (local / "config.json").exists():
            raise ResolveError(f"model {spec!r}: folder has no config.json; expected a saved transformers model")
        return str(local)
    if looks_local(spec):
        raise _missing_local(spec, what)
    root = mirror_root(mirror)
    names = id_spellings(spec)
    for name in names:
        if root is not None and (root / name / "config.json").exists():
            return str(root / name)
    if hub_reachable():
        return names[0]
    for name in names:
        cached = _cached_snapshot(name, "model")
        if cached is not None and (cached / "config.json").exists():
            return str(cached)
    raise ResolveError(
        f"{what} {spec!r}: the Hugging Face Hub is unreachable and no cached copy or mirror was found. "
        "Either download it where the Hub is reachable and copy it to a mirror folder "
        "(LMCONSOLE_MIRROR/<owner>/<name> with config.json, e.g. `hf download google-bert/bert-base-uncased "
        "--local-dir <mirror>/google-bert/bert-base-uncased`), or use a preset such as 'bert-tiny'."
    )


def folder_identity(folder: Path) -> list:
    """What a local dataset folder holds: its resolved path and its data files' names, sizes, mtimes."""
    folder = Path(folder)
    files = sorted(
        (str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns)
        for f in folder.rglob("*")
        if f.is_file() and f.suffix in (".parquet", ".arrow", ".json", ".jsonl", ".csv", ".txt", ".md")
    )
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
                raise ResolveError(
                    f"dataset {spec!r} ({config}): its cache {kwargs['cache_dir']} cannot be read "
                    f"({str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__}); "
                    f"delete that folder (rm -r {kwargs['cache_dir']}) and run again"
                ) from None
    except ValueError as exc:
        if "split" in str(exc).lower() or "Unknown split" in str(exc):
            raise ResolveError(f"dataset {spec!r} ({config}): no split {split!r}: {exc}") from None
        raise ResolveError(f"dataset {spec!r} ({config}): {exc}") from None
    except FileNotFoundError as exc:
        raise ResolveError(f"dataset {spec!r} ({config}): {exc}") from None


hub_reachable.cache_clear = _reachable.cache_clear  # type: ignore[attr-defined]  # as when it was an lru_cache
