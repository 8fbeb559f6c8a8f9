"""Fine-tuning the injection classifier: every transformer layer, on random token windows.

Recipe (``FineTune``; the card records it):

- The network is the packaged all-MiniLM-L6-v2 (its first ``layers`` layers, all trained) with
  a linear head on the mean-pooled output. Binary cross-entropy with a positive-class weight
  that makes both classes weigh the same; AdamW, linear warm-up then linear decay.
- Each step draws ``batch_size`` training examples: a (dataset, label) group with probability
  proportional to the square root of its size, then an example of it uniformly, so no big set
  drowns the rest. A text longer than ``train_tokens`` is cut to a random window of that many
  tokens; where the injected span is known, the window holds it (or lies inside it).

Invariants, what makes a run resumable and repeatable:

- Step ``s`` draws its batch and its dropout from generators seeded by ``(seed, s)``, so a run
  stopped and resumed from a checkpoint takes the very steps an unbroken run takes.
- A checkpoint (model, optimiser, schedule, step, seconds so far) is written every
  ``checkpoint_every`` steps to a temporary file and renamed into place: a kill leaves the last
  whole checkpoint. A checkpoint is used only by a run with the same recipe and data.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ragwall.defend.model import Encoded, Special

Say = Callable[[str], None]


@dataclass(frozen=True)
class FineTune:
    """The training recipe. Defaults fit the 2-core CPU box in about two hours."""

    layers: int = 6  # first layers of the backbone kept (all trained)
    train_tokens: int = 128  # window length in training, special tokens included
    max_tokens: int = 128  # pass length at run time: the training windows' length
    pass_stride: int = 96  # tokens between pass starts at run time
    steps: int = 1200
    loso_steps: int = 250  # each leave-one-source-out model
    batch_size: int = 32
    lr: float = 4e-5
    weight_decay: float = 0.01
    warmup: float = 0.06
    dropout: float = 0.1
    freeze_embeddings: bool = True  # the word-embedding table stays as packaged; all else trains
    train_cap: int = 1500  # training examples per (dataset, label, inserted?) group
    eval_cap: int = 400  # the same in val and test
    max_fpr: float = 0.01  # per benign dataset, on val
    max_pooled_fpr: float = 0.005  # all benign val texts together
    checkpoint_every: int = 25
    seed: int = 7

    def key(self, phase: str, data_digest: str) -> str:
        """What a checkpoint must match to be resumed."""
        fit = {k: v for k, v in asdict(self).items() if k not in ("checkpoint_every",)}
        raw = json.dumps({"phase": phase, "data": data_digest, "recipe": fit}, sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Row:
    """A training example as tokens: its label, group, and the injected span in tokens."""

    tokens: Encoded
    label: int
    group: tuple[str, int]
    span: tuple[int, int] | None


def span_tokens(offsets: np.ndarray, span: tuple[int, int] | None) -> tuple[int, int] | None:
    if span is None or not len(offsets):
        return None
    inside = np.flatnonzero((offsets[:, 1] > span[0]) & (offsets[:, 0] < span[1]))
    return (int(inside[0]), int(inside[-1]) + 1) if len(inside) else None


def window(row: Row, body: int, rng: np.random.Generator) -> np.ndarray:
    """The row's tokens, cut to a random window of ``body`` tokens that keeps its span."""
    n = len(row.tokens.ids)
    if n <= body:
        return row.tokens.ids
    lo, hi = 0, n - body
    if row.label == 1 and row.span is not None:
        a, b = row.span
        if b - a >= body:
            lo, hi = a, b - body
        else:
            lo, hi = max(0, b - body), min(a, n - body)
    start = int(rng.integers(lo, hi + 1)) if hi > lo else lo
    return row.tokens.ids[start : start + body]


class Sampler:
    """Draws each step's batch (see the module docstring)."""

    def __init__(self, rows: Sequence[Row], recipe: FineTune) -> None:
        self.rows = rows
        self.recipe = recipe
        groups: dict[tuple[str, int], list[int]] = {}
        for i, r in enumerate(rows):
            groups.setdefault(r.group, []).append(i)
        self.groups = [groups[k] for k in sorted(groups)]
        sizes = np.array([len(g) for g in self.groups], dtype=np.float64)
        self.p = np.sqrt(sizes) / np.sqrt(sizes).sum()
        labels = np.array([rows[g[0]].label for g in self.groups])
        pos, neg = self.p[labels == 1].sum(), self.p[labels == 0].sum()
        self.pos_weight = float(neg / pos) if pos > 0 else 1.0

    def batch(self, step: int, special: Special) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.recipe.seed, step])
        body = self.recipe.train_tokens - 2
        picks = [
            self.groups[g][int(rng.integers(len(self.groups[g])))]
            for g in rng.choice(len(self.groups), size=self.recipe.batch_size, p=self.p)
        ]
        rows = [window(self.rows[i], body, rng) for i in picks]
        width = max(len(r) for r in rows) + 2
        ids = np.full((len(rows), width), special.pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for k, r in enumerate(rows):
            ids[k, 0], ids[k, 1 : len(r) + 1], ids[k, len(r) + 1] = special.cls, r, special.sep
            mask[k, : len(r) + 2] = 1
        y = np.array([self.rows[i].label for i in picks], dtype=np.float32)
        return ids, mask, y


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build_net(backbone: str, recipe: FineTune):  # noqa: ANN201 - torch.nn.Module
    """The backbone's first ``recipe.layers`` layers and a linear head on the mean pool."""
    import torch
    from torch import nn
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(backbone, add_pooling_layer=False)
    bert.encoder.layer = bert.encoder.layer[: recipe.layers]
    bert.config.num_hidden_layers = recipe.layers
    if recipe.freeze_embeddings:
        bert.embeddings.word_embeddings.requires_grad_(False)
    dim = bert.config.hidden_size

    class InjectionClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert
            self.drop = nn.Dropout(recipe.dropout)
            self.head = nn.Linear(dim, 1)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            return self.head(self.drop(pooled)).squeeze(-1)

    return InjectionClassifier()


def torch_forward(net) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:  # noqa: ANN001
    """The net as a ``defend.model.Forward`` (eval mode, no gradients)."""
    import torch

    dev = next(net.parameters()).device

    def forward(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        net.eval()
        with torch.inference_mode():
            out = net(torch.from_numpy(ids).to(dev), torch.from_numpy(mask).to(dev))
        return out.float().cpu().numpy()

    return forward


def _save(path: Path, state: dict) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def fit(
    backbone: str,
    rows: Sequence[Row],
    special: Special,
    recipe: FineTune,
    steps: int,
    checkpoint: Path,
    key: str,
    say: Say,
    label: str,
):  # noqa: ANN201 - (the trained torch module, seconds of training in all)
    """Train for ``steps`` steps, resuming from ``checkpoint`` when it matches ``key``."""
    import torch
    from torch.nn import functional as F

    dev = device()
    if dev == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    torch.manual_seed(recipe.seed)
    net = build_net(backbone, recipe).to(dev)
    trained = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=recipe.lr, weight_decay=recipe.weight_decay)
    warm = max(1, math.ceil(recipe.warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, 1.0 - s / steps)
    )
    sampler = Sampler(rows, recipe)
    pos_weight = torch.tensor(sampler.pos_weight, device=dev)
    step, seconds = 0, 0.0
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location=dev, weights_only=False)
        if state.get("key") == key:
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            step, seconds = int(state["step"]), float(state["seconds"])
            say(f"[{label}] resumed at step {step}/{steps} ({seconds:.0f} s trained before)")
        else:
            say(f"[{label}] {checkpoint.name} is from another recipe or data: starting over")
    net.train()
    began, running, count = time.perf_counter(), 0.0, 0
    since = began
    while step < steps:
        ids, mask, y = sampler.batch(step, special)
        torch.manual_seed(recipe.seed * 1_000_003 + step)  # this step's dropout
        logits = net(torch.from_numpy(ids).to(dev), torch.from_numpy(mask).to(dev))
        loss = F.binary_cross_entropy_with_logits(
            logits, torch.from_numpy(y).to(dev), pos_weight=pos_weight
        )
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        opt.step()
        sched.step()
        step += 1
        running, count = running + float(loss.detach()), count + 1
        elapsed = seconds + time.perf_counter() - began
        if step % recipe.checkpoint_every == 0 or step == steps:
            state = {"key": key, "step": step, "seconds": elapsed, "model": net.state_dict()}
            _save(checkpoint, {**state, "opt": opt.state_dict(), "sched": sched.state_dict()})
            now = time.perf_counter()
            per = (now - since) / count  # seconds a step since the last line
            since = now
            say(
                f"[{label}] step {step}/{steps} loss {running / count:.4f} "
                f"{per:.1f} s/step, eta {per * (steps - step) / 60:.0f} min"
            )
            running, count = 0.0, 0
    net.eval()
    return net, seconds + time.perf_counter() - began


def export_onnx(net, folder: Path) -> Path:  # noqa: ANN001
    """The trained net as ``model.onnx`` in ``folder``, int8 weights (dynamic quantisation)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True, exist_ok=True)
    net = net.cpu().eval()
    net.bert.config._attn_implementation = "eager"  # a plain graph for ONNX
    fp32 = folder / "model.fp32.onnx"
    ids = torch.ones((2, 16), dtype=torch.int64)
    mask = torch.ones((2, 16), dtype=torch.int64)
    torch.onnx.export(
        net,
        (ids, mask),
        str(fp32),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "tokens"},
            "attention_mask": {0: "batch", 1: "tokens"},
            "logits": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )
    out = folder / "model.onnx"
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
    fp32.unlink()
    return out
