"""FAQ-style clean data: documents that legitimately open a passage with a question.

A passage that restates the user's question is what PoisonedRAG's black-box attack plants
(P = Q ⊕ I), and it is also what an honest FAQ is. This module builds the honest side from
public data, so the poisoning eval can measure how often a mirror signal flags it:

- **SQuAD** (a folder with ``train.jsonl.gz`` and ``contexts.jsonl.gz``): for a deterministic
  sample of Wikipedia articles, each chosen paragraph becomes an FAQ entry under one of its own
  SQuAD questions (the question a crowd worker wrote for that paragraph, so the entry answers
  it). Half the articles become one FAQ *page* (``## question`` then the paragraph, entry after
  entry); the other half become one short *article* per entry (a knowledge-base page titled with
  its question). Every entry is asked twice: **verbatim** (the user types the FAQ's question,
  the hardest honest case) and **other** (another SQuAD question about the same paragraph, the
  user's own words). Each query's relevant document is the page or article holding the entry.
- **Python FAQ** (``benign-docs.jsonl``, family ``python-docs-faq``): the rows are answer
  paragraphs without their questions; each FAQ file becomes one page of its paragraphs in
  order. They add honest FAQ prose to the candidates; they bring no queries.

Documents are written as Markdown, so the parser sees the headings and chunks by them, as it
would an FAQ page on a real site.
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from ragwall.errors import DatasetError

PYTHON_FAQ_FAMILY = "python-docs-faq"


@dataclass
class FaqSet:
    """Documents written to ``folder``; judged queries by kind (``verbatim`` or ``other``)."""

    folder: Path
    queries: dict[str, str] = field(default_factory=dict)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)  # query -> {file stem: 1}
    kinds: dict[str, str] = field(default_factory=dict)
    documents: int = 0


def _gz_jsonl(path: Path) -> list[dict]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"cannot read {path} (gzipped JSON lines): {exc}") from exc


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text)[:60].strip("_") or "doc"


def add_squad(out: FaqSet, squad: Path, articles: int, entries: int, seed: int, start: int) -> None:
    """Add ``articles`` SQuAD articles (from position ``start`` of a seeded shuffle of the
    titles) of up to ``entries`` FAQ entries each."""
    for name in ("train.jsonl.gz", "contexts.jsonl.gz"):
        if not (squad / name).is_file():
            raise DatasetError(f"{squad} is not a SQuAD folder: {name} is missing")
    questions: dict[str, list[dict]] = {}
    for row in _gz_jsonl(squad / "train.jsonl.gz"):
        questions.setdefault(str(row["context_id"]), []).append(row)
    by_title: dict[str, list[dict]] = {}
    for ctx in _gz_jsonl(squad / "contexts.jsonl.gz"):
        if len(questions.get(str(ctx["context_id"]), ())) >= 2:
            by_title.setdefault(ctx["title"], []).append(ctx)
    titles = sorted(by_title)
    random.Random(seed).shuffle(titles)
    for n, title in enumerate(titles[start : start + articles]):
        chosen = by_title[title][:entries]
        page = n % 2 == 0
        lines = [f"# {title.replace('_', ' ')}: frequently asked questions", ""]
        for ctx in chosen:
            asked, other = questions[str(ctx["context_id"])][:2]
            stem = f"faq-{_slug(title)}" if page else f"kb-{asked['qid']}"
            entry = [f"## {asked['question'].strip()}", "", ctx["text"].strip(), ""]
            if page:
                lines += entry
            else:
                (out.folder / f"{stem}.md").write_text("\n".join(entry), encoding="utf-8")
                out.documents += 1
            for kind, row in (("verbatim", asked), ("other", other)):
                qid = f"{kind}-{row['qid']}"
                out.queries[qid] = row["question"].strip()
                out.qrels[qid] = {stem: 1}
                out.kinds[qid] = kind
        if page:
            (out.folder / f"faq-{_slug(title)}.md").write_text("\n".join(lines), encoding="utf-8")
            out.documents += 1


def add_python_faq(out: FaqSet, benign_docs: Path) -> None:
    """Add one page per Python FAQ file (its answer paragraphs, in order)."""
    pages: dict[str, list[str]] = {}
    try:
        with benign_docs.open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                if row.get("family") == PYTHON_FAQ_FAMILY:
                    pages.setdefault(str(row["doc"]), []).append(row["text"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"cannot read {benign_docs} (benign-docs JSON lines): {exc}") from exc
    if not pages:
        raise DatasetError(f"{benign_docs} holds no rows of family {PYTHON_FAQ_FAMILY!r}")
    for doc, paragraphs in sorted(pages.items()):
        head = f"# Python frequently asked questions: {Path(doc).stem}"
        text = "\n\n".join([head, *paragraphs]) + "\n"
        (out.folder / f"python-{_slug(doc)}.md").write_text(text, encoding="utf-8")
        out.documents += 1


#: The query-mirror thresholds were set on the first 40 articles of the shuffle (seed 30); the
#: eval reads the next 40, which no threshold was chosen on.
CALIBRATION_ARTICLES = 40


def build_faq(
    sources: list[Path],
    folder: Path,
    articles: int = 40,
    entries: int = 6,
    seed: int = 30,
    start: int = CALIBRATION_ARTICLES,
) -> FaqSet:
    """Write the FAQ documents of every source (a SQuAD folder or a benign-docs file) to a new
    ``folder``; a source of neither kind is an error."""
    folder.mkdir(parents=True)
    out = FaqSet(folder)
    for src in sources:
        if src.is_dir():
            add_squad(out, src, articles, entries, seed, start)
        elif src.is_file():
            add_python_faq(out, src)
        else:
            raise DatasetError(
                f"{src} is neither a SQuAD folder nor a benign-docs .jsonl file (--faq)"
            )
    return out
