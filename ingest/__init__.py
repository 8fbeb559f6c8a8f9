"""Ingest: sources with trust and access groups, parsing, chunking, embedding, idempotent writes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ingest.pipeline import Failure, Ingester, IngestReport
from ingest.sources import Source, make_source
from ingest.state import State
from retrieval.embed import DenseEncoder
from retrieval.settings import Settings
from retrieval.store import open_store

__all__ = ["Failure", "Ingester", "IngestReport", "Source", "State", "make_source", "open_ingester"]


@contextmanager
def open_ingester(settings: Settings) -> Iterator[Ingester]:
    """An :class:`Ingester` over the settings' data directory and store; closes both after."""
    encoder = DenseEncoder(
        settings.embedding_model,
        device=settings.embedding_device,
        batch_size=settings.embed_batch_size,
    )
    state = State(settings.state_path)
    try:
        store = open_store(settings, encoder.dim)
        try:
            yield Ingester(settings, state, store, encoder)
        finally:
            store.close()
    finally:
        state.close()
