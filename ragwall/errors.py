"""One rooted exception tree for the whole project.

Every error that a user can cause or fix derives from :class:`RagwallError`; its message says what
to do. Callers catch the narrowest class they can handle; the HTTP API answers each with its own
status and code (``ragwall.api.errors``), the CLI with a message and exit status 2.

* RagwallError
    * SourceError: SourceNotFound, SourceExists, SourceOutsideRoots, SourceBusy, MassRemoval
    * SecretFileError
    * JobCancelled
        * IngestCancelled
    * IdempotencyKeyReused
    * ApiKeyError: KeyNotFound
    * DatasetError
    * ReindexCheckFailed, GateFailed
    * InvalidRequest
    * Forbidden
    * RateLimited
    * NotFound: JobNotFound, VersionNotFound, ReportNotFound, ChunkNotFound
    * Conflict: JobRunning, SwitchRefused
    * DocumentError: UnsupportedDocument, EmptyDocument, EncryptedDocument, CorruptDocument,
      DocumentTooLarge, UnreadableDocument, WebPageError
    * StoreError
        * StoreLocked
    * ModelError
    * ModelNotAllowed
"""

from __future__ import annotations


class RagwallError(Exception):
    """Root of every error Ragwall raises on purpose."""


class SourceError(RagwallError):
    """A source is unknown, duplicated or invalid."""


class SourceNotFound(SourceError):
    """No source with that id is registered."""


class SourceExists(SourceError):
    """A source with that id is already registered."""


class SourceOutsideRoots(SourceError):
    """A source's folder lies outside ``RAGWALL_SOURCE_ROOTS``."""


class SourceBusy(SourceError):
    """The source is being ingested by another call; ``run_id`` names the running run and
    ``job_id`` the ingest job that runs it, when one does."""

    def __init__(self, message: str, run_id: str | None = None, job_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.job_id = job_id


class MassRemoval(SourceError):
    """A full sync would remove more of a source's live documents than
    ``RAGWALL_MAX_REMOVAL_SHARE`` allows (a mount gone, a share that lost its permissions, a
    sitemap come back empty): it removed nothing. ``would_remove`` of ``live`` documents."""

    def __init__(self, message: str, source_id: str, would_remove: int, live: int) -> None:
        super().__init__(message)
        self.source_id, self.would_remove, self.live = source_id, would_remove, live


class SecretFileError(RagwallError):
    """A file meant to receive a secret (``keys create --out``) cannot be created as a new,
    owner-only file: it exists, is a link, or its folder refuses it."""


class JobCancelled(RagwallError):
    """A job was cancelled (``DELETE /v1/jobs/{id}``, or the server stopping) and stopped."""


class IngestCancelled(JobCancelled):
    """An ingest stopped because its ``cancel`` event was set: its parser workers were killed and
    its pending chunks cleared; ``report`` is the partial ``IngestReport`` (what it had done)."""

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class IdempotencyKeyReused(RagwallError):
    """An ``Idempotency-Key`` that already started a job was sent with another request;
    ``job_id`` names that job."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class ApiKeyError(RagwallError):
    """A key could not be created or found."""


class KeyNotFound(ApiKeyError):
    """No active key has that id."""


class DatasetError(RagwallError):
    """A dataset folder is missing a file or holds malformed lines."""


class ReindexCheckFailed(RagwallError):
    """A reindex's new version does not match the registry; it was not activated."""


class GateFailed(RagwallError):
    """A reindex's drift gate failed: the new version is ``ready`` but not active; ``result``
    holds the job's result (the version, the gate's figures, the report)."""

    def __init__(self, message: str, result: dict) -> None:
        super().__init__(message)
        self.result = result


class InvalidRequest(RagwallError):
    """An operation's argument is malformed (e.g. a document named by anything but its sha256)."""


class Forbidden(RagwallError):
    """The caller's key does not hold what the operation needs (a scope, a group)."""


class RateLimited(RagwallError):
    """The caller's key spent its budget (``--rpm``, ``--daily-requests``);
    ``retry_after_s`` says when the next call can pass, ``headers`` are the response's
    ``Retry-After`` and RateLimit fields."""

    def __init__(
        self, message: str, retry_after_s: int, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.headers = headers or {"Retry-After": str(retry_after_s)}


class NotFound(RagwallError):
    """The thing an operation names does not exist (or cannot serve)."""


class JobNotFound(NotFound):
    """No job with that id."""


class VersionNotFound(NotFound):
    """No index version with that name, or one that cannot serve (retired, failed)."""


class ChunkNotFound(NotFound):
    """No chunk or document with that id that the caller may see (one answer for both)."""


class ReportNotFound(NotFound):
    """A job has no report (yet), or there is no such job."""


class Conflict(RagwallError):
    """The operation clashes with one in progress; ``job_id`` names it when there is one."""

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobRunning(Conflict):
    """A reindex or drift job is queued or running, and one runs at a time."""


class SwitchRefused(Conflict):
    """An index switch (activate, rollback) cannot happen now or to that version."""


class DocumentError(RagwallError):
    """A document could not be turned into chunks. ``reason`` is a short machine-readable code."""

    reason: str = "document_error"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class UnsupportedDocument(DocumentError):
    reason = "unsupported_type"


class EmptyDocument(DocumentError):
    reason = "empty"


class EncryptedDocument(DocumentError):
    reason = "encrypted"


class CorruptDocument(DocumentError):
    reason = "corrupt"


class DocumentTooLarge(DocumentError):
    reason = "too_large"


class UnreadableDocument(DocumentError):
    reason = "unreadable"


class WebPageError(DocumentError):
    """A web source's page (or its sitemap, or robots.txt) could not be read: a timeout, an
    HTTP error, a redirect to another host, a type that is not HTML, a body over the limit.
    ``transient`` failures (timeouts, connection errors, 429 and 5xx answers) keep the page's
    indexed version until a later sync reads it; the others remove it, as a failing file's."""

    reason = "fetch_failed"

    def __init__(self, message: str, reason: str, *, transient: bool = False) -> None:
        super().__init__(message, reason)
        self.transient = transient


class StoreError(RagwallError):
    """The vector store failed or is misconfigured."""


class StoreLocked(StoreError):
    """The embedded shard is open in another process."""


class ModelError(RagwallError):
    """A model could not be loaded or run."""


class ModelNotAllowed(RagwallError):
    """A request named a model outside the allowed ids and ``RAGWALL_MODEL_ROOTS``."""


def validation_message(exc: Exception) -> str:
    """A pydantic ``ValidationError`` as one line a person reads: ``field: message; …``, without
    pydantic's type tags, inputs and "For further information visit …" links."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    parts = []
    for error in errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        msg = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or "invalid value"
