"""The service layer: wiring and operations, with their audit records (see ``core``)."""

from ragwall.errors import Conflict, InvalidRequest, NotFound
from ragwall.service.audit import AuditLog, VerifyReport
from ragwall.service.console import AuditStatus, FlaggedChunk, FlaggedPage, SourceRow
from ragwall.service.core import (
    Retrieval,
    RetrieveParams,
    Service,
    SourceSummary,
    cli_actor,
)
from ragwall.service.drift import DriftGate, DriftRequest, Side, parse_side
from ragwall.service.index import parse_version, version_name
from ragwall.service.keys import DEV_PRINCIPAL, ApiKeyError, KeyRecord, KeyStore, Principal
from ragwall.service.reindex import ReindexChanges
from ragwall.service.sessions import MAX_SESSIONS, ConsoleSession

__all__ = [
    "MAX_SESSIONS",
    "AuditStatus",
    "ConsoleSession",
    "DriftGate",
    "DriftRequest",
    "FlaggedChunk",
    "FlaggedPage",
    "ReindexChanges",
    "Side",
    "SourceRow",
    "parse_side",
    "parse_version",
    "version_name",
    "DEV_PRINCIPAL",
    "ApiKeyError",
    "AuditLog",
    "Conflict",
    "InvalidRequest",
    "NotFound",
    "KeyRecord",
    "KeyStore",
    "Principal",
    "Retrieval",
    "RetrieveParams",
    "Service",
    "SourceSummary",
    "VerifyReport",
    "cli_actor",
]
