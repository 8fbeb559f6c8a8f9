"""Train Ragwall's own cross-encoder from the packaged MiniLM backbone.

No cross-encoder weights can be downloaded here, so the reranker is fine-tuned from the
all-MiniLM-L6-v2 encoder (optionally cut to fewer layers: faster at query time) on weak
supervision that any corpus offers: a document's title is the query for its own text, and hard
negatives are mined with Ragwall's hybrid retriever (dense + BM25 fused in Qdrant). No judged
query is used, so every judged query set stays held out for evaluation.

The result is exported to ONNX, quantized int8 per channel, and written with a model card.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ragwall.datasets import load_corpus

_WORDS = re.compile(r"\w+")


@dataclass
class TrainConfig:
    corpora: list[Path]
    out_dir: Path
    base_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    layers: int = 6
    max_length: int = 192
    negatives: int = 3
    epochs: int = 1
    batch_size: int = 16
    lr: float = 4e-5
    seed: int = 13
    max_pairs: int | None = None
    threads: int | None = None


@dataclass
class TrainingPair:
    query: str
    passage: str
    label: float


@dataclass
class ModelCard:
    base_model: str
    layers: int
    max_length: int
    corpora: list[str]
    queries: int
    pairs: int
    negatives_per_query: int
    epochs: int
    steps: int
    batch_size: int
    lr: float
    seed: int
    train_seconds: float
    final_loss: float
    created_at: str
    command: str
    metrics: dict = field(default_factory=dict)


def title_pairs(corpora: list[Path]) -> list[tuple[str, str, str]]:
    """(doc key, title as query, text without the title) for every titled document."""
    out = []
    for folder in corpora:
        for doc_id, doc in load_corpus(folder).items():
            title = " ".join(doc["title"].split()).strip(" .")
            text = " ".join(doc["text"].split())
            if title and text.lower().startswith(title.lower()):
                text = text[len(title) :].lstrip(" .")
            if len(_WORDS.findall(title)) >= 3 and len(_WORDS.findall(text)) >= 20:
                out.append((f"{folder.name}/{doc_id}", title, text))
    return out


def mine_negatives(
    docs: list[tuple[str, str, str]], k: int, seed: int, say: Callable[[str], None]
) -> list[TrainingPair]:
    """Hard negatives from the hybrid retriever over the same passages (a scratch Qdrant shard)."""
    # deferred: training loads torch and qdrant-edge only when it runs
    from ragwall.embed import DenseEncoder
    from ragwall.retrieval.edge_store import EdgeStore
    from ragwall.retrieval.search import HybridSearcher
    from ragwall.retrieval.sparse import bm25_document_vector, tokenize
    from ragwall.retrieval.store import Filter, PointIn, SparseVec

    rng = random.Random(seed)
    encoder = DenseEncoder()
    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeStore.open(Path(tmp) / "shard", encoder.dim)
        try:
            say(f"indexing {len(docs)} passages for negative mining")
            terms = [tokenize(text) for _, _, text in docs]
            avg = sum(map(len, terms)) / max(len(terms), 1)
            vectors = encoder.encode([text for _, _, text in docs])
            points = []
            for i, (t, v) in enumerate(zip(terms, vectors, strict=True)):
                sv = bm25_document_vector(t, avg)
                points.append(
                    PointIn(
                        str(uuid.UUID(int=i + 1)),
                        v,
                        SparseVec(sv.indices, sv.values),
                        {"i": i, "state": "live"},
                    )
                )
            for s in range(0, len(points), 256):
                store.upsert(points[s : s + 256])
            store.optimize()
            searcher = HybridSearcher(store, encoder)
            say("mining hard negatives")
            pairs: list[TrainingPair] = []
            for i, (_, title, text) in enumerate(docs):
                hits = searcher.search(title, Filter(), top_k=15, candidates=30).hits
                pool = [h.provenance["i"] for h in hits if h.provenance["i"] != i][1:]
                pairs.append(TrainingPair(title, text, 1.0))
                for j in rng.sample(pool, min(k, len(pool))):
                    pairs.append(TrainingPair(title, docs[j][2], 0.0))
            return pairs
        finally:
            store.close()


def train(config: TrainConfig, say: Callable[[str], None] = print) -> ModelCard:
    import numpy as np
    import torch
    from tqdm import tqdm

    # deferred: training loads transformers only when it runs
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ragwall.embed import resolve_model_path
    from ragwall.rerank.onnx import export_onnx

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)

    docs = title_pairs(config.corpora)
    if not docs:
        raise ValueError("no titled documents in the given corpora")
    key = json.dumps(
        [sorted(str(c.resolve()) for c in config.corpora), config.negatives, config.seed]
    )
    cache = config.out_dir / f"pairs-{hashlib.sha256(key.encode()).hexdigest()[:12]}.jsonl"
    if cache.exists():  # mining is the slow part of a restart; the pairs depend only on the data
        pairs = [TrainingPair(**json.loads(x)) for x in cache.read_text().splitlines() if x.strip()]
        say(f"reusing {len(pairs)} mined pairs from {cache}")
    else:
        pairs = mine_negatives(docs, config.negatives, config.seed, say)
        config.out_dir.mkdir(parents=True, exist_ok=True)
        cache.write_text("".join(json.dumps(asdict(p)) + "\n" for p in pairs))
    if config.max_pairs:
        pairs = pairs[: config.max_pairs]
    say(f"{len(docs)} queries, {len(pairs)} pairs")

    base = resolve_model_path(config.base_model)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    if config.layers < model.config.num_hidden_layers:
        model.bert.encoder.layer = model.bert.encoder.layer[: config.layers]
        model.config.num_hidden_layers = config.layers
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    steps_total = config.epochs * ((len(pairs) + config.batch_size - 1) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / max(1, steps_total // 10)) * max(0.0, 1 - s / steps_total),
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    rng = random.Random(config.seed)
    t0, step, last = time.perf_counter(), 0, float("nan")
    for epoch in range(config.epochs):
        order = list(range(len(pairs)))
        rng.shuffle(order)
        bar = tqdm(range(0, len(order), config.batch_size), desc=f"epoch {epoch + 1}", unit="batch")
        for start in bar:
            batch = [pairs[i] for i in order[start : start + config.batch_size]]
            enc = tokenizer(
                [p.query for p in batch],
                [p.passage for p in batch],
                padding=True,
                truncation="longest_first",
                max_length=config.max_length,
                return_tensors="pt",
            )
            labels = torch.tensor([p.label for p in batch])
            logits = model(**enc).logits.squeeze(-1)
            loss = loss_fn(logits, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            last = 0.9 * last + 0.1 * loss.item() if step > 1 else loss.item()
            bar.set_postfix(loss=f"{last:.3f}")
    train_s = time.perf_counter() - t0
    model.eval()
    hf_dir = config.out_dir / "hf"
    model.save_pretrained(str(hf_dir))
    tokenizer.save_pretrained(str(hf_dir))
    say("exporting to ONNX int8")
    export_onnx(hf_dir, config.out_dir)
    (config.out_dir / "model.onnx").unlink(missing_ok=True)  # keep the int8 model only
    card = ModelCard(
        base_model=config.base_model,
        layers=config.layers,
        max_length=config.max_length,
        corpora=[str(c) for c in config.corpora],
        queries=len(docs),
        pairs=len(pairs),
        negatives_per_query=config.negatives,
        epochs=config.epochs,
        steps=step,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        train_seconds=round(train_s, 1),
        final_loss=round(last, 4),
        created_at=datetime.now(UTC).isoformat(),
        command="ragwall rerank train "
        + " ".join(f"--corpus {c}" for c in config.corpora)
        + f" --out {config.out_dir} --layers {config.layers} --max-length {config.max_length}"
        + f" --negatives {config.negatives} --epochs {config.epochs} --batch-size {config.batch_size}"
        + f" --lr {config.lr} --seed {config.seed}",
    )
    write_card(config.out_dir, card)
    return card


def write_card(out_dir: Path, card: ModelCard) -> None:
    (out_dir / "ragwall_reranker.json").write_text(json.dumps(asdict(card), indent=2) + "\n")
    lines = [
        "# Ragwall reranker",
        "",
        f"A {card.layers}-layer cross-encoder fine-tuned from `{card.base_model}` "
        "(ONNX, int8 per-channel), trained by `ragwall rerank train`.",
        "",
        "## Data",
        "",
        f"Weak supervision only: {card.queries} document titles as queries for their own text "
        f"(title removed), {card.negatives_per_query} hard negatives each mined with Ragwall's "
        f"hybrid retriever; {card.pairs} pairs from: {', '.join(card.corpora)}. No judged query "
        "was used, so judged query sets are held out.",
        "",
        "## Training",
        "",
        f"{card.epochs} epoch(s), {card.steps} steps of batch {card.batch_size}, AdamW lr "
        f"{card.lr}, binary cross-entropy, max length {card.max_length}, seed {card.seed}; "
        f"{card.train_seconds} s; final loss {card.final_loss}.",
        "",
        f"Reproduce: `{card.command}`",
        "",
        "## Metrics (held-out judged queries)",
        "",
    ]
    if card.metrics:
        lines += ["| dataset | fused nDCG@10 | fused+rerank nDCG@10 |", "|---|---|---|"]
        for name, m in card.metrics.items():
            lines.append(f"| {name} | {m['fused']} | {m['fused+rerank']} |")
    else:
        lines.append("Not measured yet: run `ragwall eval retrieval --reranker <this folder>`.")
    (out_dir / "README.md").write_text("\n".join(lines) + "\n")
