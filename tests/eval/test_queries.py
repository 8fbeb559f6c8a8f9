"""Query sets: the formats read, and every malformed input refused with a message."""

from __future__ import annotations

import json

import pytest

from ragwall.datasets import DatasetError
from ragwall.eval.drift.queries import load_dataset_queries, load_queries, load_query_set
from tests.conftest import shared


def test_plain_text_and_beir_query_files(tmp_path):
    plain = tmp_path / "q.txt"
    plain.write_text("# comment\nwhat is lift\n\nwhat is drag\n", encoding="utf-8")
    found = load_queries(plain)
    assert list(found.queries.values()) == ["what is lift", "what is drag"]
    assert all(q.startswith("q") and len(q) == 13 for q in found.queries)
    beir = tmp_path / "queries.jsonl"
    beir.write_text(json.dumps({"_id": "7", "text": "flutter"}) + "\n", encoding="utf-8")
    assert load_queries(beir).queries == {"7": "flutter"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no queries"),
        ("# only a comment\n", "holds no queries"),
        ('{"_id": "1", "text": "a"}\n{"_id": "2"\n', ":2: not a BEIR query line"),
        ('{"_id": "1", "text": "a"}\n{"_id": "1", "text": "b"}\n', "appears twice"),
    ],
)
def test_malformed_query_files_are_refused(tmp_path, content, message):
    path = tmp_path / "q.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_queries(path)


def test_unreadable_files_and_qrels_for_unknown_queries(tmp_path):
    with pytest.raises(DatasetError, match="cannot read"):
        load_queries(tmp_path / "missing.txt")
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"_id": "1", "text": "a"}) + "\n", encoding="utf-8")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n99\td2\t1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="judges 1 queries that are not in"):
        load_query_set(queries, qrels)
    qrels.write_text("query-id\tcorpus-id\tscore\n1\td1\tmany\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=":2: not a qrels line"):
        load_query_set(queries, qrels)
    with pytest.raises(DatasetError, match="give the queries"):
        load_query_set()


def test_a_beir_folder_gives_its_judged_queries_and_qrels():
    found = load_dataset_queries(shared("cranfield"), "dev")
    assert found.qrels is not None and set(found.qrels) == set(found.queries)
    assert len(found.queries) > 100
    with pytest.raises(DatasetError):
        load_dataset_queries(shared("cranfield"), "nosuchsplit")
