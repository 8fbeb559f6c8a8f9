"""Ingest: sources with trust and access groups, parsing, chunking, embedding, idempotent writes.

``ragwall.service.Service`` wires an :class:`Ingester` to the settings' state, store and encoder;
build one by hand only to use the pipeline on its own.
"""

from ragwall.ingest.pipeline import Failure, Ingester, IngestReport, Skipped
from ragwall.ingest.registry import Registry
from ragwall.ingest.sources import Source, make_source

__all__ = ["Failure", "Ingester", "IngestReport", "Skipped", "Source", "Registry", "make_source"]
