"""A retrieval snapshot: what one index version returned for a query set, and how it ranked.

A snapshot is a JSON file (``format: ragwall.snapshot/1``). It records, per query, the ranked hits
(chunk, document, source, scores, trust, flags), and once for the whole file the index it came
from (``index_id``: the registry's identity, ``collection``, ``index_version`` and its pipeline
``fingerprint``), the settings that shape ranking, and when it was taken. Two snapshots are only
compared when they come from the same index (:func:`check_comparable`).

A hit's ``chunk`` key is ``<doc sha256>:<char start>-<char end>`` (the span in the parsed
document), so the same passage is recognised across versions even though point ids are per
version; its ``doc`` is the document's file stem, which is what BEIR qrels judge.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from ragwall.datasets import DatasetError
from ragwall.payload import Key

FORMAT = "ragwall.snapshot/1"


class SnapshotHit(BaseModel):
    rank: int
    chunk_id: str
    chunk: str
    doc: str
    doc_sha256: str
    doc_name: str
    source_id: str
    scores: dict[str, float | None] = Field(default_factory=dict)
    trust: float
    flags: list[str] = Field(default_factory=list)


class SnapshotQuery(BaseModel):
    id: str
    text: str
    hits: list[SnapshotHit]


class Snapshot(BaseModel):
    format: Literal["ragwall.snapshot/1"] = FORMAT
    index_id: str
    collection: str
    index_version: str
    fingerprint: str
    embedding_model: str
    ranking: dict[str, Any]
    top_k: int
    taken_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())
    queries: list[SnapshotQuery]

    def by_id(self) -> dict[str, SnapshotQuery]:
        return {q.id: q for q in self.queries}


def hit_from(rank: int, hit: Any) -> SnapshotHit:
    """A snapshot hit from a search hit (``ragwall.retrieval.search.ScoredChunk``)."""
    prov = hit.provenance
    name = str(prov.get("doc_name") or prov.get("doc_uri") or "")
    sha = str(prov.get("doc_sha256", ""))
    return SnapshotHit(
        rank=rank,
        chunk_id=hit.id,
        chunk=f"{sha}:{prov.get(Key.CHAR_START)}-{prov.get(Key.CHAR_END)}",
        doc=Path(name).stem,
        doc_sha256=sha,
        doc_name=name,
        source_id=str(prov.get("source_id", "")),
        scores={k: (None if v is None else round(float(v), 6)) for k, v in hit.scores.items()},
        trust=round(float(hit.trust), 4),
        flags=sorted({f["kind"] for f in hit.flags}),
    )


def save_snapshot(snapshot: Snapshot, path: Path) -> None:
    """Write atomically (a temporary file renamed), so a crash never leaves half a snapshot."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(snapshot.model_dump_json(indent=1), encoding="utf-8")
    tmp.replace(path)


def load_snapshot(path: Path) -> Snapshot:
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read the snapshot {path}: {exc}") from exc
    return parse_snapshot(raw, str(path))


def parse_snapshot(raw: str | bytes | dict[str, Any], where: str = "snapshot") -> Snapshot:
    try:
        if isinstance(raw, dict):
            return Snapshot.model_validate(raw)
        return Snapshot.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "(top level)"
        raise DatasetError(
            f"{where} is not a Ragwall snapshot ({FORMAT}; make one with `ragwall eval "
            f"snapshot`): {loc}: {first.get('msg')}"
        ) from exc


def check_comparable(baseline: Snapshot, candidate: Snapshot) -> None:
    """Refuse to compare snapshots of two different indexes."""
    if baseline.index_id != candidate.index_id or baseline.collection != candidate.collection:
        raise DatasetError(
            f"the snapshots come from different indexes (collection {baseline.collection!r}, "
            f"index {baseline.index_id[:8]} vs collection {candidate.collection!r}, index "
            f"{candidate.index_id[:8]}); compare snapshots of one index"
        )


def select(snapshot: Snapshot, ids: list[str], where: str) -> list[SnapshotQuery]:
    """The snapshot's entries for ``ids``, in that order; refuses ids it does not hold."""
    held = snapshot.by_id()
    missing = [q for q in ids if q not in held]
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise DatasetError(
            f"{len(missing)} of the queries are not in the {where} snapshot ({shown}); take it "
            "again with this query file, or compare with the query file it was taken with"
        )
    return [held[q] for q in ids]
