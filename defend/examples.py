"""The labelled example, the stable split and the grouping that keeps near-duplicates together.

The bottom of the training-data modules (``defend.sets`` and ``defend.data`` build on it). The
invariant it provides: a row's part is a function of its *group keys* only, never of the row,
and rows that share a group key share a part or are ``EXCLUDED`` (see ``split_by_axes``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ragwall.datasets import DatasetError

PARTS = ("train", "val", "test")
#: The part of a row whose group keys fell in different parts: fitted on by no model, used to
#: choose nothing, but still scored when its whole source is left out (leave-one-source-out).
EXCLUDED = "excluded"


@dataclass(frozen=True)
class Example:
    text: str
    label: int
    dataset: str
    family: str
    part: str  # train | val | test | excluded
    span: tuple[int, int] | None = None  # the injected text, where known
    sources: tuple[str, ...] = ()  # other datasets the text was built from (see derived_from)
    lang: str = ""  # ISO 639-1 code where the set says, "" where it does not

    def with_part(self, part: str) -> Example:
        return replace(self, part=part)


def derived_from(example: Example) -> frozenset[str]:
    """Every dataset ``example`` was built from: its own and, for an attack inserted into a text
    of another set (an augmented example, a spikee payload inside a ``benign-docs`` paragraph) or
    a set built on another (xInjectAgent wraps InjecAgent's attacks), those too. A model trained
    "without X" must see no example whose ``derived_from`` names X."""
    return frozenset((example.dataset, *example.sources))


def part_of(key: str, val: float = 0.15, test: float = 0.15) -> str:
    """A stable part for ``key``: the same key lands in the same part on every run."""
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test else "val" if h < test + val else "train"


def read_jsonl(path: Path) -> list[dict]:
    try:
        return [
            json.loads(line)
            for line in path.read_text(encoding="utf-8").split("\n")
            if line.strip()
        ]
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def norm(text: str) -> str:
    """``text`` lowercased with runs of non-word characters made one space: a grouping key."""
    return re.sub(r"\W+", " ", text.lower()).strip()


_WORD = re.compile(r"\w+")


def word_runs(text: str, n: int = 12) -> set[str]:
    """Every run of ``n`` words of ``text`` (lowercased): two texts that share one share a
    sentence or more, which is how near-duplicates (a jailbreak reused with another question,
    a paragraph quoted in two documents) are found."""
    words = _WORD.findall(text.lower())
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def split_by_axes(rows: Sequence[Sequence[Iterable[str]]]) -> list[str]:
    """The part of each row, given for each row its *axes*, each a few group keys.

    Keys named together on one axis of one row are one group (union-find), so a case and its
    translations, or an instruction and its exact text, travel together. A group's part is
    ``part_of`` its smallest key. A row whose axes' groups all have one part gets that part;
    a row whose axes disagree (a val jailbreak wrapped around a train instruction) is
    ``EXCLUDED``, which is what keeps every key of every axis on one side. Keys of different
    axes must not collide: prefix them with the axis name.
    """
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        parent.setdefault(k, k)
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    frozen = [[sorted(set(axis)) for axis in axes] for axes in rows]
    for axes in frozen:
        for keys in axes:
            for k in keys[1:]:
                a, b = find(keys[0]), find(k)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    out = []
    for axes in frozen:
        parts = {part_of(find(keys[0])) for keys in axes if keys}
        out.append(parts.pop() if len(parts) == 1 else EXCLUDED)
    return out


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def sentence_starts(text: str) -> list[int]:
    """Offsets where a sentence or a line starts (and the end): where an attack may be inserted."""
    return sorted({0, len(text), *(m.end() for m in _SENTENCE_END.finditer(text))})


def first_sentence(text: str) -> str:
    m = _SENTENCE_END.search(text)
    return (text[: m.start()] if m else text).strip()


def insert(context: str, attack: str, at: int) -> tuple[str, tuple[int, int]]:
    """``attack`` inserted into ``context`` at offset ``at``; returns the text and the span."""
    left = context[:at].rstrip()
    right = context[at:].lstrip()
    lead = left + (" " if left else "")
    text = lead + attack + (" " if right else "") + right
    return text, (len(lead), len(lead) + len(attack))


def inserted_span(injected: str, clean: str) -> tuple[int, int] | None:
    """The span of ``injected`` that is not in ``clean`` when it was inserted at one place."""
    a = 0
    limit = min(len(injected), len(clean))
    while a < limit and injected[a] == clean[a]:
        a += 1
    b = 0
    while b < limit - a and injected[-1 - b] == clean[-1 - b]:
        b += 1
    if a + b < len(clean) - 2:  # more than whitespace differs: not a single insertion
        return None
    start, end = a, len(injected) - b
    while start < end and injected[start].isspace():
        start += 1
    while end > start and injected[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def found_span(text: str, part: str) -> tuple[int, int] | None:
    """Where ``part`` (stripped) occurs in ``text``, if it occurs exactly once."""
    part = part.strip()
    at = text.find(part) if part else -1
    if at < 0 or text.find(part, at + 1) >= 0:
        return None
    return at, at + len(part)
