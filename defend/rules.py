"""Transparent injection rules: each names what it saw, so a flag can always say why.

Every rule is a small pure function of the text returning the evidence it found (short
excerpts). ``scan`` runs them all and combines their weights into one score in [0, 1] by
noisy-or: one strong signal (``ignore previous instructions``) is enough to flag, several weak
ones (an imperative aimed at an assistant next to a URL) add up.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace

# -- hidden characters ---------------------------------------------------------------------
ZERO_WIDTH = {
    "\u200b",
    "\u200c",
    "\u200d",
    "\u2060",
    "\u2061",
    "\u2062",
    "\u2063",
    "\u2064",
    "\ufeff",
}
BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F)}


def _tag_char(ch: str) -> bool:  # Unicode "tag" characters smuggle invisible ASCII
    return 0xE0000 <= ord(ch) <= 0xE007F


_ZW_RX = re.compile("[" + "".join(sorted(ZERO_WIDTH)) + "]")
_BIDI_RX = re.compile("[" + "".join(sorted(BIDI)) + "]")
_TAG_RX = re.compile("[\U000e0000-\U000e007f]")
_ANY_HIDDEN_RX = re.compile(f"{_ZW_RX.pattern}|{_BIDI_RX.pattern}|{_TAG_RX.pattern}")


@dataclass(frozen=True)
class RuleHit:
    rule: str
    weight: float
    evidence: str
    span: tuple[int, int] | None = None  # the match in the scanned text, where it maps back


@dataclass(frozen=True)
class Scan:
    score: float
    hits: tuple[RuleHit, ...]

    @property
    def reasons(self) -> list[str]:
        return [f"{h.rule}: {h.evidence}" for h in self.hits]

    @property
    def hidden_text(self) -> bool:
        return any(h.rule == "hidden_characters" for h in self.hits)


def _excerpt(text: str, m: re.Match, pad: int = 30) -> str:
    start, end = max(0, m.start() - pad), min(len(text), m.end() + pad)
    snippet = " ".join(text[start:end].split())
    return ("…" if start else "") + snippet[:140] + ("…" if end < len(text) else "")


def _pattern_rule(name: str, weight: float, pattern: str) -> Callable[[str], list[RuleHit]]:
    rx = re.compile(pattern, re.IGNORECASE | re.MULTILINE)

    def rule(text: str) -> list[RuleHit]:
        m = rx.search(text)
        return [RuleHit(name, weight, _excerpt(text, m), (m.start(), m.end()))] if m else []

    rule.__name__ = name
    return rule


_AI = r"(?:ai|a\.i\.|assistant|chat ?bot|chatgpt|gpt(?:-?\d)?|claude|gemini|copilot|llm|language model|agent|bot)"
_PRIOR = r"(?:previous|prior|preceding|above|earlier|original|initial|all|any|your|the)"
_ORDERS = r"(?:instructions?|prompts?|directions?|rules|guidelines|directives|commands|context|messages?|system prompt)"

# What an assistant writes back. Not "output" or "summary": "write the logs to your output
# directory" is how manuals talk.
_OUTPUT = r"(?:response|responses|answer|answers|reply to (?:the )?user)"

RULES: list[Callable[[str], list[RuleHit]]] = [
    _pattern_rule(
        "override_instructions",
        0.9,
        rf"\b(?:ignore|disregard|forget|override|bypass|skip|abandon|drop)\b[^.\n]{{0,30}}\b{_PRIOR}\b[^.\n]{{0,20}}\b{_ORDERS}\b",
    ),
    _pattern_rule(
        "new_instructions",
        0.7,
        r"\b(?:new|updated|real|actual|secret|hidden|important|urgent) (?:instructions?|task|orders|directive)s?\s*(?::|for (?:the )?(?:ai|assistant|model))",
    ),
    _pattern_rule(
        "addressed_to_ai",
        0.55,
        rf"(?:\b(?:dear|attention|note to|hey|hi|hello|instructions? for)(?: the)? {_AI}\b|\bif you are an? {_AI}\b|\b(?:as an?|you are (?:now )?an?|act as an?|pretend (?:to be|you are) an?) (?:\w+ )?{_AI}\b|^\s*{_AI}\s*[,:] )",
    ),
    _pattern_rule(
        "role_marker",
        0.7,
        r"(?:^\s*(?:system|assistant|### ?(?:system|instruction)s?)\s*:|<\|(?:im_start|im_end|system|endoftext)\|>|\[/?INST\]|<<\s*/?SYS\s*>>|</?system>|\bsystem prompt\s*:)",
    ),
    _pattern_rule(
        "exfiltration_request",
        0.6,
        r"(?<![.\w])(?:send|forward|email|e-mail|post|upload|leak|reveal|disclose|share|print|output|repeat|exfiltrate|transmit)\b[^.\n]{0,40}\b(?:passwords?|credentials?|api[ _-]?keys?|secrets?|tokens?|system prompt|(?:your|the) (?:instructions|prompt)|conversation (?:history|log)|chat history|private (?:data|keys?)|ssh keys?|cookies?)\b",
    ),
    _pattern_rule(
        "payment_request",
        0.45,
        r"\b(?:wire|transfer|send|pay|refund|remit)\b[^.\n]{0,30}\b(?:\$\s?\d[\d,.]*|\d[\d,.]* ?(?:usd|eur|dollars|euros|btc|bitcoin)|funds|money|payment|the refund)\b[^.\n]{0,60}\b(?:to|into)\b[^.\n]{0,20}\b(?:account|iban|wallet|address)\b",
    ),
    _pattern_rule(
        "visit_link",
        0.4,
        r"\b(?:visit|click|open|go to|navigate to|browse to|fetch|load|download from)\b[^.\n]{0,30}(?:https?://|www\.)\S+",
    ),
    _pattern_rule(
        "execution_bait",
        0.5,
        r"(?:\b(?:run|execute|eval|paste|type) (?:this|the following|these|below)\b[^.\n]{0,20}\b(?:code|command|script|snippet|in (?:a|your) (?:shell|terminal))|curl [^|\n]{1,200}\|\s*(?:ba|z)?sh\b|\bwget [^|\n]{1,200}\|\s*(?:ba|z)?sh\b|\brm -rf /|powershell(?:\.exe)? -(?:enc|e|encodedcommand)\b|\bos\.system\(|\bsubprocess\.(?:run|call|Popen)\(|\beval\(base64)",
    ),
    _pattern_rule(
        "tool_call_bait",
        0.5,
        r"(?:\b(?:call|invoke|use) the (?:\w+ )?(?:tool|function|plugin|api)\b[^.\n]{0,40}\b(?:with|to)\b|\"(?:tool|function)_call\"\s*:|<tool_call>|\bfunction_call\s*\()",
    ),
    _pattern_rule(
        # A sentence that tells the reader how to compose its own reply: documents describe
        # things, they do not say "add a sentence in your response" or "answer in French".
        "response_directive",
        0.55,
        rf"(?:^|[.!?:;]\s+|\n\s*)(?:please\s+)?(?:also\s+)?(?:add|include|insert|integrate|incorporate|append|embed|mention|end|start|begin|finish|conclude|write|replace|remove|introduce|rearrange|reverse|translate|format|encode|spell|use|put|make)\b[^.\n]{{0,80}}\b(?:in|into|to|from|of|within|throughout|at the (?:end|start|beginning) of)\s+(?:your|each|every)\s+{_OUTPUT}\b",
    ),
    _pattern_rule(
        # Code handed to the reader to adopt ("incorporate the following code excerpt"). Alone
        # it is how tutorials talk, so it weighs little; with exfiltration code it flags.
        "code_insertion",
        0.35,
        r"\b(?:incorporate|integrate|include|insert|add|append|embed|meld|utili[sz]e|use|enlist|execute|run|ensure|weave|inject|copy|adopt|employ|embody)\b[^.\n]{0,60}\b(?:following|subsequent|below|given|provided|attached)\s+(?:code|python|script|snippet)\b",
    ),
    _pattern_rule(
        "do_not_tell",
        0.5,
        r"\b(?:do not|don't|never) (?:tell|inform|mention|reveal|show|let)\b[^.\n]{0,25}\b(?:the )?(?:user|human|customer|anyone|them)\b",
    ),
]

_SECRET_SOURCE = re.compile(
    r"\bos\.environ\b|\bos\.getenv\(|http\.cookiejar|browser_cookie3|\bcookies\.(?:txt|sqlite)|"
    r"\bpsutil\.|\bgetpass\.|\bkeyring\.|/etc/(?:passwd|shadow)|\.ssh/|\bid_rsa\b|\busb\.core\b|"
    r"\bbluetooth\b|\bpyperclip\.|\bpynput\b|\bImageGrab\.|pyautogui\.screenshot|"
    r"\bsocket\.gethostname\(|\bplatform\.(?:uname|node)\(|\bclipboard\.|\bwin32crypt\b"
)
_NETWORK_SINK = re.compile(
    r"\brequests\.(?:post|put|patch)\(|\burllib\.request\.urlopen\(|\bhttp\.client\.|\bsmtplib\.|"
    r"\bftplib\.|\bparamiko\.|\.sendall?\(|\bhttpx\.(?:post|put)\("
)


def exfiltration_code(text: str) -> list[RuleHit]:
    """Code that reads local secrets or system details and sends data out over the network."""
    source = _SECRET_SOURCE.search(text)
    if source is None:
        return []
    sink = _NETWORK_SINK.search(text)
    if sink is None:
        return []
    return [
        RuleHit(
            "exfiltration_code", 0.45, f"reads {source.group(0)!r} and sends with {sink.group(0)!r}"
        )
    ]


_B64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{40,}={0,2}(?![A-Za-z0-9+/=])")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}){40,}\b")


def encoded_payload(text: str) -> list[RuleHit]:
    """Base64 (or hex) blobs that decode to readable text: a way to smuggle instructions."""
    for m in _B64.finditer(text):
        blob = m.group(0)
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        if _readable(raw):
            decoded = raw.decode("utf-8", "replace")
            return [RuleHit("encoded_payload", 0.6, f"base64 decoding to {decoded[:60]!r}")]
    for m in _HEX.finditer(text):
        raw = bytes.fromhex(m.group(0))
        if _readable(raw):
            return [RuleHit("encoded_payload", 0.5, f"hex decoding to {raw[:60]!r}")]
    return []


def _readable(raw: bytes) -> bool:
    if len(raw) < 20:
        return False
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\n\t" for ch in s)
    letters = sum(ch.isalpha() or ch == " " for ch in s)
    return printable / len(s) > 0.95 and letters / len(s) > 0.7 and " " in s


def hidden_characters(text: str) -> list[RuleHit]:
    """Zero-width, bidi-control and tag characters: text a person does not see."""
    if not _ANY_HIDDEN_RX.search(text):
        return []
    zw = len(_ZW_RX.findall(text))
    bidi = len(_BIDI_RX.findall(text))
    tags = len(_TAG_RX.findall(text))
    # One stray zero-width joiner is common in emoji and Indic scripts; several are not.
    if tags or bidi >= 1 or zw >= 3:
        parts = []
        if zw:
            parts.append(f"{zw} zero-width")
        if bidi:
            parts.append(f"{bidi} bidi-control")
        if tags:
            hidden = "".join(chr(ord(c) - 0xE0000) for c in text if _tag_char(c))
            parts.append(f"{tags} tag characters spelling {hidden[:60]!r}")
        return [RuleHit("hidden_characters", 0.6 if (tags or zw >= 3) else 0.3, ", ".join(parts))]
    return []


def strip_hidden(text: str) -> str:
    """``text`` without invisible characters (for scanning what they may hide between)."""
    return "".join(
        ch for ch in text if ch not in ZERO_WIDTH and ch not in BIDI and not _tag_char(ch)
    )


ALL_RULES: list[Callable[[str], list[RuleHit]]] = [*RULES, encoded_payload, exfiltration_code]


def scan(text: str) -> Scan:
    """Run every rule on ``text``; the score is the noisy-or of the rules that fired."""
    hits = hidden_characters(text)
    visible = strip_hidden(text) if hits else text
    if not visible.isascii():
        visible = unicodedata.normalize("NFKC", visible)
    tagged = "".join(chr(ord(c) - 0xE0000) for c in _TAG_RX.findall(text)) if hits else ""
    same = visible == text  # else a match's offsets do not point into ``text``
    for rule in ALL_RULES:
        hits += rule(visible) if same else [replace(h, span=None) for h in rule(visible)]
        if tagged:
            hits += [replace(h, span=None) for h in rule(tagged)]
    seen: dict[str, RuleHit] = {}
    for hit in hits:
        if hit.rule not in seen or hit.weight > seen[hit.rule].weight:
            seen[hit.rule] = hit
    miss = 1.0
    for hit in seen.values():
        miss *= 1.0 - hit.weight
    return Scan(round(1.0 - miss, 4), tuple(seen.values()))
