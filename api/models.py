"""Request and response models of the HTTP API (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ragwall.durations import iso_epoch
from ragwall.settings import MAX_HALF_LIFE_DAYS, MAX_WEB_PAGES, RETRIEVE, TRUST_TIERS, Policy

MAX_QUERY_CHARS = 4096


def clean_text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates from "\ud800" escapes
        raise ValueError("text must be valid Unicode (it holds an unpaired surrogate)") from exc
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    return value


class Filters(BaseModel):
    """Narrow a search. Unknown fields are refused, so a typo never silently widens a search."""

    model_config = ConfigDict(extra="forbid", strict=True)  # "5" or true is not an int

    sources: list[str] | None = Field(
        default=None, max_length=100, description="Only these source ids."
    )
    groups: list[str] | None = Field(
        default=None,
        max_length=100,
        description="Only chunks in one of these access groups (within the key's own groups).",
    )
    min_trust: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Minimum chunk trust."
    )
    doc_sha256: list[str] | None = Field(
        default=None, max_length=100, description="Only chunks of these documents (by sha256)."
    )
    modified_after: str | None = Field(
        default=None,
        max_length=40,
        description="Only documents modified at or after this ISO 8601 time (UTC if no zone).",
    )

    @field_validator("modified_after")
    @classmethod
    def _moment(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                iso_epoch(value)
            except ValueError as exc:
                raise ValueError(
                    "modified_after must be an ISO 8601 time (2026-01-31T00:00Z)"
                ) from exc
        return value

    def modified_after_ts(self) -> int | None:
        if self.modified_after is None:
            return None
        return int(iso_epoch(self.modified_after))

    @field_validator("sources", "groups", "doc_sha256")
    @classmethod
    def _strings(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            for item in value:
                clean_text(item)
                if not item or len(item) > 200:
                    raise ValueError("each entry must be 1-200 characters")
        return value


class RetrieveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "5" or true is not an int

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="The search text.")
    top_k: int = Field(
        default=RETRIEVE.top_k, ge=1, le=RETRIEVE.max_top_k, description="Hits to return."
    )
    candidates: int = Field(
        default=RETRIEVE.candidates,
        ge=1,
        le=RETRIEVE.max_candidates,
        description="Candidates each branch fetches (and the reranker sees).",
    )
    filters: Filters = Field(default_factory=Filters)
    fusion: Literal["rrf", "dbsf"] = "rrf"
    rerank: bool | None = Field(
        default=None, description="Rerank with the cross-encoder; default: the server's setting."
    )
    defenses: bool | None = Field(
        default=None,
        description="Run the query-time defenses (flags); default: the server's setting (on).",
    )
    policy: Policy | None = Field(
        default=None,
        description=(
            "Flagged hits: 'flag' returns them with their flags, 'demote' ranks them after every "
            "unflagged hit, 'drop' leaves them out (counted in `dropped`). Default: the key's "
            "policy, else the server's ('flag')."
        ),
    )
    freshness_half_life_days: float | None = Field(
        default=None,
        gt=0,
        le=MAX_HALF_LIFE_DAYS,
        description="Boost recent documents: a new one counts 1.25 times its rank score, one "
        "this many days old 1.125 times (default: RAGWALL_FRESHNESS_HALF_LIFE_DAYS; unset: none).",
    )
    context: bool = Field(
        default=False, description="Also return a spotlighted `context` string for a prompt."
    )
    max_context_tokens: int = Field(
        default=RETRIEVE.max_context_tokens,
        ge=RETRIEVE.context_tokens_range[0],
        le=RETRIEVE.context_tokens_range[1],
        description="Token budget of `context`.",
    )

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        clean_text(value)
        if not value.strip():
            raise ValueError("query must contain non-whitespace text")
        return value


class Scores(BaseModel):
    dense: float | None = Field(
        description="Cosine similarity from the dense branch (None: not among its candidates)."
    )
    sparse: float | None = Field(
        description="BM25 score from the sparse branch (None: not among its candidates)."
    )
    fused: float | None = Field(description="Qdrant's fusion score (RRF or DBSF).")
    rerank: float | None = Field(description="Cross-encoder score, when reranked.")
    freshness: float | None = Field(
        default=None,
        description="The recency multiplier, when `freshness_half_life_days` applied (1 to 1.25).",
    )


class Flag(BaseModel):
    kind: str
    reason: str


class Provenance(BaseModel):
    model_config = ConfigDict(extra="allow")

    injection_score: float | None = None
    injection_reasons: list[str] = Field(default_factory=list)
    injection_span: list[int] | None = Field(
        default=None,
        description="Characters [start, end) of the chunk text that fired the injection detector.",
    )
    hidden_text: bool | None = None
    hidden_reasons: list[str] = Field(default_factory=list)
    source_id: str
    doc_uri: str
    doc_name: str | None = None
    doc_sha256: str
    doc_version: str | None = None
    doc_filetype: str | None = None
    chunk_index: int
    chunk_count: int | None = None
    char_start: int | None = None
    char_end: int | None = None
    page_start: int | None = None
    page_end: int | None = None
    title_path: list[str] = Field(default_factory=list)
    element_types: list[str] = Field(default_factory=list)
    token_count: int | None = None
    parser: str | None = None
    parser_version: str | None = None
    embedding_model: str | None = None
    ingest_run_id: str | None = None
    ingested_at: str | None = None
    doc_modified_at: str | None = None
    doc_modified_ts: int | None = None
    trust_tier: str | None = None
    trust_prior: float | None = None
    groups: list[str] = Field(default_factory=list)


class Hit(BaseModel):
    id: str
    text: str
    trust: float
    scores: Scores
    flags: list[Flag] = Field(default_factory=list)
    provenance: Provenance
    also_in: list[dict] = Field(
        default_factory=list,
        description=(
            "The same passage in other sources (mirrored content), collapsed into this hit: "
            "id, source_id, doc_uri, doc_name, doc_sha256, trust_tier, trust of each copy."
        ),
    )


class RerankInfo(BaseModel):
    requested: bool
    applied: bool
    model: str | None = None
    skipped_reason: str | None = None


class ContextOut(BaseModel):
    text: str = Field(description="Delimited, datamarked passages with provenance, for a prompt.")
    included: list[str] = Field(description="Ids of the hits in `text`, in order.")
    truncated: str | None = Field(description="The id of a hit cut to fit the budget, if any.")
    tokens: int = Field(description="Tokens of `text` by the embedding model's tokenizer.")


class RetrieveResponse(BaseModel):
    request_id: str
    index_version: str = Field(description="The index version that answered (e.g. 'v3').")
    hits: list[Hit]
    candidates: int = Field(description="How many fused candidates the final ranking chose from.")
    rerank: RerankInfo
    defenses: bool = Field(description="Whether the query-time defenses ran.")
    policy: str | None = Field(description="The policy applied to flagged hits.")
    dropped: int = Field(default=0, description="Flagged hits left out by the 'drop' policy.")
    context: ContextOut | None = None
    timings_ms: dict[str, float]


class QuarantineIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "5" or true is not an int

    reason: str = Field(default="", max_length=1000)


class QuarantineOut(BaseModel):
    kind: Literal["source", "document"]
    value: str
    quarantined: bool = Field(description="The state after the call.")
    changed: bool = Field(description="False when it already was in that state.")


class ErrorBody(BaseModel):
    code: str = Field(
        description="A machine-readable reason, e.g. 'invalid_request', 'unauthorized'."
    )
    message: str
    details: list[dict] | None = None
    job_id: str | None = Field(
        default=None, description="The job a 409 is about (the reindex that is running)."
    )


class ErrorResponse(BaseModel):
    error: ErrorBody


class SourceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "5" or true is not an int

    id: str = Field(min_length=1, max_length=64)
    path: str = Field(
        min_length=1,
        max_length=4096,
        description="A folder or glob on the server, or a web site's sitemap (or list of "
        "URLs) as an http(s) URL.",
    )
    kind: Literal["folder", "glob", "web"] | None = Field(
        default=None, description="Checked against `path` (default: what `path` is)."
    )
    max_pages: int | None = Field(
        default=None, ge=1, le=MAX_WEB_PAGES, description="A web source's page cap per sync."
    )
    trust: Literal["verified", "internal", "external", "untrusted"] = "internal"
    groups: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Access groups whose keys see the source. None: only keys without groups "
        "(unrestricted keys) see it; a group-bound key never does.",
    )
    refresh: str | None = Field(
        default=None, max_length=16, description="Sync it every 30s, 15m, 1h, 7d (default: never)."
    )
    stale_after: str | None = Field(
        default=None, max_length=16, description="Flag its documents older than this (180d)."
    )


class SourceScheduleIn(BaseModel):
    """A source's new schedule: a field left out stays as it is; null removes it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    refresh: str | None = Field(default=None, max_length=16, description="30s, 15m, 1h, 7d.")
    stale_after: str | None = Field(default=None, max_length=16, description="As refresh.")


class SyncFailure(BaseModel):
    at: str
    reason: str = Field(description="mass_removal, cancelled or error.")
    error: str | None = None


class SourceOut(BaseModel):
    id: str
    kind: str
    location: str
    trust_tier: str
    groups: list[str]
    created_at: str
    max_pages: int | None = None
    refresh: str | None = None
    stale_after: str | None = None
    last_sync_at: str | None = Field(default=None, description="When its last sync ended.")
    last_sync_ok: bool | None = None
    next_sync_at: str | None = Field(default=None, description="When its next sync is due.")
    last_failure: SyncFailure | None = None


class SourceRemoved(BaseModel):
    """A removed source: every chunk it contributed is gone from every ready version."""

    source_id: str
    chunks: int = Field(description="Chunks deleted from the active version.")


class IngestSummary(BaseModel):
    documents: int
    chunks: int
    unchanged: int
    removed: int
    failed: list[dict]
    notes: list[dict] = Field(
        default_factory=list,
        description="Documents indexed with something left out (an unreadable attachment, irregular rows).",
    )


class JobProgress(BaseModel):
    stage: str
    documents_done: int = 0
    documents_total: int = 0
    chunks: int = 0
    reused_vectors: int = Field(
        default=0, description="Chunks carried over with their stored vectors."
    )
    elapsed_s: float = 0.0
    eta_s: float | None = Field(
        default=None, description="Seconds left, estimated from the pace so far."
    )


class JobOut(BaseModel):
    job_id: str
    kind: str
    actor: str | None = Field(
        default=None, description="Who started it: a key id, `cli:<user>`, or `scheduler`."
    )
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    created_at: str
    started_at: str | None
    finished_at: str | None
    params: dict = Field(
        description="What the job was asked to do (a reindex's settings, an ingest's source)."
    )
    report: str | None = Field(
        default=None,
        description="Where the job's drift report is (a drift job, a gated reindex).",
    )
    progress: JobProgress | None
    version: str | None = Field(
        description="The version a reindex built (active on success; ready when its gate failed)."
    )
    previous: str | None = Field(description="The version active before it.")
    result: dict | None = Field(
        description="When it ended: a reindex's figures, a drift job's comparison, an ingest's "
        "summary (`documents`, `chunks`, `unchanged`, `removed`, `failed`, ..., as IngestSummary; "
        "what it had done when cancelled)."
    )
    error: str | None


class VersionOut(BaseModel):
    version: str
    state: Literal["building", "ready", "active", "retired", "failed"]
    created_at: str
    finished_at: str | None
    fingerprint: dict = Field(description="The pipeline settings it was built with.")
    documents: int
    chunks: int
    job_id: str | None
    error: str | None


class IndexOut(BaseModel):
    active: str
    versions: list[VersionOut]
    pending_changes: list[str] = Field(
        description="Pipeline settings where the environment differs from the active version "
        "(a reindex applies them)."
    )
    running_job: str | None


class ActivateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str | int = Field(description="A ready version: 'v3' or 3.")


class SwitchOut(BaseModel):
    active: str
    previous: str


class Health(BaseModel):
    status: str
    detail: dict[str, str] = Field(default_factory=dict)


assert set(TRUST_TIERS) == {"verified", "internal", "external", "untrusted"}
