"""Which models a request may name (a reindex's ``embedding_model`` and ``injection_model``).

Invariant: a value that reaches Ragwall over HTTP is never a way to look at the server's
filesystem. It is accepted only when it is

- the environment's own setting (what the operator configured), or ``none`` for the injection
  model;
- a model id (``org/name`` or ``name``, no path separators beyond the one ``/``, no ``..``) that
  is not also a path relative to the server's working directory; ids load from the packaged
  model or the local Hugging Face cache, never the network;
- a folder under ``RAGWALL_MODEL_ROOTS`` (default: the data dir's ``models/``), ``..`` and links
  resolved first.

Everything else is refused with one message, whether or not the path exists and whatever it
holds, so the answer tells nothing about files outside the roots.
"""

from __future__ import annotations

import re
from pathlib import Path

from ragwall.errors import ModelNotAllowed
from ragwall.settings import Settings, within_roots

_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
FIELDS = ("embedding_model", "injection_model")


def model_roots(settings: Settings) -> list[Path]:
    """The folders a requested model may live in, resolved."""
    roots = settings.model_roots or [settings.models_dir]
    return [Path(root).expanduser().resolve() for root in roots]


def is_model_id(value: str) -> bool:
    """``org/name`` or ``name`` that is not also a relative path on this server."""
    return bool(_MODEL_ID.fullmatch(value)) and ".." not in value and not Path(value).exists()


def check_requested_models(settings: Settings, given: dict[str, object]) -> None:
    """Raise :class:`ModelNotAllowed` unless every model a request names is allowed (see the
    module docstring)."""
    roots = model_roots(settings)
    for field in FIELDS:
        value = given.get(field)
        if value is None:
            continue
        text = str(value)
        configured = getattr(settings, field)
        if configured is not None and text == str(configured):
            continue
        if field == "injection_model" and text.lower() == "none":
            continue
        if field == "embedding_model" and is_model_id(text):
            continue
        if within_roots(Path(text).expanduser().resolve(), roots):
            continue
        raise ModelNotAllowed(
            f"{field}: give a model id (org/name) or a folder under RAGWALL_MODEL_ROOTS "
            f"({', '.join(str(r) for r in roots)}); other paths are not accepted over the API. "
            "Copy the model into a model root, or set RAGWALL_MODEL_ROOTS on the server."
        )
