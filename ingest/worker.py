"""The parse-and-chunk step, run in a worker process.

Parsing runs beside embedding (which keeps the main process busy), a parser that hangs is killed
at its timeout, and one that crashes its process fails only its own document. The worker returns
plain dicts, so nothing but data crosses the process boundary.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from ragwall.defend.hidden_docx import find_hidden_in_file
from ragwall.defend.hidden_html import find_hidden
from ragwall.errors import DocumentError
from ragwall.ingest.chunk import ChunkConfig, chunk_elements, load_tokenizer
from ragwall.ingest.limits import ArchiveLimits
from ragwall.ingest.parse import (
    _sentence_pipeline,
    _spacy_pipeline,
    _use_packaged_spacy_model,
    parse_file,
)
from ragwall.retrieval.sparse import tokenize


@lru_cache(maxsize=2)
def _tokenizer(model_path: str):  # noqa: ANN202
    return load_tokenizer(model_path)


def warm_up() -> None:
    """Load the parsers' models before the first document arrives."""

    _use_packaged_spacy_model()
    _spacy_pipeline()
    _sentence_pipeline()
    import unstructured.partition.auto  # noqa: F401


def parse_and_chunk(
    path: str,
    model_path: str,
    chunk_config: dict[str, int],
    max_bytes: int,
    archive: ArchiveLimits | None = None,
) -> dict[str, Any]:
    """``{"ok": True, parser..., "chunks": [...]}`` or ``{"ok": False, "reason", "message"}``.

    A ``MemoryError`` propagates: the process's memory limit is the caller's (``ingest.pool``).
    """
    try:
        parsed = parse_file(Path(path), max_bytes, archive)
        chunks = chunk_elements(
            parsed.elements, _tokenizer(model_path), ChunkConfig(**chunk_config)
        )
    except DocumentError as exc:
        return {"ok": False, "reason": exc.reason, "message": str(exc)}
    if not chunks:
        return {"ok": False, "reason": "empty", "message": "no text could be extracted"}
    if parsed.flattened_html is not None:
        hidden = find_hidden(parsed.flattened_html)
    else:
        hidden = find_hidden_in_file(Path(path))
    out = []
    for chunk in chunks:
        record = asdict(chunk)
        record["terms"] = tokenize(chunk.text)
        out.append(record)
    return {
        "ok": True,
        "hidden": [asdict(h) for h in hidden],
        "parser": parsed.parser,
        "parser_version": parsed.parser_version,
        "filetype": parsed.filetype,
        "notes": list(parsed.notes),
        "chunks": out,
    }
