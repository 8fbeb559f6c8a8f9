"""The recency boost (issue 29, part 3): off by default, it reorders the candidates by their
documents' age when a request (or the server) sets ``freshness_half_life_days``. Real service,
model and engine."""

from __future__ import annotations

import os
import time

from ragwall.retrieval.freshness import freshness_factor
from ragwall.service import DEV_PRINCIPAL, RetrieveParams, Service

#: Two old documents that answer the query word for word, and a new one that answers it
#: loosely: last without the boost, whatever the thread count's rounding.
DOCS = {
    "b0.md": ("# Boilers\n\nThe boiler pressure relief valve is tested every quarter.\n", 900),
    "b1.md": ("# Plant notes\n\nValve checks on the heating plant happen monthly.\n", 2),
    "b2.md": ("# Boiler valves\n\nEach boiler pressure relief valve is tested weekly.\n", 900),
}


def test_the_boost_prefers_recent_documents_only_when_asked(settings, encoder):
    folder = settings.data_dir.parent / "boilers"
    folder.mkdir()
    now = time.time()
    for name, (text, age_days) in DOCS.items():
        path = folder / name
        path.write_text(text)
        os.utime(path, (now - age_days * 86400, now - age_days * 86400))
    conf = settings.model_copy(update={"query_encoder": "torch"})
    query = "how often is the boiler pressure relief valve tested"
    with Service(conf, encoder=encoder) as svc:
        svc.add_source("admin", "boilers", str(folder), "internal")
        svc.ingest("admin", "boilers")
        plain = svc.retrieve(DEV_PRINCIPAL, RetrieveParams(query=query, top_k=3)).result.hits
        boosted = svc.retrieve(
            DEV_PRINCIPAL, RetrieveParams(query=query, top_k=3, freshness_half_life_days=30)
        ).result.hits
    assert all(h.scores["freshness"] is None for h in plain)
    assert plain[-1].provenance["doc_name"] == "b1.md"  # without the boost, last
    names = [h.provenance["doc_name"] for h in boosted]
    assert names[0] == "b1.md", names  # two days old: boosted to the top
    assert sorted(names) == sorted(h.provenance["doc_name"] for h in plain)  # reordered only
    fresh = {h.provenance["doc_name"]: h.scores["freshness"] for h in boosted}
    assert fresh["b1.md"] > 1.23 and fresh["b0.md"] < 1.001


def test_the_factor_halves_its_boost_each_half_life():
    now = 1_000_000_000.0
    assert freshness_factor(now, 10, now) == 1.25
    assert abs(freshness_factor(now - 10 * 86400, 10, now) - 1.125) < 1e-9
    assert freshness_factor(None, 10, now) == 1.0
    assert freshness_factor(now + 5, 10, now) == 1.25  # a clock ahead never gives more
