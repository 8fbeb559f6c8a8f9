"""The service layer: wiring and operations, with their audit records (see ``core``)."""

from ragwall.errors import Conflict, InvalidRequest, NotFound
from ragwall.service.audit import AuditLog, VerifyReport
from ragwall.service.core import (
    Retrieval,
    RetrieveParams,
    Service,
    SourceSummary,
    cli_actor,
)
from ragwall.service.keys import DEV_PRINCIPAL, ApiKeyError, KeyRecord, KeyStore, Principal

__all__ = [
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
