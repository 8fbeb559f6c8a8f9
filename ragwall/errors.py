"""One rooted exception tree for the whole project.

Every error that a user can cause or fix derives from :class:`RagwallError`; its message says what
to do. Callers catch the narrowest class they can handle.
"""

from __future__ import annotations


class RagwallError(Exception):
    """Root of every error Ragwall raises on purpose."""


class ConfigError(RagwallError):
    """A setting is missing or invalid."""


class SourceError(RagwallError):
    """A source is unknown, duplicated or invalid."""


class SourceNotFound(SourceError):
    """No source with that id is registered."""


class SourceExists(SourceError):
    """A source with that id is already registered."""


class SourceOutsideRoots(SourceError):
    """A source's folder lies outside ``RAGWALL_SOURCE_ROOTS``."""


class SourceBusy(SourceError):
    """The source is being ingested by another call; ``run_id`` names the running one."""

    def __init__(self, message: str, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


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


class StoreError(RagwallError):
    """The vector store failed or is misconfigured."""


class StoreLocked(StoreError):
    """The embedded shard is open in another process."""


class ModelError(RagwallError):
    """A model could not be loaded or run."""
