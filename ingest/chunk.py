"""Structure-aware chunking with a hard bound in embedding-model tokens.

``unstructured``'s ``chunk_by_title`` groups elements into sections (a title starts a new chunk);
every chunk longer than the model's token budget is then cut at token boundaries with a small
overlap, so nothing the model would truncate is silently lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer


@dataclass
class ChunkConfig:
    max_tokens: int = 256  # special tokens ([CLS], [SEP]) included
    overlap_tokens: int = 32
    max_chars: int = 1000
    new_after_chars: int = 800
    combine_under_chars: int = 200


@dataclass
class Chunk:
    index: int
    text: str
    char_start: int | None
    char_end: int | None
    page_start: int | None
    page_end: int | None
    title_path: list[str] = field(default_factory=list)
    element_types: list[str] = field(default_factory=list)
    token_count: int = 0


def load_tokenizer(model_path: str) -> Tokenizer:
    """The fast tokenizer of a local model folder (``tokenizer.json``)."""
    path = Path(model_path) / "tokenizer.json"
    if path.exists():
        tokenizer = Tokenizer.from_file(str(path))
    else:
        from transformers import AutoTokenizer  # folders without tokenizer.json

        tokenizer = AutoTokenizer.from_pretrained(model_path, use_fast=True).backend_tokenizer
    tokenizer.no_truncation()  # tokenizer.json may carry a truncation that would hide the length
    tokenizer.no_padding()
    return tokenizer


def _layout(elements: list[Any]) -> tuple[str, dict[str, tuple[int, int]], dict[str, list[str]]]:
    """The document text (elements joined by blank lines), each element's span and title path."""
    parts: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    paths: dict[str, list[str]] = {}
    stack: list[tuple[int, str]] = []
    cursor = 0
    for element in elements:
        text = element.text
        spans[element.id] = (cursor, cursor + len(text))
        if element.category == "Title":
            depth = element.metadata.category_depth or 0
            stack = [(d, t) for d, t in stack if d < depth]
            stack.append((depth, text.strip()[:200]))
        paths[element.id] = [t for _, t in stack]
        parts.append(text)
        cursor += len(text) + 2
    return "\n\n".join(parts), spans, paths


def _token_windows(
    text: str, tokenizer: Tokenizer, budget: int, overlap: int
) -> list[tuple[int, int, int]]:
    """(char_start, char_end, n_tokens) windows of at most ``budget`` tokens over ``text``."""
    encoding = tokenizer.encode(text, add_special_tokens=False)
    offsets = encoding.offsets
    if len(offsets) <= budget:
        return [(0, len(text), len(offsets))]
    windows = []
    step = budget - overlap
    start = 0
    while start < len(offsets):
        end = min(start + budget, len(offsets))
        windows.append((offsets[start][0], offsets[end - 1][1], end - start))
        if end == len(offsets):
            break
        start += step
    return windows


def chunk_elements(elements: list[Any], tokenizer: Tokenizer, config: ChunkConfig) -> list[Chunk]:
    """Chunks of ``elements`` in document order, each within ``config.max_tokens``."""
    from unstructured.chunking.title import chunk_by_title

    if not elements:
        return []
    doc_text, spans, paths = _layout(elements)
    sections = chunk_by_title(
        elements,
        max_characters=config.max_chars,
        new_after_n_chars=config.new_after_chars,
        combine_text_under_n_chars=config.combine_under_chars,
        overlap=min(config.max_chars // 10, 100),
        multipage_sections=True,
    )
    budget = config.max_tokens - 2  # room for [CLS] and [SEP]
    overlap = min(config.overlap_tokens, budget // 2)
    chunks: list[Chunk] = []
    search_from = 0
    for section in sections:
        originals = list(section.metadata.orig_elements or [])
        known = [e for e in originals if e.id in spans]
        text = section.text
        if not text.strip():
            continue
        start = doc_text.find(text[:80], search_from) if text else -1
        if start >= 0:
            search_from = start + 1
            base = start
        elif known:
            base = spans[known[0].id][0]
        else:
            base = None
        pages = [e.metadata.page_number for e in originals if e.metadata.page_number is not None]
        types = sorted({e.category for e in originals}) or [section.category]
        title_path = paths.get(known[0].id, []) if known else []
        for w_start, w_end, n_tokens in _token_windows(text, tokenizer, budget, overlap):
            piece = text[w_start:w_end]
            if not piece.strip():
                continue
            chunks.append(
                Chunk(
                    index=len(chunks),
                    text=piece,
                    char_start=None if base is None else base + w_start,
                    char_end=None if base is None else base + w_end,
                    page_start=min(pages) if pages else None,
                    page_end=max(pages) if pages else None,
                    title_path=list(title_path),
                    element_types=types,
                    token_count=n_tokens + 2,
                )
            )
    return chunks
