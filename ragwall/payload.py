"""The chunk payload contract, written once.

Every point in the store carries one :class:`ChunkPayload`. The ingest pipeline writes it; the
search filters on it (through :class:`Key`'s names), returns it as a hit's provenance
(:func:`provenance`: all but :data:`INTERNAL_FIELDS`), and the store indexes
:data:`KEYWORD_FIELDS`, :data:`FLOAT_FIELDS` and :data:`INTEGER_FIELDS`. The HTTP API's
``Provenance`` model declares the same fields (a test holds them equal).

Invariants:

- a search sees only points whose ``state`` is ``live``; ``pending`` points are a document
  version being written (see the ingest pipeline's crash-safety protocol);
- no stored field is a JSON boolean, since the embedded engine (qdrant-edge 0.9) matches no
  boolean value: ``hidden_text`` is stored as the integer 0 or 1 (:func:`hidden_flag`) and read
  back as a bool (:func:`provenance`). Indexes written before stored a boolean; reading accepts
  both, and opening a store rewrites them (``ragwall.retrieval.upgrade``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypedDict, get_type_hints


class ChunkPayload(TypedDict):
    """What every stored chunk carries: its text, where it came from, and how far to trust it."""

    text: str
    state: Literal["pending", "live"]
    source_id: str
    doc_uri: str  # the document's path (or URI) within its source
    doc_name: str  # a display name
    doc_sha256: str  # of the document's bytes: what a document quarantine names
    doc_version: str
    doc_filetype: str
    chunk_index: int
    chunk_count: int
    char_start: int | None  # in the parsed document's text
    char_end: int | None
    page_start: int | None
    page_end: int | None
    title_path: list[str]  # the headings above the chunk
    element_types: list[str]
    token_count: int
    parser: str
    parser_version: str
    embedding_model: str
    ingest_run_id: str
    ingested_at: str  # ISO 8601, UTC
    doc_modified_at: str  # ISO 8601, UTC: the file's mtime when this content was ingested
    doc_modified_ts: int  # the same in epoch seconds (range-indexed: ``modified_after``)
    trust_tier: str
    trust_prior: float  # the tier's prior
    trust: float  # the prior, lowered by what the detectors found
    injection_score: float
    injection_reasons: list[str]
    injection_span: list[int] | None  # [start, end) of the chunk text that fired
    hidden_text: int  # 1: the chunk carries text its document hides; 0: not (hidden_flag)
    hidden_reasons: list[str]
    groups: list[str]  # access groups: a key bound to groups sees chunks sharing one


class Key:
    """Payload field names that code filters or indexes on (no string literal elsewhere)."""

    TEXT = "text"
    STATE = "state"
    SOURCE_ID = "source_id"
    DOC_URI = "doc_uri"
    DOC_SHA256 = "doc_sha256"
    DOC_VERSION = "doc_version"
    GROUPS = "groups"
    INGEST_RUN_ID = "ingest_run_id"
    TRUST = "trust"
    TRUST_PRIOR = "trust_prior"
    CHUNK_INDEX = "chunk_index"
    CHAR_START = "char_start"
    CHAR_END = "char_end"
    INJECTION_SCORE = "injection_score"
    INJECTION_REASONS = "injection_reasons"
    INJECTION_SPAN = "injection_span"
    HIDDEN_TEXT = "hidden_text"
    HIDDEN_REASONS = "hidden_reasons"
    DOC_MODIFIED_AT = "doc_modified_at"
    DOC_MODIFIED_TS = "doc_modified_ts"


LIVE, PENDING = "live", "pending"

#: Every field of a chunk payload, in declaration order.
PAYLOAD_FIELDS: tuple[str, ...] = tuple(get_type_hints(ChunkPayload))
#: Fields that are bookkeeping or content, not provenance: not repeated in a hit's provenance.
INTERNAL_FIELDS: frozenset[str] = frozenset({Key.STATE, Key.TEXT})
#: Fields the store gives a keyword index (filters and deletes run on them).
KEYWORD_FIELDS: tuple[str, ...] = (
    Key.SOURCE_ID,
    Key.DOC_URI,
    Key.DOC_SHA256,
    Key.DOC_VERSION,
    Key.GROUPS,
    Key.STATE,
    Key.INGEST_RUN_ID,
)
#: Fields the store gives a float (range) index (trust filters every retrieve; the injection
#: score finds flagged chunks for the console).
FLOAT_FIELDS: tuple[str, ...] = (Key.TRUST, Key.INJECTION_SCORE)
#: Fields the store gives an integer index (``hidden_text``: 0 or 1, which both engines match;
#: ``doc_modified_ts``: the ``modified_after`` range filter).
INTEGER_FIELDS: tuple[str, ...] = (Key.HIDDEN_TEXT, Key.DOC_MODIFIED_TS)


def hidden_flag(hidden: bool) -> int:
    """``hidden_text`` as stored: 1 or 0 (a filter matches it on both engines; a bool it
    would not on the embedded one)."""
    return 1 if hidden else 0


def provenance(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A hit's provenance: its payload but :data:`INTERNAL_FIELDS`, ``hidden_text`` as a bool
    (stored as 0/1, or as a bool by indexes written before)."""
    out = {k: v for k, v in payload.items() if k not in INTERNAL_FIELDS}
    if Key.HIDDEN_TEXT in out and out[Key.HIDDEN_TEXT] is not None:
        out[Key.HIDDEN_TEXT] = bool(out[Key.HIDDEN_TEXT])
    return out
