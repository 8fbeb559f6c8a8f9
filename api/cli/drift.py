"""``ragwall eval snapshot`` and ``ragwall eval drift``: retrieval drift of the live index.

Exit codes (what a CI gates on): 0 when every gate passes, 1 when one fails, 2 on a usage error
(a missing or malformed file, an unknown version, a snapshot of another index).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ragwall.api.cli.common import actor, err, fail, reported, run
from ragwall.api.terminal import open_unit
from ragwall.datasets import load_qrels
from ragwall.errors import RagwallError

QueriesOpt = Annotated[
    Path | None,
    typer.Option(help="Queries: BEIR queries.jsonl, or plain text with one query per line."),
]
DatasetOpt = Annotated[
    Path | None, typer.Option(help="A BEIR folder: its queries and qrels/SPLIT.tsv together.")
]
SplitOpt = Annotated[str, typer.Option(help="The qrels split of --dataset.")]
TopKOpt = Annotated[int, typer.Option(min=1, max=100, help="Hits compared per query.")]


def _queries(queries: Path | None, qrels: Path | None, dataset: Path | None, split: str) -> Any:
    # deferred: numpy and scipy, for the drift commands only
    from ragwall.eval.drift.queries import load_query_set

    with reported():
        return load_query_set(queries, qrels, dataset, split)


#: A comparison here on a data dir that a running server holds.
DRIFT_LOCKED = (
    "A running server holds this data dir: run the comparison there with POST /v1/eval/drift "
    "(an admin key), which keeps the report with the job."
)


def eval_snapshot(
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the snapshot (JSON).")],
    queries: QueriesOpt = None,
    dataset: DatasetOpt = None,
    split: SplitOpt = "test",
    top_k: TopKOpt = 10,
    version: Annotated[
        str | None, typer.Option(help="An index version (v3); the active one by default.")
    ] = None,
) -> None:
    """Record what the index returns for each query (hits, scores, trust, flags) and how it
    ranks, to compare later with `ragwall eval drift --baseline SNAP.json`."""
    # deferred: numpy, scipy and the service, for this command only
    from ragwall.eval.drift.snapshot import save_snapshot
    from ragwall.service import parse_version

    found = _queries(queries, None, dataset, split)
    try:
        number = parse_version(version) if version else None
    except ValueError as exc:
        err.print(f"[red]error:[/red] --version: {exc}")
        raise typer.Exit(2) from exc
    snap = run(
        lambda svc: svc.snapshot(actor(), found, top_k, number, _every(len(found.queries))),
        locked=DRIFT_LOCKED,
    )
    save_snapshot(snap, out_path)
    err.print(
        f"snapshot of {snap.index_version}: {len(snap.queries)} queries, top {top_k} -> {out_path}"
    )


def _every(total: int, step: int = 50) -> Any:
    def report(done: int, _total: int) -> None:
        if done % step == 0 or done == total:
            err.print(f"  {done}/{total} queries")

    return report


def eval_drift(
    baseline: Annotated[
        str, typer.Option(help="SNAP.json, or an index version: 'version 3' or v3.")
    ],
    candidate: Annotated[
        str | None, typer.Option(help="SNAP.json or a version; the active version by default.")
    ] = None,
    queries: QueriesOpt = None,
    qrels: Annotated[Path | None, typer.Option(help="Qrels (TSV) for nDCG and Recall.")] = None,
    dataset: DatasetOpt = None,
    split: SplitOpt = "test",
    top_k: TopKOpt = 10,
    report: Annotated[
        Path | None, typer.Option(help="Write report.html (with plots) and drift.json here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line.")] = False,
    max_ndcg_drop: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Fail when nDCG@10 drops by more than this, significantly (--alpha); 0..1.",
        ),
    ] = None,
    alpha: Annotated[
        float,
        typer.Option(
            callback=open_unit,
            help="Significance level of the nDCG gate; between 0 and 1.",
        ),
    ] = 0.05,
    min_mean_rbo: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Fail when the mean RBO is below this; 0..1."),
    ] = None,
    max_new_source_share: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Fail when a source gains more than this share of queries' top-k; 0..1.",
        ),
    ] = None,
) -> None:
    """Compare two states of the index (snapshots or versions): result-set change, quality
    change with significance, source-share, score and embedding drift. Exit 1 when a gate
    fails."""
    # deferred: numpy, scipy, matplotlib and the service, for this command only
    from ragwall.eval.drift.compare import Gates
    from ragwall.eval.drift.report import write_report
    from ragwall.service import parse_side

    with reported():
        base_side, cand_side = parse_side(baseline), parse_side(candidate)
    found = (
        _queries(queries, qrels, dataset, split)
        if queries is not None or dataset is not None
        else None
    )
    if found is None and qrels is not None:
        if base_side.snapshot is None:
            raise fail(RagwallError("--qrels needs --queries (or --dataset)"))
        # deferred: numpy and scipy, for this command only
        from ragwall.eval.drift.queries import QuerySet

        held = {q.id: q.text for q in base_side.snapshot.queries}
        found = _queries_with(QuerySet(held, None, "the baseline snapshot"), qrels)
    if max_ndcg_drop is not None and (found is None or found.qrels is None):
        err.print("[red]error:[/red] --max-ndcg-drop needs qrels: --qrels FILE, or --dataset DIR")
        raise typer.Exit(2)
    gates = Gates(max_ndcg_drop, min_mean_rbo, max_new_source_share, alpha)
    result = run(
        lambda svc: svc.drift(
            actor(), found, base_side, cand_side, top_k, gates, progress=lambda m: err.print(m)
        ),
        locked=DRIFT_LOCKED,
    )
    if report is not None:
        paths = write_report(result, report)
        err.print(f"report: {paths['html']}")
    _print(result)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    if result["verdict"] != "pass":
        raise typer.Exit(1)


def _queries_with(found: Any, qrels: Path) -> Any:
    with reported():
        return found.with_qrels(load_qrels(qrels), str(qrels))


def _print(result: dict[str, Any]) -> None:
    b, c = result["baseline"]["index_version"], result["candidate"]["index_version"]
    table = Table("measure", "value", title=f"drift {b} -> {c} ({result['queries']} queries)")
    table.add_row("mean RBO", f"{result['rbo']['mean']:.4f}")
    table.add_row("RBO < 0.5 (share)", f"{result['rbo']['share_below_0.5']:.4f}")
    table.add_row("mean Jaccard@k (documents)", f"{result['jaccard@k']['mean']:.4f}")
    table.add_row("top document changed", f"{result['top1_changed']:.4f}")
    if "ndcg@10" in result:
        q = result["ndcg@10"]
        table.add_row(
            "nDCG@10",
            f"{q['baseline']:.4f} -> {q['candidate']:.4f} ({q['delta']:+.4f}, "
            f"95% CI [{q['ci95'][0]:+.4f}, {q['ci95'][1]:+.4f}], p={q['p_value']:.4f})",
        )
    if result["sources"]:
        top = result["sources"][0]
        table.add_row(
            "largest source gain",
            f"{top['source']}: {top['before']:.3f} -> {top['after']:.3f}",
        )
    for name, g in result["gates"].items():
        table.add_row(f"gate {name}", f"{g.get('value')} vs {g['threshold']}: "
                      f"{'pass' if g['passed'] else 'FAIL'}")  # fmt: skip
    table.add_row("verdict", result["verdict"])
    err.print(table)
