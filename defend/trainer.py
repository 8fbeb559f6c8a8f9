"""``ragwall defend train``: fit, calibrate, export and card the injection classifier.

The run, in order (each step's result is kept in ``work``, so a run that is stopped resumes
where it stopped, and a finished step is never repeated):

1. Examples from ``defend.data`` (every shared set), at most ``train_cap`` per (dataset, label,
   inserted-or-not) group in train and ``eval_cap`` in val and test.
2. The shipped model: ``defend.finetune.fit`` on the train part for ``steps`` steps, exported
   to ONNX int8 with the backbone's tokenizer and a card.
3. The threshold, on the ``val`` part (families and documents the fit never saw), scored by the
   exported ONNX model through the code the product runs (``defend.model``); then the
   figures of ``val`` and ``test`` (own split: not held-out figures).
4. Leave one source out: for each source named, a model trained without it and without
   anything built from it (``loso_steps`` steps), thresholded on the others' val part the same
   way, scored on every row of the left-out source. These are the figures for a kind of data
   the model never saw; they are added to the card one by one.
"""

from __future__ import annotations

import hashlib
import json
import platform
import random
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ragwall.defend.calibrate import auc, choose_threshold, rates
from ragwall.defend.card import render_card
from ragwall.defend.data import Example, build_examples, derived_from
from ragwall.defend.finetune import (
    FineTune,
    Row,
    Say,
    device,
    export_onnx,
    fit,
    span_tokens,
    torch_forward,
)
from ragwall.defend.model import (
    KIND,
    InjectionModel,
    encode,
    load_tokenizer,
    score_texts,
    special_ids,
)
from ragwall.embed import resolve_model_path
from ragwall.settings import DEFAULT_EMBEDDING_MODEL

DEFAULT_LOSO = ("injecagent", "spikee", "cyberseceval", "tasktracker", "bipia")


def subsample(examples: Sequence[Example], recipe: FineTune) -> list[Example]:
    """At most ``train_cap`` (train) or ``eval_cap`` (val, test) examples per group, where a
    group is (part, dataset, label, inserted into another text or not)."""
    rng = random.Random(recipe.seed)
    groups: dict[tuple, list[Example]] = {}
    for e in examples:
        groups.setdefault((e.part, e.dataset, e.label, "@" in e.family), []).append(e)
    out: list[Example] = []
    for key in sorted(groups):
        members = groups[key]
        cap = recipe.train_cap if key[0] == "train" else recipe.eval_cap
        out += members if len(members) <= cap else rng.sample(members, cap)
    return out


def digest(examples: Sequence[Example]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(f"{e.part}\x00{e.label}\x00{e.dataset}\x00{e.text}\x01".encode())
    return h.hexdigest()[:16]


def to_rows(tok, examples: Sequence[Example]) -> list[Row]:  # noqa: ANN001
    encoded = encode(tok, [e.text for e in examples])
    return [
        Row(enc, e.label, (e.dataset, e.label), span_tokens(enc.offsets, e.span))
        for e, enc in zip(examples, encoded, strict=True)
    ]


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    return f"CPU: {platform.machine()}, {torch.get_num_threads()} threads"


def train(
    data: Path,
    out: Path,
    work: Path,
    recipe: FineTune | None = None,
    loso: Sequence[str] = DEFAULT_LOSO,
    say: Say = print,
    command: str = "",
) -> dict:
    """The whole run (see the module docstring); returns the card."""
    recipe = recipe or FineTune()
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    backbone = resolve_model_path(DEFAULT_EMBEDDING_MODEL)
    tok = load_tokenizer(Path(backbone) / "tokenizer.json")
    special = special_ids(tok)
    examples = subsample(build_examples(data, seed=recipe.seed), recipe)
    data_key = digest(examples)
    say(f"{len(examples)} examples: " + json.dumps(Counter(e.part for e in examples)))
    train_rows = [e for e in examples if e.part == "train"]
    net, fit_seconds = fit(
        backbone,
        to_rows(tok, train_rows),
        special,
        recipe,
        recipe.steps,
        work / "model.pt",
        recipe.key("model", data_key),
        say,
        "model",
    )
    export_onnx(net, out)
    del net
    shutil.copy(Path(backbone) / "tokenizer.json", out / "tokenizer.json")
    card: dict = {
        "kind": KIND,
        "name": "ragwall-injection-minilm",
        "backbone": DEFAULT_EMBEDDING_MODEL,
        "layers": recipe.layers,
        "max_tokens": recipe.max_tokens,
        "pass_stride": recipe.pass_stride,
        "threshold_logit": 0.0,
    }
    (out / "card.json").write_text(json.dumps(card))
    model = InjectionModel.load(out)
    evaluated = [i for i, e in enumerate(examples) if e.part in ("val", "test")]
    t = time.perf_counter()
    say(f"scoring {len(evaluated)} val and test texts with the ONNX model")
    logits = np.full(len(examples), -1e4)
    logits[evaluated] = model.logits([examples[i].text for i in evaluated])
    val = [i for i in evaluated if examples[i].part == "val"]
    test = [i for i in evaluated if examples[i].part == "test"]
    cut, _ = choose_threshold(logits[val], [examples[i] for i in val], recipe)
    _keep_scores(work / "scored.json", examples, logits, evaluated)
    card.update(
        {
            "threshold_logit": round(cut, 4),
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": command or f"ragwall defend train --data {data} --out {out}",
            "hardware": hardware(),
            "device": device(),
            "seconds": {
                "fit": round(fit_seconds),
                "score_val_test": round(time.perf_counter() - t),
            },
            "onnx_int8_bytes": (out / "model.onnx").stat().st_size,
            "recipe": asdict(recipe),
            "examples": {
                part: dict(Counter(f"{e.dataset}:{e.label}" for e in examples if e.part == part))
                for part in ("train", "val", "test")
            },
            "validation": rates(logits[val], [examples[i] for i in val], cut),
            "test_own_split": rates(logits[test], [examples[i] for i in test], cut),
            "leave_one_source_out": {},
        }
    )
    _write_card(out, card)
    say(f"wrote {out / 'model.onnx'} ({card['onnx_int8_bytes'] / 1e6:.1f} MB); threshold {cut}")
    for source in loso:
        card["leave_one_source_out"][source] = leave_out(
            source, examples, tok, special, backbone, recipe, data_key, work, say
        )
        _write_card(out, card)
    card["seconds"]["total_this_call"] = round(time.perf_counter() - started)
    _write_card(out, card)
    return card


def leave_out(
    source: str,
    examples: Sequence[Example],
    tok,  # noqa: ANN001
    special,  # noqa: ANN001
    backbone: str,
    recipe: FineTune,
    data_key: str,
    work: Path,
    say: Say,
) -> dict:
    """One leave-one-source-out figure (see the module docstring), kept in ``work``."""
    done = work / f"loso-{source}.json"
    if done.is_file():
        return json.loads(done.read_text())
    held = [i for i, e in enumerate(examples) if source in derived_from(e)]
    if not held:
        raise ValueError(f"no examples come from {source!r}: nothing to leave out")
    train_rows = [e for e in examples if e.part == "train" and source not in derived_from(e)]
    net, seconds = fit(
        backbone,
        to_rows(tok, train_rows),
        special,
        recipe,
        recipe.loso_steps,
        work / f"loso-{source}.pt",
        recipe.key(f"without {source}", data_key),
        say,
        f"without {source}",
    )
    val = [i for i, e in enumerate(examples) if e.part == "val" and source not in derived_from(e)]
    needed = sorted(set(val) | set(held))
    t = time.perf_counter()
    say(f"[without {source}] scoring {len(needed)} texts")
    logits = np.full(len(examples), -1e4)
    got, _ = score_texts(
        torch_forward(net),
        tok,
        [examples[i].text for i in needed],
        recipe.max_tokens,
        recipe.pass_stride,
    )
    logits[needed] = got
    cut, _ = choose_threshold(logits[val], [examples[i] for i in val], recipe)
    held_examples = [examples[i] for i in held]
    pos = [i for i in held if examples[i].label == 1]
    neg = [i for i in held if examples[i].label == 0]
    row: dict = {
        "recall": round(float(np.mean(logits[pos] >= cut)), 4) if pos else None,
        "attacks": len(pos),
        "benign": len(neg),
        "fpr": round(float(np.mean(logits[neg] >= cut)), 4) if neg else None,
        "auc_vs_val_benign": auc(logits, list(examples), held, val),
        "by_dataset": rates(logits[held], held_examples, cut),
        "threshold_logit": round(cut, 4),
        "steps": recipe.loso_steps,
        "seconds": {"fit": round(seconds), "score": round(time.perf_counter() - t)},
    }
    done.write_text(json.dumps(row, indent=1))
    say(f"[without {source}] {json.dumps({k: row[k] for k in ('recall', 'fpr', 'attacks')})}")
    return row


def _keep_scores(
    path: Path, examples: Sequence[Example], logits: np.ndarray, idx: Sequence[int]
) -> None:
    """The val and test scores, for looking into the errors afterwards (not shipped)."""
    rows = [
        {
            "part": examples[i].part,
            "dataset": examples[i].dataset,
            "family": examples[i].family,
            "label": examples[i].label,
            "logit": round(float(logits[i]), 3),
            "text": examples[i].text[:300],
        }
        for i in idx
    ]
    path.write_text(json.dumps(rows))


def _write_card(out: Path, card: dict) -> None:
    (out / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    (out / "README.md").write_text(render_card(card))
