"""Keep Hugging Face tokens out of everything the engine writes or shows."""

from __future__ import annotations

import os
import re

_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{20,}")


def hf_token() -> str | None:
    """The token from ``HF_TOKEN`` or the huggingface_hub login; never log the result."""
    tok = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if tok:
        return tok
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # noqa: BLE001
        return None


def redact(text: str) -> str:
    """Replace anything token-like, and the actual token if set, with a marker."""
    if not text:
        return text
    tok = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if tok and len(tok) >= 8:
        text = text.replace(tok, "<redacted>")
    return _TOKEN_RE.sub("<redacted>", text)


def redact_values(value):
    """``value`` (JSON-like: dicts, lists, strings) with every string passed through :func:`redact`:
    a token pasted into a manifest value never reaches a run's ``config.json`` or an export."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_values(v) for v in value]
    return value
