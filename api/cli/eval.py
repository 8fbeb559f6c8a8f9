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
from ragwall.settings import POLICIES


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
        list[Path] | None,
        typer.Option(help="Clean judged data (BEIR, one qrels file) for the cost (repeat)."),
    ] = None,
    form: Annotated[
        str,
        typer.Option(
            help="Attack form: passage (I alone), question+passage (P = Q + I, the paper's "
            "black-box form) or both."
        ),
    ] = "both",
    faq: Annotated[
        list[Path] | None,
        typer.Option(help="FAQ-style clean data: a SQuAD folder or a benign-docs .jsonl (repeat)."),
    ] = None,
    faq_articles: Annotated[
        int, typer.Option(min=1, help="SQuAD articles turned into FAQ documents (--faq).")
    ] = 40,
    policy: Annotated[
        str, typer.Option(help="Policy for flagged hits when defenses are on: flag, demote, drop.")
    ] = "flag",
    lever_min_trust: Annotated[
        float | None,
        typer.Option(help="Also measure the attack for callers asking for at least this trust."),
    ] = None,
    max_asr: Annotated[
        float | None,
        typer.Option(help="Exit 1 if attack success with 5 passages, defenses on, exceeds this."),
    ] = None,
    max_asr_single: Annotated[
        float | None,
        typer.Option(help="Exit 1 if attack success with 1 passage, defenses on, exceeds this."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line.")] = False,
) -> None:
    """Attack success at top 5 per form, with defenses off and on; the cost on clean data."""
    # deferred: the eval loads the service, torch and the datasets
    from ragwall.eval.poisoning import FORMS, evaluate_poisoning

    if policy not in POLICIES:
        err.print(f"[red]--policy must be one of {', '.join(POLICIES)} (got {policy!r})[/red]")
        raise typer.Exit(2)
    with reported():
        result = evaluate_poisoning(
            attack,
            background,
            clean or [],
            progress=lambda m: err.print(m),
            forms=tuple(FORMS) if form == "both" else (form,),
            faq=faq or [],
            faq_articles=faq_articles,
            policy=policy,
            lever_min_trust=lever_min_trust,
        )
    err.print(_poisoning_table(attack.name, result))
    if as_json:
        print(json.dumps(result))
    over = [
        f"{f} with {n} passage(s): {row[n]['on']:.4f} > {limit}"
        for f, row in result["asr@5"].items()
        for n, limit in (("5", max_asr), ("1", max_asr_single))
        if limit is not None and row[n]["on"] > limit
    ]
    if over:
        err.print(f"[red]attack success exceeds the gate: {'; '.join(over)}[/red]")
        raise typer.Exit(1)


def _poisoning_table(name: str, result: dict) -> Table:
    table = Table("measure", "defenses off", "defenses on", title=f"poisoning: {name}")
    for f, row in result["asr@5"].items():
        for n, v in row.items():
            table.add_row(f"ASR@5 {f}, {n} passage(s)", f"{v['off']:.4f}", f"{v['on']:.4f}")
    for folder, c in result.get("clean", {}).items():
        label = Path(folder).name
        table.add_row(f"{label} nDCG@10", f"{c['ndcg@10']['off']:.4f}", f"{c['ndcg@10']['on']:.4f}")
        table.add_row(f"{label} top-5 flagged", "", f"{c['flag_rate']:.4f}")
    for tier in ("internal", "external"):
        for kind, c in result.get("faq", {}).get(tier, {}).items():
            table.add_row(
                f"FAQ ({tier}, {kind}) nDCG@10",
                f"{c['ndcg@10']['off']:.4f}",
                f"{c['ndcg@10']['on']:.4f}",
            )
            table.add_row(f"FAQ ({tier}, {kind}) top-5 flagged", "", f"{c['flag_rate']:.4f}")
    for key, v in result.get("lever", {}).get("asr@5", {}).items():
        table.add_row(f"ASR@5 {key}, min_trust {result['lever']['min_trust']}", "", f"{v:.4f}")
    return table


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
