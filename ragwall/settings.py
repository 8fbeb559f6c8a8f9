"""Settings, read from ``RAGWALL_*`` environment variables (and a ``.env`` file, if present)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: What a flagged hit's policy does: keep it with its flag, move it down, or drop it.
Policy = Literal["flag", "demote", "drop"]
POLICIES: tuple[str, ...] = ("flag", "demote", "drop")


@dataclass(frozen=True)
class RetrieveDefaults:
    """A retrieve's defaults and limits, the one home every front door and eval reads."""

    top_k: int = 8
    max_top_k: int = 100
    candidates: int = 30
    max_candidates: int = 1000
    fusion: str = "rrf"
    max_context_tokens: int = 2000
    context_tokens_range: tuple[int, int] = (64, 100_000)


RETRIEVE = RetrieveDefaults()
#: The least non-zero ``parse_memory_mb``: a warm parser process holds about 450 MB.
MIN_PARSE_MEMORY_MB = 512


@dataclass(frozen=True)
class DefenseConfig:
    """The query-time defenses' thresholds (``ragwall.defend.query`` applies them).

    They live here, below every package, so that ``Settings`` can take its defaults from them
    without the settings importing the defenses.
    """

    policy: Policy = "flag"
    injection_threshold: float = 0.5
    low_trust: float = 0.35
    flood_min: int = 3
    flood_cosine: float = 0.8
    mirror_coverage: float = 0.5
    mirror_z: float = 5.0
    mirror_lead_coverage: float = 0.8
    mirror_lead_z: float = 3.0
    trust_weight: float = 0.3
    # Tiers the flood and mirror heuristics watch: content an organisation did not curate.
    # Curated sources (verified, internal) often hold similar documents on purpose; they are
    # covered by the injection checks and by quarantine, not by these heuristics.
    heuristic_tiers: tuple[str, ...] = ("external", "untrusted")
    new_sources: frozenset[str] = field(default_factory=frozenset)


_D = DefenseConfig()  # the query-time defenses' defaults live in one place

TRUST_TIERS: tuple[str, ...] = ("verified", "internal", "external", "untrusted")
MAX_WEB_PAGES = 1_000_000  # the largest page cap a web source (or the server) may set
MAX_HALF_LIFE_DAYS = 36500  # the longest freshness half-life (a hundred years: no boost at all)

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def within_roots(path: Path, roots: list[Path]) -> bool:
    """Whether ``path`` (already resolved) lies under one of ``roots`` (already resolved)."""
    return any(path == root or path.is_relative_to(root) for root in roots)


class Settings(BaseSettings):
    """Every tunable of the service. Environment: ``RAGWALL_<FIELD>`` (upper case)."""

    model_config = SettingsConfigDict(env_prefix="RAGWALL_", env_file=".env", extra="ignore")

    @field_validator("source_roots", "model_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in value.split(os.pathsep) if part.strip()]
        return value

    @field_validator("web_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    model_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders a reindex request's model (embedding_model, injection_model) may "
        "come from, separated by ':'; empty: the data dir's models/. Ids are always allowed.",
    )

    def source_root_paths(self) -> list[Path]:
        """The source roots, resolved (symlinks and '..' gone)."""
        return [Path(root).expanduser().resolve() for root in self.source_roots]

    data_dir: Path = Field(
        default=Path("data"), description="Where sources, state and the embedded index live."
    )
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL; unset means the embedded qdrant-edge shard."
    )
    qdrant_api_key: SecretStr | None = None
    audit_key: SecretStr | None = Field(
        default=None,
        description="A secret for HMAC-keyed audit records; keep it outside the data dir. "
        "Unset: the chain is plain SHA-256, which whoever can write the data dir could rebuild.",
    )
    collection: str = "ragwall"

    embedding_model: str = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        description="A Hugging Face model id or a local sentence-transformers folder.",
    )
    embedding_device: str = "cpu"
    embed_batch_size: int = Field(default=64, ge=1, le=4096)

    chunk_max_tokens: int = Field(
        default=256, ge=16, le=8192, description="Upper bound, model tokens."
    )
    chunk_overlap_tokens: int = Field(default=32, ge=0, le=1024)
    chunk_max_chars: int = Field(default=1000, ge=100)
    chunk_new_after_chars: int = Field(default=800, ge=50)
    chunk_combine_under_chars: int = Field(default=200, ge=0)

    parse_workers: int = Field(
        default=1, ge=1, le=64, description="Parser processes beside the embedder."
    )
    parse_timeout_s: float = Field(
        default=600.0, gt=0, description="A document that parses longer fails."
    )
    embed_buffer_chunks: int = Field(
        default=2048,
        ge=1,
        description="Chunks gathered across documents before one embedding call. The encoder "
        "sorts them by length, so a larger buffer pads less: 512 embedded 13 % pad tokens on the "
        "100k bench corpus, 2048 embeds 3.5 %.",
    )
    optimize_every_chunks: int = Field(
        default=25_000,
        ge=0,
        description=(
            "During a long ingest, build the index (HNSW, sparse and payload indexes) and flush "
            "the write-ahead log after this many chunks, so no single index build has to hold "
            "the whole run in memory. 0 builds once, at the end of the run."
        ),
    )
    segment_max_kb: int = Field(
        default=100_000,
        ge=1_000,
        description=(
            "Embedded index only: largest segment the optimizer builds, in KB of vector data "
            "(100,000 KB is about 65k MiniLM vectors). Smaller segments cap the memory an index "
            "build needs; more segments make each query a little slower."
        ),
    )

    max_file_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1, description="Larger files are refused."
    )
    max_inflated_bytes: int = Field(
        default=200 * 1024 * 1024,
        ge=1024,
        description="A ZIP-based document (docx, pptx, xlsx, odt, epub) whose members inflate to "
        "more in total is refused before parsing.",
    )
    max_inflate_ratio: float = Field(
        default=100.0,
        ge=1,
        description="A ZIP-based document with a member (of 1 MiB or more inflated) that inflates "
        "more times its compressed size is refused before parsing (a ZIP bomb).",
    )
    max_archive_members: int = Field(
        default=10_000, ge=1, description="A ZIP-based document with more members is refused."
    )
    parse_memory_mb: int = Field(
        default=2048,
        ge=0,
        description="Most memory (resident, MB) a parser process may use, its loaded models "
        "(about 450 MB) included; a document that needs more fails as too_large. 0: no limit. "
        "Enforced on Linux.",
    )

    bm25_k1: float = Field(default=1.2, gt=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)

    dev_mode: bool = Field(
        default=False, description="Serve without API keys (every caller is an unrestricted admin)."
    )
    reranker_model: str | None = Field(
        default=None,
        description="A cross-encoder: Hugging Face id, local folder, or .onnx file. Unset: no reranker.",
    )
    rerank_by_default: bool = False
    injection_model: Path | None = Field(
        default=None,
        description=(
            "An injection model folder (model.onnx and card.json from `ragwall defend train`); "
            "unset: the one packaged with Ragwall; `none`: the rules alone."
        ),
    )
    injection_threshold: float = Field(
        default=_D.injection_threshold,
        ge=0.0,
        le=1.0,
        description=(
            "Chunks scoring at or above this get `injection`, and at ingest only such scores "
            "lower a chunk's trust. 0.5 is the model's calibrated threshold (its card says how "
            "it was chosen); the rules are on the same scale."
        ),
    )
    defenses_by_default: bool = Field(
        default=True, description="Run the query-time defenses unless a request turns them off."
    )
    default_policy: Policy = Field(
        default="flag",
        description="What happens to flagged hits when neither the request nor the key says.",
    )
    low_trust_threshold: float = Field(default=_D.low_trust, ge=0.0, le=1.0)
    flood_min: int = Field(
        default=_D.flood_min,
        ge=2,
        description="Near-duplicate candidates from one source that make a flood.",
    )
    flood_cosine: float = Field(default=_D.flood_cosine, ge=0.0, le=1.0)
    mirror_coverage: float = Field(
        default=_D.mirror_coverage,
        ge=0.0,
        le=1.0,
        description="Share of the query's terms a passage restating it holds (query_mirror).",
    )
    mirror_z: float = Field(
        default=_D.mirror_z,
        ge=0.0,
        description="How many standard deviations above the other candidates' cosine such a "
        "passage stands.",
    )
    mirror_lead_coverage: float = Field(
        default=_D.mirror_lead_coverage,
        ge=0.0,
        le=1.0,
        description="Share of the query's terms in a passage's first words (opens with it).",
    )
    mirror_lead_z: float = Field(
        default=_D.mirror_lead_z,
        ge=0.0,
        description="The z-score bar for a passage that opens with the query.",
    )
    heuristic_tiers: list[str] = Field(
        default_factory=lambda: list(_D.heuristic_tiers),
        description="Tiers the flood and query-mirror checks watch (uncurated content).",
    )
    trust_weight: float = Field(
        default=_D.trust_weight,
        ge=0.0,
        le=1.0,
        description="How strongly trust reorders hits (0: not at all); see defend.query.",
    )
    new_source_days: float = Field(
        default=7.0, ge=0.0, description="Sources younger than this have 'no history' (floods)."
    )
    query_encoder: Literal["onnx", "torch"] = Field(
        default="onnx",
        description=(
            "How the service embeds queries: 'onnx' exports the embedding model once to ONNX "
            "int8 (checked to keep cosine >= 0.99 with PyTorch) and runs it in onnxruntime; "
            "'torch' uses sentence-transformers. Passages are always embedded with PyTorch."
        ),
    )
    rrf_k: int = Field(default=60, ge=1, le=1000, description="The RRF constant k.")
    fuse_level: Literal["document", "chunk"] = Field(
        default="chunk",
        description=(
            "'chunk' fuses chunks inside Qdrant; 'document' fuses each branch's documents (a "
            "document ranked by its best chunk) and returns one hit per document, its best chunk "
            "(measured level with 'chunk' on the judged collections: docs/benchmarks.md)."
        ),
    )
    bm25_weight: float = Field(
        default=1.0, gt=0.0, le=10.0, description="The BM25 branch's RRF weight (dense: 1)."
    )
    keep_versions: int = Field(
        default=2,
        ge=1,
        le=100,
        description="Index versions kept able to serve (the active one included); older ones "
        "are deleted after a switch. 2 keeps one to roll back to.",
    )
    source_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description=(
            "Folders sources may live under (separated by ':'); empty: anywhere the server can "
            "read. A source outside them is refused, and a file that resolves outside them (a "
            "link) is not read."
        ),
    )
    max_request_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body accepted, however it is framed (chunked included).",
    )
    max_drift_request_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest body of an admin's POST /v1/eval/drift (it may carry two snapshots).",
    )
    refusal_records_per_minute: int = Field(
        default=120,
        ge=0,
        description="Refused calls (401/403/413/422) recorded in the audit trail per minute, at most.",
    )
    telemetry: bool = Field(
        default=True,
        description=(
            "Metrics at /metrics, one log line per request, and traces when an OTLP endpoint is "
            "set. Off: none of them (to measure their cost; /metrics answers 404)."
        ),
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description=(
            "A bearer token that may read GET /metrics (for a Prometheus server), besides admin "
            "keys. Without it, only admin keys may scrape."
        ),
    )
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="`ragwall serve`'s log lines: JSON, text, or auto (text on a terminal).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="The lowest level logged (DEBUG adds probes and scrapes)."
    )
    log_queries: bool = Field(
        default=False,
        description="Put each retrieve's query text in its log line (off: it may hold secrets).",
    )
    token_max_ttl_s: int = Field(
        default=3600,
        ge=60,
        le=24 * 3600,
        description="The longest lifetime an access token minted by POST /v1/tokens may have.",
    )
    token_issuer: str = Field(
        default="ragwall", description="The `iss` claim of the access tokens Ragwall mints."
    )
    token_audience: str = Field(
        default="ragwall",
        description="The `aud` claim of the access tokens Ragwall mints (and requires).",
    )
    oidc_issuer: str | None = Field(
        default=None,
        description="An identity provider whose access tokens are accepted (its `iss`); with "
        "RAGWALL_OIDC_AUDIENCE.",
    )
    oidc_audience: str | None = Field(
        default=None, description="The `aud` the identity provider's tokens must carry."
    )
    oidc_jwks_url: str | None = Field(
        default=None,
        description="The provider's keys (default: `jwks_uri` of its discovery document).",
    )
    oidc_groups_claim: str = Field(
        default="groups", description="The claim holding the caller's access groups."
    )
    oidc_scopes_claim: str = Field(
        default="scope",
        description="The claim holding the caller's scopes: `ragwall:retrieve`, `ragwall:admin`.",
    )
    oidc_rpm: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Each identity-provider subject's budget: calls in any 60 s (unset: none).",
    )
    oidc_daily_requests: int | None = Field(
        default=None,
        ge=1,
        le=200_000,
        description="Each identity-provider subject's budget: calls in any 24 h (unset: none).",
    )
    public_url: str | None = Field(
        default=None,
        description="The URL clients reach this server at (behind a proxy), as in "
        "`https://rag.example.com`; it names the protected resource in the OAuth metadata "
        "(default: the request's own URL).",
    )
    scheduler_tick_s: float = Field(
        default=5.0,
        ge=0.05,
        le=300.0,
        description="How often `ragwall serve` looks for sources whose sync is due.",
    )
    max_removal_share: float = Field(
        default=0.3,
        gt=0.0,
        le=1.0,
        description="A full sync that would remove more than this share of a source's live "
        "documents (and more than RAGWALL_MASS_REMOVAL_FLOOR of them) removes nothing and fails "
        "with `mass_removal`; 1 turns the check off.",
    )
    mass_removal_floor: int = Field(
        default=2,
        ge=0,
        le=1_000_000,
        description="Removing this many of a source's documents or fewer is never held back "
        "as a mass removal (deleting one file of a three-file source is not one).",
    )
    freshness_half_life_days: float | None = Field(
        default=None,
        gt=0,
        le=MAX_HALF_LIFE_DAYS,
        description="Boost recent documents in every retrieve that does not say otherwise: a "
        "new one counts 1.25 times its rank score, one this many days old 1.125 times (unset: "
        "no boost).",
    )
    web_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts web sources may read (separated by ','), as in `docs.example.com`; "
        "empty: any host the server can reach.",
    )
    web_timeout_s: float = Field(
        default=10.0, gt=0.0, le=300.0, description="A web source's request gives up after this."
    )
    web_delay_s: float = Field(
        default=1.0,
        ge=0.0,
        le=60.0,
        description="Seconds between two requests to a web source's host (a robots.txt "
        "Crawl-delay asks for more, up to 60).",
    )
    web_max_page_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=1,
        description="A larger web page (or sitemap) is not read: it fails with `too_large`.",
    )
    web_max_pages: int = Field(
        default=1000,
        ge=1,
        le=MAX_WEB_PAGES,
        description="A web source reads at most this many pages per sync, unless it sets "
        "its own `--max-pages`.",
    )
    console_session_minutes: int = Field(
        default=30,
        ge=1,
        le=24 * 60,
        description="How long an admin console sign-in lasts (server-side session, then sign in again).",
    )

    trust_priors: dict[str, float] = Field(
        default_factory=lambda: {
            "verified": 1.0,
            "internal": 0.8,
            "external": 0.5,
            "untrusted": 0.2,
        }
    )

    @field_validator("trust_priors")
    @classmethod
    def _check_priors(cls, value: dict[str, float]) -> dict[str, float]:
        missing = [t for t in TRUST_TIERS if t not in value]
        if missing:
            raise ValueError(f"trust_priors lacks tiers {missing}; give all of {list(TRUST_TIERS)}")
        bad = {k: v for k, v in value.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"trust priors must lie in 0..1, got {bad}")
        return value

    @field_validator("chunk_overlap_tokens")
    @classmethod
    def _check_overlap(cls, value: int, info) -> int:  # noqa: ANN001
        max_tokens = info.data.get("chunk_max_tokens", 256)
        if value >= max_tokens:
            raise ValueError("chunk_overlap_tokens must be smaller than chunk_max_tokens")
        return value

    @field_validator("parse_memory_mb")
    @classmethod
    def _check_parse_memory(cls, value: int) -> int:
        if 0 < value < MIN_PARSE_MEMORY_MB:
            raise ValueError(
                f"parse_memory_mb must be 0 (no limit) or at least {MIN_PARSE_MEMORY_MB}: a parser "
                "process needs about 450 MB for its models before it reads a document"
            )
        return value

    @property
    def state_path(self) -> Path:
        return self.data_dir / "ragwall.sqlite3"

    def audit_key_bytes(self) -> bytes | None:
        return self.audit_key.get_secret_value().encode() if self.audit_key else None

    @property
    def token_key_path(self) -> Path:
        """The access tokens' signing key (Ed25519, mode 0600, created on first use)."""
        return self.data_dir / "token-signing-key.pem"

    @property
    def audit_path(self) -> Path:
        return self.data_dir / "audit.log"

    @property
    def shard_path(self) -> Path:
        return self.data_dir / "qdrant" / self.collection

    @property
    def locks_dir(self) -> Path:
        """File locks: one per source's ingest, one per running job."""
        return self.data_dir / "locks"

    @property
    def reports_dir(self) -> Path:
        """Job reports (``<job id>/report.html``, ``drift.json``)."""
        return self.data_dir / "reports"

    @property
    def models_dir(self) -> Path:
        """Models exported or downloaded here (ONNX query encoder, reranker)."""
        return self.data_dir / "models"

    @property
    def owner_lock_path(self) -> Path:
        """Held by the one process that opens the embedded index."""
        return self.data_dir / "index.lock"
