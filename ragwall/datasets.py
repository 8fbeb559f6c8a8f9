"""Read a BEIR-layout dataset: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from ragwall.errors import DatasetError


@dataclass
class BeirDataset:
    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise DatasetError(
            f"{path} is missing (a BEIR folder has corpus.jsonl, queries.jsonl, qrels/)"
        )
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: not JSON ({exc})") from exc
    return rows


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    if not path.exists():
        raise DatasetError(f"{path} is missing")
    qrels: dict[str, dict[str, int]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            for n, row in enumerate(csv.DictReader(fh, delimiter="\t"), start=2):
                try:
                    qid, doc, score = row["query-id"], row["corpus-id"], int(row["score"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise DatasetError(
                        f"{path}:{n}: not a qrels line (a header 'query-id corpus-id score', "
                        f"then tab-separated rows with an integer score): {exc!r}"
                    ) from exc
                qrels.setdefault(str(qid), {})[str(doc)] = score
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    return qrels


def load_corpus(folder: Path) -> dict[str, dict[str, str]]:
    """A BEIR folder's corpus.jsonl: {doc id: {"title", "text"}}."""
    return {
        str(r["_id"]): {"title": r.get("title", "") or "", "text": r.get("text", "") or ""}
        for r in _jsonl(folder / "corpus.jsonl")
    }


def load_beir(folder: Path, split: str) -> BeirDataset:
    corpus = load_corpus(folder)
    queries = {str(r["_id"]): r["text"] for r in _jsonl(folder / "queries.jsonl")}
    qrels = load_qrels(folder / "qrels" / f"{split}.tsv")
    qrels = {q: j for q, j in qrels.items() if q in queries and any(g > 0 for g in j.values())}
    if not qrels:
        raise DatasetError(f"no judged queries in {folder}/qrels/{split}.tsv")
    return BeirDataset(corpus, queries, qrels)


def document_text(doc: dict[str, str]) -> str:
    title, text = doc["title"].strip(), doc["text"].strip()
    if title and not text.lower().startswith(title.lower()[:40]):
        return f"{title}\n\n{text}"
    return text


def write_documents(corpus: dict[str, dict[str, str]], out: Path) -> dict[str, str]:
    """One text file per BEIR document in a new folder ``out`` (for the real ingest pipeline);
    returns file stem -> document id."""
    out.mkdir(parents=True)
    names = {}
    for doc_id, doc in corpus.items():
        stem = doc_id.replace("/", "_")
        (out / f"{stem}.txt").write_text(document_text(doc) or doc_id, encoding="utf-8")
        names[stem] = doc_id
    return names
