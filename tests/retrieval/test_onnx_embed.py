"""The ONNX query encoder against the PyTorch model it is exported from."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragwall.retrieval.onnx_embed import CARD_NAME, MIN_COSINE, PROBES, load_query_encoder

pytestmark = pytest.mark.slow

# Texts the export check never saw: queries and passages from other domains.
UNSEEN = [
    "what is the effect of sweep on the drag of a wing",
    "library circulation statistics and the use of catalogues by students",
    "Payment terms are net 30 days; late invoices accrue 1.5% interest per month.",
    "Our on-call engineer escalates SEV1 incidents to the platform lead within 15 minutes.",
    "ünïcödé — emoji 🚀 and CJK 检索增强生成 in one line",
    "a",
    "word " * 400,  # longer than the model's 256-token window: truncated like PyTorch does
]


@pytest.fixture(scope="module")
def onnx_encoder(encoder, tmp_path_factory):
    cache = tmp_path_factory.mktemp("models")
    return load_query_encoder(encoder, cache), cache


def test_onnx_vectors_match_pytorch(encoder, onnx_encoder):
    onnx_enc, _ = onnx_encoder
    got = onnx_enc.encode(UNSEEN)
    want = encoder.encode(UNSEEN)
    assert got.shape == want.shape == (len(UNSEEN), encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = (got * want).sum(axis=1)
    assert cosines.min() >= MIN_COSINE, cosines


def test_onnx_query_vector_ranks_like_pytorch(encoder, onnx_encoder):
    onnx_enc, _ = onnx_encoder
    passages = encoder.encode(PROBES + UNSEEN)
    for query in ("reset my password", "drag of a swept wing", "customs rules for Norway"):
        scores = passages @ encoder.encode_query(query)
        want = np.argsort(-scores)[:3]
        got = np.argsort(-(passages @ onnx_enc.encode_query(query)))[:3]
        # the same best passage and the same top 3; the order below the best may swap where
        # the passages are all far from the query (it did here at cosines 0.19 vs 0.22, on the
        # commit before this test changed too)
        assert got[0] == want[0] and set(got) == set(want), (query, got, want, scores[want])


def test_export_is_cached_and_described(encoder, onnx_encoder):
    _, cache = onnx_encoder
    [card_path] = list(cache.rglob(CARD_NAME))
    card = json.loads(card_path.read_text())
    assert card["pooling"] == "mean" and card["normalize"] is True
    assert card["probe_cosine_min"] >= MIN_COSINE
    model_file = card_path.parent / card["file"]
    before = model_file.stat().st_mtime_ns
    again = load_query_encoder(encoder, cache)  # no second export
    assert model_file.stat().st_mtime_ns == before
    assert again.encode_query("x").shape == (encoder.dim,)
