"""The FAQ-style clean data of the poisoning eval, built from SQuAD and the Python FAQ."""

from __future__ import annotations

import pytest

from ragwall.datasets import DatasetError
from ragwall.eval.faq import build_faq
from tests.conftest import shared


def test_faq_pages_articles_and_their_queries(tmp_path):
    faq = build_faq(
        [shared("squad"), shared("injection", "benign-docs.jsonl")], tmp_path / "faq", articles=4
    )
    files = {p.stem: p.read_text(encoding="utf-8") for p in (tmp_path / "faq").glob("*.md")}
    assert faq.documents == len(files)
    assert sum(s.startswith("python-faq_") for s in files) == 8  # one page per Python FAQ file
    pages = [s for s in files if s.startswith("faq-")]
    articles = [s for s in files if s.startswith("kb-")]
    assert len(pages) == 2 and len(articles) >= 2  # even articles make a page, odd ones articles
    assert set(faq.kinds.values()) == {"verbatim", "other"}
    assert len(faq.queries) == 2 * sum(1 for k in faq.kinds.values() if k == "verbatim")
    for qid, query in faq.queries.items():
        (doc,) = faq.qrels[qid]
        assert doc in files
        if faq.kinds[qid] == "verbatim":  # the entry's own question heads its answer
            assert f"## {query}\n\n" in files[doc]
    for stem in articles:
        assert files[stem].startswith("## ") and files[stem].count("## ") == 1
    # The eval reads articles the thresholds were not set on, and the same ones every run.
    again = build_faq([shared("squad")], tmp_path / "again", articles=4)
    assert again.queries == faq.queries
    calibration = build_faq([shared("squad")], tmp_path / "cal", articles=4, start=0)
    assert not set(calibration.queries.values()) & set(faq.queries.values())


def test_a_source_of_neither_kind_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="neither a SQuAD folder"):
        build_faq([tmp_path / "missing"], tmp_path / "out")
    (tmp_path / "docs").mkdir()
    with pytest.raises(DatasetError, match="not a SQuAD folder"):
        build_faq([tmp_path / "docs"], tmp_path / "out2")
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": "x", "family": "man-ssh"}\n')
    with pytest.raises(DatasetError, match="python-docs-faq"):
        build_faq([empty], tmp_path / "out3")
