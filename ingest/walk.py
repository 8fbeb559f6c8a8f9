"""Walking a source's folder: iterative, never into a link to a folder, glob patterns matched
one path segment at a time.

``Path.rglob``, ``Path.glob`` and ``glob.glob`` all recurse in Python, so a folder nested a
thousand levels deep raises ``RecursionError`` out of them, and ``glob.glob``'s ``**`` follows
links to folders: two ``loop -> .`` links in a source make it walk 2^40 paths. This walk keeps
its own stack and never descends through a link, so neither can happen.

Patterns mean what ``glob.glob(pattern, recursive=True)`` makes them mean: ``*``, ``?`` and
``[...]`` match within one segment, ``**`` matches any number of whole segments, and a name
starting with ``.`` (hidden) is matched only by a pattern segment that starts with ``.`` (``**``
never enters a hidden folder). Invariant: the walk visits each folder below the base at most
once, prunes folders no pattern can match below, and raises for nothing inside the base (a
folder it may not read is passed over).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path

Pattern = tuple[str, ...]
#: A folder source: every file below it, hidden ones left out.
EVERYTHING: Pattern = ("**", "*")


def walk(base: Path, pattern: Pattern = EVERYTHING) -> Iterator[Path]:
    """Every entry below ``base`` that is not a folder (files, links to anything, FIFOs) whose
    path relative to ``base`` matches ``pattern``, as found (links not followed)."""
    stack: list[tuple[Path, frozenset[int]]] = [(base, _closure(frozenset({0}), pattern))]
    while stack:
        folder, states = stack.pop()
        try:
            with os.scandir(folder) as entries:
                found = [(e.name, _is_folder(e)) for e in entries]
        except OSError:  # not readable, or gone since it was listed
            continue
        for name, is_folder in found:
            after = _closure(_advance(states, name, pattern), pattern)
            if is_folder:
                if any(i < len(pattern) for i in after):
                    stack.append((folder / name, after))
            elif len(pattern) in after:
                yield folder / name


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _advance(states: frozenset[int], name: str, pattern: Pattern) -> frozenset[int]:
    """The pattern positions reached after one more segment, ``name``."""
    hidden = name.startswith(".")
    out = set()
    for i in states:
        if i >= len(pattern):
            continue
        part = pattern[i]
        if part == "**":
            if not hidden:
                out.add(i)  # ``**`` takes this segment and may take more
        elif (not hidden or part.startswith(".")) and fnmatchcase(name, part):
            out.add(i + 1)
    return frozenset(out)


def _closure(states: frozenset[int], pattern: Pattern) -> frozenset[int]:
    """``states`` plus the positions past each ``**`` that matches no segment at all."""
    out, todo = set(states), list(states)
    while todo:
        i = todo.pop()
        if i < len(pattern) and pattern[i] == "**" and i + 1 not in out:
            out.add(i + 1)
            todo.append(i + 1)
    return frozenset(out)
