"""ragwall.payload: what ingest writes is the contract, and the API declares the same fields."""

from __future__ import annotations

from ragwall.api.models import Provenance
from ragwall.payload import FLOAT_FIELDS, INTERNAL_FIELDS, KEYWORD_FIELDS, PAYLOAD_FIELDS, Key


def test_every_named_key_and_indexed_field_is_in_the_contract():
    names = {v for k, v in vars(Key).items() if k.isupper()}
    assert names <= set(PAYLOAD_FIELDS)
    assert set(KEYWORD_FIELDS) | set(FLOAT_FIELDS) | INTERNAL_FIELDS <= set(PAYLOAD_FIELDS)


def test_the_api_provenance_declares_every_provenance_field():
    assert set(Provenance.model_fields) == set(PAYLOAD_FIELDS) - INTERNAL_FIELDS - {"trust"}


def test_ingest_writes_exactly_the_contract(ingester, tmp_path):
    from ragwall.ingest import make_source

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# Title\n\nSome text about refunds and approvals.\n")
    source = make_source("s", str(folder), "internal", ["g"])
    ingester.state.add_source(source)
    assert not ingester.ingest(source).failed
    hits, _ = ingester.store.scroll(None, limit=10)
    assert hits and all(set(h.payload) == set(PAYLOAD_FIELDS) for h in hits)
