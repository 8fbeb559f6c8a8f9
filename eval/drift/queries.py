"""Query sets for snapshots and drift evals: a BEIR ``queries.jsonl``, a plain-text file with one
query per line, or a BEIR folder's queries and qrels together.

Invariant: a :class:`QuerySet` is never empty, its ids are unique, and its qrels (when present)
judge only queries it holds; anything else is a :class:`~ragwall.datasets.DatasetError` that says
which line or id is wrong.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ragwall.datasets import DatasetError, load_qrels


@dataclass(frozen=True)
class QuerySet:
    """Queries by id (in file order), and their graded judgements when known."""

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]] | None = None
    origin: str = ""

    def with_qrels(self, qrels: dict[str, dict[str, int]] | None, where: str = "qrels") -> QuerySet:
        """This set judged by ``qrels``; refuses qrels for queries it does not hold."""
        if qrels is None:
            return self
        unknown = sorted(set(qrels) - set(self.queries))
        if unknown:
            shown = ", ".join(unknown[:5]) + (" …" if len(unknown) > 5 else "")
            raise DatasetError(
                f"{where} judges {len(unknown)} queries that are not in {self.origin or 'the query set'} "
                f"({shown}); give the query file they belong to, or drop those lines"
            )
        judged = {q: j for q, j in qrels.items() if any(g > 0 for g in j.values())}
        if not judged:
            raise DatasetError(f"{where} has no positive judgement for these queries")
        return QuerySet(self.queries, judged, self.origin)


def plain_query_id(text: str) -> str:
    """A plain-text query's id: stable for the same text, whatever its line number."""
    return "q" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def load_queries(path: Path) -> QuerySet:
    """A BEIR ``queries.jsonl`` (``{"_id", "text"}`` per line) or plain text, one query a line
    (``#`` lines and blank lines skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read the query file {path}: {exc}") from exc
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    queries: dict[str, str] = {}
    beir = path.suffix == ".jsonl" or (lines and lines[0][1].startswith("{"))
    for n, line in lines:
        if beir:
            try:
                row = json.loads(line)
                qid, qtext = str(row["_id"]), str(row["text"]).strip()
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DatasetError(
                    f'{path}:{n}: not a BEIR query line ({{"_id": ..., "text": ...}}): {exc}'
                ) from exc
        else:
            qid, qtext = plain_query_id(line), line
        if not qtext:
            raise DatasetError(f"{path}:{n}: empty query text")
        if qid in queries and queries[qid] != qtext:
            raise DatasetError(f"{path}:{n}: query id {qid!r} appears twice with other text")
        queries[qid] = qtext
    if not queries:
        raise DatasetError(f"{path} holds no queries (one per line, or BEIR queries.jsonl)")
    return QuerySet(queries, None, str(path))


def load_dataset_queries(folder: Path, split: str) -> QuerySet:
    """A BEIR folder's judged queries of ``qrels/<split>.tsv``, with those qrels."""
    folder = Path(folder)
    every = load_queries(folder / "queries.jsonl")
    qrels = load_qrels(folder / "qrels" / f"{split}.tsv")
    judged = {q: j for q, j in qrels.items() if q in every.queries}
    if not judged:
        raise DatasetError(f"no query of {folder}/queries.jsonl is judged in qrels/{split}.tsv")
    queries = {q: every.queries[q] for q in every.queries if q in judged}
    return QuerySet(queries, None, f"{folder} ({split})").with_qrels(
        judged, f"{folder}/qrels/{split}.tsv"
    )


def load_query_set(
    queries: Path | None = None,
    qrels: Path | None = None,
    dataset: Path | None = None,
    split: str = "test",
) -> QuerySet:
    """What a command's ``--queries/--qrels`` or ``--dataset/--split`` name."""
    if dataset is not None:
        if queries is not None:
            raise DatasetError("give --dataset or --queries, not both")
        found = load_dataset_queries(dataset, split)
        return found if qrels is None else found.with_qrels(load_qrels(qrels), str(qrels))
    if queries is None:
        raise DatasetError("give the queries: --queries FILE, or --dataset DIR --split S")
    found = load_queries(queries)
    return found if qrels is None else found.with_qrels(load_qrels(qrels), str(qrels))
