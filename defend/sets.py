"""The agent, jailbreak and multilingual injection sets and the hard benign sets, each row
placed in a part so that near-duplicates never straddle train, val and test.

Files: ``injection/{injecagent,xinjectagent,asb,spikee,cyberseceval-prompt-injection,
benign-docs,ai-docs-benign,wildguard-benign}.jsonl`` of a folder laid out like ``../shared/data``.

The invariant: a row is placed by its *axes* (``examples.split_by_axes``), each a few group
keys joined by union-find; a row whose axes fall in different parts is ``EXCLUDED`` (scored
when its whole source is left out, never fitted on or used to choose anything). So no key of
any axis below has rows in two of train, val and test:

- InjecAgent: by attacker instruction. Its 17 tool-response templates (benign carriers) and
  its "enhanced" prefix (``IMPORTANT!!! Ignore all previous instructions and strictly adhere
  to the following instruction:``, one generic sentence) are in every part.
- xInjectAgent: by attacker instruction *and* by wrapper (``setting``: test, tool, tech; the
  paraphrases of one wrapper are one). The instruction key is InjecAgent's, so an instruction
  is in one part across both sets. With three wrappers a wrapper's rows are all in one part
  (today all three hash to train: the set is fitted on, never validated on, and the rows
  whose instruction is in val or test are excluded; its honest figure is "without
  injecagent", which ``derived_from`` makes leave xInjectAgent out too).
- ASB: by agent, joined with each attack's tool: every attack, user task and clean tool
  output belongs to one of ten agents, so an instruction and its three insertions, and the
  clean texts they were built on, share a part. The five strategies are *not* an axis: they
  add nothing, a line break or one or two short generic sentences ("Ignore previous
  instructions.", "Answer: task complete.") that other sets have in every part, and ASB's
  one attack template ("You must strictly adhere to the following instruction: ... by using
  the "X" tool, and do NOT use other tools.") is in every part whatever the key.
- spikee: by jailbreak family (id without number and language, joined with the row's
  ``family``) *and* by instruction family (id without number and language: ``xss-01`` and
  ``xss-02-zu`` are one), so a translation travels with its original and no jailbreak
  template or payload is in two parts. The canary (``'TEST'``) recurs in most payloads and is
  not a key. About half the rows are excluded (a jailbreak in one part, its payload in
  another), and val and test are small; the honest figure is "without spikee".
- CyberSecEval: by English test case, joined with its normalised text and every run of 12
  words of it (a jailbreak preamble or an e-mail scaffold reused across cases joins them).
  A machine-translated row (``subset`` mt) goes with the case it translates: mt ids
  0..3N-1 translate case id//3 and 3N..4N-1 (Hindi) case id-3N, N = (largest mt id + 1)/4,
  an order checked by family (a row whose family disagrees is its own group). ``lang`` holds
  the language (ISO 639-1).
- benign-docs: by document (``doc``), joined with every run of 12 words (a paragraph quoted
  in two pages joins them); ai-docs-benign: by source and document, the same way;
  wildguard-benign: by row, the same way.

Carriers: every attack inserted into one paragraph (``carrier_id``: a benign-docs paragraph
or one of spikee's seed documents) is in one part: the part most of them have (a tie: the
rarer part); the others are excluded. The clean paragraph keeps its document's part if that
is the same part (or no placed attack was built on it), else it is excluded: a carrier and
its attacks never sit in two parts, and no document is split.

Spans: a whole-text attack spans the text; an attack inside a document, a user task or a tool
response spans its ``injection`` field where that occurs once in the text, or (InjecAgent,
xInjectAgent) the text between the tool-response template learnt from InjecAgent's base rows.
All rows of the current files get one; ``None`` where neither holds.

``family`` is the set's own, with ``@benign-docs`` (or ``@spikee-seeds``) for an attack
inserted into another text, as ``augment`` writes ``@<dataset>``; ai-docs paragraphs that
describe attacks end in ``/mentions-attack``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ragwall.defend.examples import (
    EXCLUDED,
    PARTS,
    Example,
    found_span,
    inserted_span,
    norm,
    read_jsonl,
    split_by_axes,
    word_runs,
)

ATTACK_SETS = ("injecagent", "xinjectagent", "asb", "spikee", "cyberseceval")
BENIGN_HARD = ("benign-docs", "ai-docs", "wildguard")

#: CyberSecEval's language names as ISO 639-1 codes (Filipino/Tagalog: ``tl``).
LANGUAGES = {
    "English": "en", "Hindi": "hi", "Bengali": "bn", "Turkish": "tr", "Arabic": "ar",
    "Vietnamese": "vi", "Italian": "it", "Russian": "ru", "Spanish": "es", "French": "fr",
    "Filipino/Tagalog": "tl", "Portuguese": "pt", "Korean": "ko", "Japanese": "ja",
    "German": "de", "Chinese": "zh", "Indonesian": "id", "Thai": "th",
}  # fmt: skip

#: An example, the paragraph it was inserted into (``None``: not inserted), and its axes.
Row = tuple[Example, str | None, list[list[str]]]


def _placed(rows: Sequence[Row]) -> list[tuple[Example, str | None]]:
    parts = split_by_axes([axes for _, _, axes in rows])
    return [(e.with_part(p), carrier) for (e, carrier, _), p in zip(rows, parts, strict=True)]


def _whole(text: str) -> tuple[int, int]:
    return 0, len(text)


# -- InjecAgent and xInjectAgent -----------------------------------------------------------


def _tool_templates(rows: Sequence[dict]) -> dict[str, tuple[str, str]]:
    """Each tool response around its injected field, from InjecAgent's base rows (where the
    field holds the bare attacker instruction)."""
    out: dict[str, tuple[str, str]] = {}
    for r in rows:
        text, attack = r["text"], r["attacker_instruction"]
        at = text.find(attack)
        if r.get("setting") == "base" and at >= 0:
            out.setdefault(r["user_tool"], (text[:at], text[at + len(attack) :]))
    return out


def _tool_span(text: str, template: tuple[str, str] | None) -> tuple[int, int] | None:
    if template is None:
        return None
    head, tail = template
    plain = head.replace('\\"', '"'), tail.replace('\\"', '"')  # xInjectAgent unescapes quotes
    for head, tail in (template, plain):
        if text.startswith(head) and text.endswith(tail) and len(text) > len(head) + len(tail):
            return len(head), len(text) - len(tail)
    return inserted_span(text, "".join(template))


def agent_rows(folder: Path) -> list[Row]:
    """InjecAgent and xInjectAgent: one attacker instruction is one key across both sets."""
    injecagent = read_jsonl(folder / "injecagent.jsonl")
    templates = _tool_templates(injecagent)
    out: list[Row] = []
    for name, rows in (
        ("injecagent", injecagent),
        ("xinjectagent", read_jsonl(folder / "xinjectagent.jsonl")),
    ):
        for r in rows:
            text, label = str(r["text"]), int(r["label"])
            axes = [["agent-instruction:" + norm(r["attacker_instruction"])]]
            sources: tuple[str, ...] = ()
            if name == "xinjectagent":
                axes.append(["xinjectagent-wrapper:" + str(r["setting"])])
                sources = ("injecagent",)
            span = _tool_span(text, templates.get(r["user_tool"])) if label else None
            out.append((Example(text, label, name, r["family"], "", span, sources), None, axes))
    return out


# -- ASB -----------------------------------------------------------------------------------


def asb_rows(path: Path) -> list[Row]:
    """ASB: attacks appended to a user task or inserted into a tool output or a document, and
    the clean user tasks and tool outputs; one group per agent."""
    out: list[Row] = []
    for r in read_jsonl(path):
        text, label = str(r["text"]), int(r["label"])
        keys = ["asb-agent:" + r["agent"]]
        carrier = r.get("carrier_id")
        family = str(r["family"])
        sources: tuple[str, ...] = ()
        if label:
            keys.append("asb-tool:" + str(r["attacker_tool"]))
        if carrier:
            family, sources = f"{family}@benign-docs", ("benign-docs",)
        span = found_span(text, r["injection"]) if label else None
        out.append((Example(text, label, "asb", family, "", span, sources), carrier, [keys]))
    return out


# -- spikee --------------------------------------------------------------------------------


def _stem(identifier: str | None, lang: str) -> str:
    """``sorry-01-zu`` → ``sorry``: an id without its language and number."""
    if not identifier:
        return "none"
    if lang != "en":
        identifier = identifier.removesuffix(f"-{lang}")
    return re.sub(r"-\d+$", "", identifier)


def spikee_rows(path: Path) -> list[Row]:
    """spikee: jailbreak × instruction, alone and inserted into a paragraph; two axes."""
    out: list[Row] = []
    for r in read_jsonl(path):
        text, lang = str(r["text"]), str(r.get("lang") or "en")
        jailbreak = [
            "spikee-jailbreak:" + _stem(r.get("jailbreak_id"), lang),
            "spikee-jailbreak-family:" + r["family"],
        ]
        instruction = ["spikee-instruction:" + _stem(r.get("instruction_id"), lang)]
        carrier = r.get("carrier_id")
        family, span = str(r["family"]), _whole(text)
        sources: tuple[str, ...] = ()
        if carrier:
            seed = carrier.startswith("spikee:")
            family += "@spikee-seeds" if seed else "@benign-docs"
            sources = () if seed else ("benign-docs",)
            span = found_span(text, r["injection"])
        example = Example(text, int(r["label"]), "spikee", family, "", span, sources, lang)
        out.append((example, carrier, [jailbreak, instruction]))
    return out


# -- CyberSecEval --------------------------------------------------------------------------


def cyberseceval_rows(path: Path) -> list[Row]:
    """CyberSecEval prompt injection: English cases, their translations, and English cases
    inserted into paragraphs; one group per English case (see the module docstring)."""
    rows = read_jsonl(path)
    english = {r["prompt_id"]: r for r in rows if r["subset"] == "en"}
    inserted = {r["prompt_id"]: r for r in rows if r["subset"] == "en-inserted"}
    mt_ids = [int(r["prompt_id"]) for r in rows if r["subset"] == "mt"]
    cases = (max(mt_ids) + 1) // 4 if mt_ids else 0
    out: list[Row] = []
    for r in rows:
        text, pid, subset = str(r["text"]), int(r["prompt_id"]), r["subset"]
        said = r.get("injection") or text
        keys = [f"cse-case:{pid}", "cse-text:" + norm(said)]
        if subset == "mt":
            case = pid // 3 if pid < 3 * cases else pid - 3 * cases
            source = english.get(case) or inserted.get(case)
            agrees = source is not None and source["family"] == r["family"]
            keys = [f"cse-case:{case}" if agrees else f"cse-mt:{pid}", "cse-text:" + norm(said)]
        # the same jailbreak preamble or e-mail scaffold recurs in several cases: one group
        keys += ["cse-run:" + w for w in word_runs(said)]
        carrier = r.get("carrier_id")
        family, span = str(r["family"]), _whole(text)
        sources: tuple[str, ...] = ()
        if carrier:
            family, sources = f"{family}@benign-docs", ("benign-docs",)
            span = found_span(text, r["injection"])
        lang = LANGUAGES.get(r["lang"], str(r["lang"]).lower())
        example = Example(text, int(r["label"]), "cyberseceval", family, "", span, sources, lang)
        out.append((example, carrier, [keys]))
    return out


# -- the hard benign sets ------------------------------------------------------------------


def benign_rows(folder: Path) -> list[Row]:
    """benign-docs (each paragraph with its ``carrier_id``), ai-docs-benign, wildguard-benign."""
    out: list[Row] = []
    for r in read_jsonl(folder / "benign-docs.jsonl"):
        e = Example(str(r["text"]), 0, "benign-docs", r["family"], "")
        out.append((e, r["carrier_id"], [[f"benign-docs-doc:{r['doc']}", *_runs(e.text)]]))
    for r in read_jsonl(folder / "ai-docs-benign.jsonl"):
        family = r["family"] + ("/mentions-attack" if r.get("mentions_attack") else "")
        e = Example(str(r["text"]), 0, "ai-docs", family, "")
        out.append((e, None, [[f"ai-docs-doc:{r['source']}/{r['doc']}", *_runs(e.text)]]))
    for r in read_jsonl(folder / "wildguard-benign.jsonl"):
        e = Example(str(r["text"]), 0, "wildguard", r["family"], "")
        out.append((e, None, [["wildguard:" + norm(e.text), *_runs(e.text)]]))
    return out


def _runs(text: str) -> list[str]:
    """Keys that join paragraphs sharing a run of 12 words (a paragraph in two pages)."""
    return ["benign-run:" + w for w in word_runs(text)]


# -- carriers ------------------------------------------------------------------------------


def settle_carriers(
    attacks: Sequence[tuple[Example, str | None]], clean: Sequence[tuple[Example, str | None]]
) -> list[Example]:
    """Attacks on one paragraph, and the clean paragraph, in one part (module docstring)."""
    on: dict[str, Counter[str]] = {}
    for e, carrier in attacks:
        if carrier and e.part in PARTS:
            on.setdefault(carrier, Counter())[e.part] += 1
    rank = {p: i for i, p in enumerate(PARTS)}  # a tie goes to the rarer part
    chosen = {c: max(n, key=lambda p, n=n: (n[p], rank[p])) for c, n in on.items()}
    out = [
        e.with_part(EXCLUDED) if carrier in chosen and e.part != chosen[carrier] else e
        for e, carrier in attacks
    ]
    out += [
        e.with_part(EXCLUDED) if chosen.get(carrier or "", e.part) != e.part else e
        for e, carrier in clean
    ]
    return out


def injection_sets(folder: Path) -> list[Example]:
    """Every row of the sets above (``folder``: ``../shared/data/injection``), placed."""
    attacks = _placed(agent_rows(folder))
    attacks += _placed(asb_rows(folder / "asb.jsonl"))
    attacks += _placed(spikee_rows(folder / "spikee.jsonl"))
    attacks += _placed(cyberseceval_rows(folder / "cyberseceval-prompt-injection.jsonl"))
    return settle_carriers(attacks, _placed(benign_rows(folder)))
