"""The service layer: Ragwall's operations (``Service``, in ``facade``) and what its callers
pass and receive. Front doors import from here only, never from a submodule.

Modules, bottom to top (a module imports only those above it in this list):

- ``datadir``, ``model_roots``, ``keys``, ``tokens``, ``oidc``, ``sessions``, ``audit``, ``names``,
  ``budgets``, ``usage``: one store or check each;
- ``index``: index versions, the active one and its lease and switch;
- ``runtime``: the wiring every concern shares (settings, registry, keys, audit, stores,
  models, write lock, data-dir lock, the active index);
- ``jobs``: the job runner (runs a callable; knows no job kinds), ``requests``: job bodies;
- ``upkeep``, ``rebuild``: retention and recovery; the reindex build protocol;
- the concerns: ``sources``, ``ingest_jobs``, ``access``, ``retrieve``, ``catalog``, ``snapshots``,
  ``health``, ``versions``, ``reindex``, ``comparisons``, ``job_status``, ``views``;
- ``facade``: ``Service``, one line per operation.
"""

from ragwall.errors import Conflict, InvalidRequest, NotFound
from ragwall.ingest.sources import Source
from ragwall.service.access import cli_actor
from ragwall.service.audit import AuditLog, VerifyReport
from ragwall.service.catalog import Fetched, SourceView
from ragwall.service.facade import Service
from ragwall.service.index import parse_version, version_name
from ragwall.service.keys import (
    DEV_PRINCIPAL,
    MAX_DAILY_REQUESTS,
    MAX_RPM,
    ApiKeyError,
    Budget,
    KeyRecord,
    KeyStore,
    Principal,
)
from ragwall.service.requests import DriftGate, DriftRequest, ReindexChanges, Side, parse_side
from ragwall.service.retrieve import Retrieval, RetrieveParams
from ragwall.service.sessions import MAX_SESSIONS, ConsoleSession
from ragwall.service.sources import SourceSummary
from ragwall.service.syncs import SyncState
from ragwall.service.tokens import WORKFLOW, Minted
from ragwall.service.usage import GROUPINGS, UsageReport, UsageRow
from ragwall.service.views import AuditStatus, FlaggedChunk, FlaggedPage, SourceRow

__all__ = [
    "DEV_PRINCIPAL",
    "GROUPINGS",
    "MAX_DAILY_REQUESTS",
    "MAX_RPM",
    "MAX_SESSIONS",
    "WORKFLOW",
    "ApiKeyError",
    "AuditLog",
    "AuditStatus",
    "Budget",
    "Conflict",
    "ConsoleSession",
    "DriftGate",
    "DriftRequest",
    "Fetched",
    "FlaggedChunk",
    "FlaggedPage",
    "InvalidRequest",
    "KeyRecord",
    "KeyStore",
    "Minted",
    "NotFound",
    "Principal",
    "ReindexChanges",
    "Retrieval",
    "RetrieveParams",
    "Service",
    "Side",
    "Source",
    "SourceRow",
    "SourceSummary",
    "SourceView",
    "SyncState",
    "UsageReport",
    "UsageRow",
    "VerifyReport",
    "cli_actor",
    "parse_side",
    "parse_version",
    "version_name",
]
