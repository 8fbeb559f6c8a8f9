"""``ragwall eval retrieval``, ``eval poisoning`` and ``eval injection``: measures a CI can gate on.

Each runs an evaluation of ``ragwall.eval`` (on scratch indexes, not the data dir's); tables go
to stderr, ``--json`` ends stdout with one JSON line. Exit status: 0, 1 when a gate
(``--max-asr``) fails, 2 on an error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ragwall.api.cli.common import err, reported, settings


def eval_retrieval(
    dataset: Annotated[
        Path, typer.Option(help="A BEIR folder: corpus.jsonl, queries.jsonl, qrels/.")
    ],
    split: Annotated[str, typer.Option(help="The qrels file: qrels/SPLIT.tsv.")] = "test",
    reranker: Annotated[
        str | None, typer.Option(help="Cross-encoder for the fused+rerank stage.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line.")] = False,
) -> None:
    """nDCG@10, Recall@100, MRR@10 and latency for dense, BM25, fused and fused+rerank."""
    # deferred: the eval loads the service, torch and the datasets
    from ragwall.eval.retrieval import evaluate_retrieval

    defaults = settings()
    with reported():
        result = evaluate_retrieval(
            dataset, split, reranker or defaults.reranker_model, progress=lambda m: err.print(m)
        )
    table = Table(
        "system",
        "nDCG@10",
        "Recall@100",
        "MRR@10",
        "ms/query",
        title=f"{dataset.name} / {split} ({result['stages']['fused']['queries']} queries)",
    )
    rows = {**{f"ragwall {k}": v for k, v in result["stages"].items()}, **result["peers"]}
    for name, m in rows.items():
        table.add_row(
            name,
            f"{m['ndcg@10']:.4f}",
            f"{m['recall@100']:.4f}",
            f"{m['mrr@10']:.4f}",
            f"{m['ms_per_query']:.1f}",
        )
    err.print(table)
    vs = result["versus_peer"]
    paired = Table(
        "system",
        "mean Δ nDCG@10",
        "95% CI",
        "p",
        "wins/losses/ties",
        title=f"paired, query by query, against {vs['peer']}",
    )
    for name, d in vs.items():
        if name != "peer":
            lo, hi = d["ci95"]
            paired.add_row(
                f"ragwall {name}",
                f"{d['mean_diff']:+.4f}",
                f"[{lo:+.4f}, {hi:+.4f}]" + ("" if lo > 0 or hi < 0 else " (noise)"),
                f"{d['p']:.3f}",
                f"{d['wins']}/{d['losses']}/{d['ties']}",
            )
    err.print(paired)
    boost = result["freshness"]
    lo, hi = boost["ci95"]
    err.print(
        f"recency boost (half-life {boost['half_life_days']:g} d, synthetic ages up to "
        f"{boost['max_age_days']} d) against fused: nDCG@10 {boost['mean_diff']:+.4f} "
        f"[{lo:+.4f}, {hi:+.4f}], p {boost['p']:.3f}"
    )
    if as_json:
        print(json.dumps(result))


def eval_poisoning(
    attack: Annotated[Path, typer.Option(help="PoisonedRAG attack file (JSON).")],
    background: Annotated[
        list[Path],
        typer.Option(help="Clean background: a BEIR folder or a document folder (repeat)."),
    ],
    clean: Annotated[
        Path | None, typer.Option(help="Clean judged data (BEIR, one qrels file) for the cost.")
    ] = None,
    max_asr: Annotated[
        float | None, typer.Option(help="Exit 1 if attack success with defenses on exceeds this.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line.")] = False,
) -> None:
    """Attack success at top 5 with defenses off and on; the defenses' cost on clean data."""
    # deferred: the eval loads the service, torch and the datasets
    from ragwall.eval.poisoning import evaluate_poisoning

    with reported():
        result = evaluate_poisoning(attack, background, clean, progress=lambda m: err.print(m))
    table = Table("measure", "defenses off", "defenses on", title=f"poisoning: {attack.name}")
    for name in ("asr@5", "asr@5_single", "clean_ndcg@10"):
        if name in result:
            table.add_row(name, f"{result[name]['off']:.4f}", f"{result[name]['on']:.4f}")
    if "clean_flag_rate" in result:
        table.add_row("clean top-5 flagged", "", f"{result['clean_flag_rate']:.4f}")
    err.print(table)
    if as_json:
        print(json.dumps(result))
    if max_asr is not None and result["asr@5"]["on"] > max_asr:
        err.print(f"[red]attack success {result['asr@5']['on']:.4f} exceeds {max_asr}[/red]")
        raise typer.Exit(1)


def eval_injection(
    dataset: Annotated[
        list[Path] | None,
        typer.Option(help='JSON lines {"text": ..., "label": 0|1} (repeat for several sets).'),
    ] = None,
    windows: Annotated[
        list[Path] | None,
        typer.Option(
            help="Ordinary documents cut into 1,000-character windows (a BEIR folder, a SQuAD "
            "folder or a folder of files; repeat): every flag is a false positive."
        ),
    ] = None,
    unseen_only: Annotated[
        bool,
        typer.Option(help="Windows only from documents the model was not trained on."),
    ] = False,
    max_windows: Annotated[
        int | None, typer.Option(help="A fixed random sample of at most this many per --windows.")
    ] = None,
    documents: Annotated[
        Path | None,
        typer.Option(help="Or: a folder of clean documents; reports the share of chunks flagged."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Flag at this score (default: the setting).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line.")] = False,
) -> None:
    """Recall and false positives of the rules, the old head, the model, and rules + model."""
    # deferred: the eval loads the service, torch and onnxruntime
    from ragwall.eval.injection import DETECTORS, evaluate_documents, evaluate_injection

    if documents is not None and (dataset or windows):
        err.print("[red]error:[/red] --documents goes alone; or give --dataset and/or --windows")
        raise typer.Exit(2)
    if documents is None and not dataset and not windows:
        err.print("[red]error:[/red] give --dataset FILE.jsonl, --windows DIR or --documents DIR")
        raise typer.Exit(2)
    if documents is not None:
        result = evaluate_documents(documents)
        err.print(
            f"{result['chunks']} chunks of {result['documents']} documents: "
            f"{result['injection_flagged']} flagged as injection ({result['injection_rate']:.2%}), "
            f"{result['hidden_text']} with hidden text"
        )
        if as_json:
            print(json.dumps(result))
        return
    with reported():
        result = evaluate_injection(
            dataset or [],
            threshold,
            windows or [],
            unseen_only,
            say=lambda m: err.print(m),
            max_windows=max_windows,
        )
    for name, row in result["datasets"].items():
        err.print(f"{name}: {row['texts']} texts, {row['attacks']} attacks")
        for d in DETECTORS:
            r = row[d]
            err.print(
                f"  {d:9} recall {r['recall']:.4f}  fpr {r['fpr']:.4f}  precision {r['precision']:.4f}"
            )
    for name, row in result["windows"].items():
        rates = ", ".join(f"{d} {row[d]['fpr']:.4f}" for d in DETECTORS)
        err.print(f"{name}: {row['windows']} benign windows; flagged share: {rates}")
    if as_json:
        print(json.dumps(result))
