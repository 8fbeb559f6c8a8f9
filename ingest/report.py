"""What an ingest run did: counts, and each file it failed, skipped or indexed with a note.

Invariant: every file (or web page) a run finds ends in exactly one place: written
(``documents``), ``unchanged``, ``failed`` (a file Ragwall reads and could not index; the run's
exit status is 1), or ``skipped`` (a file of a type Ragwall does not read, never opened; a page
robots.txt disallows). Paths are the file as found in the source (a page's URL); where a link
led elsewhere, ``target`` is where it led.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Note:
    path: str
    note: str


@dataclass
class Failure:
    path: str
    reason: str
    message: str
    #: The file ``path`` resolves to, where a link made it another file; else ``None``.
    target: str | None = None
    #: The document's indexed version stays (a web page's transient failure: a timeout, a 5xx).
    kept: bool = False

    def as_dict(self) -> dict[str, str | bool]:
        out: dict[str, str | bool] = {
            "path": self.path,
            "reason": self.reason,
            "message": self.message,
        }
        if self.target is not None:
            out["target"] = self.target
        if self.kept:
            out["kept"] = True
        return out


@dataclass
class Skipped:
    path: str
    reason: str  # "unsupported_type"
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason, "message": self.message}


@dataclass
class IngestReport:
    run_id: str
    source_id: str
    documents: int = 0  # documents (re)indexed by this run
    chunks: int = 0  # chunks written by this run
    unchanged: int = 0
    removed: int = 0
    failed: list[Failure] = field(default_factory=list)
    #: Files of a type Ragwall does not read (images, audio, archives): not opened, not failed.
    skipped: list[Skipped] = field(default_factory=list)
    #: Documents indexed with something left out (an unreadable attachment, irregular rows).
    notes: list[Note] = field(default_factory=list)
    #: The run was cancelled before it finished (see ``Ingester.ingest``).
    cancelled: bool = False
    #: HTTP requests a web source's sync made (``None`` for files).
    requests: int | None = None
    seconds: float = 0.0
    #: Wall seconds the main process spent per stage: waiting for the parser, embedding, scoring
    #: for injection, writing (upserts and commits), building the index (optimize and flush).
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def _add(self, stage: str, since: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + (
            time.perf_counter() - since
        )

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "documents": self.documents,
            "chunks": self.chunks,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "failed": [f.as_dict() for f in self.failed],
            "skipped": [s.as_dict() for s in self.skipped],
            "notes": [{"path": n.path, "note": n.note} for n in self.notes],
        }
        if self.cancelled:
            out["cancelled"] = True
        if self.requests is not None:
            out["requests"] = self.requests
        return out
