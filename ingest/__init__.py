"""Ingest: sources with trust and access groups, parsing, chunking, embedding, idempotent writes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ragwall.embed import DenseEncoder
from ragwall.ingest.pipeline import Failure, Ingester, IngestReport
from ragwall.ingest.sources import Source, make_source
from ragwall.ingest.state import State
from ragwall.retrieval.store import open_store
from ragwall.settings import Settings

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
