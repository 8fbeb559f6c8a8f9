"""``ragwall reindex`` and ``ragwall index …``: index versions from the command line.

A reindex runs in this process on the embedded index, or, with ``--url``, as a job of a running
server (which is how to reindex an embedded data dir that a server holds open).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragwall.api import remote
from ragwall.api.cli.common import actor, err, out, reported, run
from ragwall.api.terminal import open_unit

if TYPE_CHECKING:
    from ragwall.service import Service

RESULT_FIELDS = ("version", "previous", "documents", "chunks", "reused_vectors", "seconds")


def reindex(
    embedding_model: Annotated[
        str | None, typer.Option(help="Build the new version with this embedding model.")
    ] = None,
    chunk_max_tokens: Annotated[
        int | None, typer.Option(help="Build the new version with this chunk size (tokens).")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            help="Instead of a new version: re-process this source's documents in the active "
            "version, unchanged files included (after a parser or detector change)."
        ),
    ] = None,
    url: remote.UrlOpt = None,
    key: remote.KeyOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="End with one JSON line: the new version's figures.")
    ] = False,
    rebuild: Annotated[
        bool,
        typer.Option(help="Re-embed every document, even where stored vectors could be reused."),
    ] = False,
    gate: Annotated[
        Path | None,
        typer.Option(
            help="Gate the switch on a drift comparison over these queries (one per line, or "
            "BEIR queries.jsonl); a failing gate leaves the new version ready, not active."
        ),
    ] = None,
    qrels: Annotated[Path | None, typer.Option(help="Qrels for the gate's queries.")] = None,
    top_k: Annotated[int, typer.Option(help="The gate's depth.")] = 10,
    max_ndcg_drop: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Gate (0..1): see `eval drift`.")
    ] = None,
    min_mean_rbo: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Gate (0..1): see `eval drift`.")
    ] = None,
    max_new_source_share: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Gate (0..1): see `eval drift`.")
    ] = None,
    alpha: Annotated[
        float,
        typer.Option(callback=open_unit, help="Gate: significance level."),
    ] = 0.05,
    force: Annotated[bool, typer.Option(help="Switch even if the gate fails (audited).")] = False,
) -> None:
    """Rebuild the index as a new version while the active one serves, then switch to it."""
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "embedding_model": embedding_model,
            "chunk_max_tokens": chunk_max_tokens,
        }.items()
        if v is not None
    }
    if rebuild:
        changes["rebuild"] = True
    if force:
        changes["force"] = True
    if gate is not None:
        changes["gate"] = _gate_body(
            gate, qrels, top_k, max_ndcg_drop, min_mean_rbo, max_new_source_share, alpha
        )
    elif qrels is not None or any(
        g is not None for g in (max_ndcg_drop, min_mean_rbo, max_new_source_share)
    ):
        err.print("[red]error:[/red] --qrels and the gate thresholds need --gate FILE")
        raise typer.Exit(2)
    if source is not None:
        if changes or url:
            err.print(
                "[red]error:[/red] --source re-processes one source; it takes no other option"
            )
            raise typer.Exit(2)
        _reprocess(source, as_json)
        return
    result = _remote(url, key, changes) if url else _local(changes)
    _print_gate(result)
    err.print(
        f"index {result['version']} is active (was {result['previous']}): "
        f"{result['documents']} documents, {result['chunks']} chunks, "
        f"{result['reused_vectors']} vectors reused, {result['seconds']:.1f} s"
    )
    if as_json:
        sys.stdout.write(json.dumps({k: result.get(k) for k in RESULT_FIELDS}) + "\n")
        sys.stdout.flush()


def _gate_body(
    queries: Path,
    qrels: Path | None,
    top_k: int,
    max_ndcg_drop: float | None,
    min_mean_rbo: float | None,
    max_new_source_share: float | None,
    alpha: float,
) -> dict[str, Any]:
    """The gate as a request body: the query file read here (the server never reads paths)."""
    # deferred: numpy and scipy, for a gated reindex only
    from ragwall.eval.drift.queries import load_query_set

    with reported():
        found = load_query_set(queries=queries, qrels=qrels)
    return {
        "queries": found.queries,
        "qrels": found.qrels,
        "top_k": top_k,
        "max_ndcg_drop": max_ndcg_drop,
        "min_mean_rbo": min_mean_rbo,
        "max_new_source_share": max_new_source_share,
        "alpha": alpha,
    }


def _print_gate(result: dict[str, Any] | None) -> None:
    """A job result's gate (when the reindex had one): each gate, the report, an override."""
    if not result or "gate" not in result:
        return
    gate = result["gate"]
    for name, g in gate["gates"].items():
        mark = "pass" if g["passed"] else "[red]FAIL[/red]"
        err.print(f"gate {name}: {g.get('value')} (threshold {g['threshold']}) {mark}")
    if gate.get("report"):
        err.print(f"drift report: {gate['report']}")
    if result.get("forced"):
        err.print("[yellow]the gate failed; --force switched anyway (audited)[/yellow]")


class _Bar:
    """Job progress: a bar on a terminal, else a line every few seconds (for logs)."""

    def __init__(self, every: float = 5.0) -> None:
        self.every, self.last = every, 0.0
        self.bar: Progress | None = None
        if err.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            self.task = self.bar.add_task("reindex", total=None)
            self.bar.start()

    def __call__(self, p: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.update(
                self.task,
                description=f"reindex: {p['stage']}",
                completed=p["documents_done"],
                total=p["documents_total"] or None,
            )
            return
        now = time.monotonic()
        if now - self.last >= self.every or p["stage"] == "done":
            self.last = now
            eta = f", eta {p['eta_s']:.0f} s" if p.get("eta_s") else ""
            print(
                f"reindex {p['stage']}: {p['documents_done']}/{p['documents_total']} documents, "
                f"{p['chunks']} chunks, {p['elapsed_s']:.0f} s{eta}",
                file=err.file,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


#: A reindex here on a data dir that a running server holds.
REINDEX_LOCKED = (
    "A running server holds this data dir: start the reindex there, with "
    "`ragwall reindex --url http://HOST:PORT --key ADMIN_KEY` or POST /v1/index/reindex."
)
#: A version switch here on a data dir that a running server holds.
SWITCH_LOCKED = (
    "A running server holds this data dir: add "
    "`--url http://HOST:PORT --key ADMIN_KEY` to send the switch to it."
)


def _local(changes: dict[str, Any]) -> dict[str, Any]:
    bar = _Bar()

    def reindex_here(svc: Service) -> Any:
        try:
            return svc.reindex(actor(), changes, progress=bar)
        finally:
            bar.close()  # before any error is printed

    job = run(reindex_here, locked=REINDEX_LOCKED)
    if job.state != "succeeded":
        _print_gate(job.result)
        err.print(f"[red]error:[/red] reindex job {job.id} {job.state}: {job.error or ''}")
        raise typer.Exit(1)
    return job.result


def _remote(url: str, key: str | None, changes: dict[str, Any]) -> dict[str, Any]:
    started = remote.call(url, key, "POST", "/v1/index/reindex", changes, (202,), idempotent=True)
    bar = _Bar()
    try:
        job = remote.wait_job(url, key, started["job_id"], bar)
    finally:
        bar.close()
    if job["state"] != "succeeded":
        _print_gate(job.get("result"))
        err.print(
            f"[red]error:[/red] reindex job {job['job_id']} {job['state']}: {job.get('error') or ''}"
        )
        raise typer.Exit(1)
    return job["result"]


def _reprocess(source_id: str, as_json: bool) -> None:
    report = run(lambda svc: svc.ingest(actor(), source_id, force=True))
    err.print(
        f"{source_id}: {report.documents} documents re-processed, {report.chunks} chunks, "
        f"{len(report.failed)} failed in {report.seconds:.1f} s"
    )
    if as_json:
        sys.stdout.write(json.dumps(report.summary()) + "\n")
    if report.failed:
        raise typer.Exit(1)


def index_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The index versions, newest first, and which one is active."""
    info = run(lambda svc: svc.index_info())
    if as_json:
        sys.stdout.write(json.dumps(info) + "\n")
        return
    table = Table("version", "state", "created", "documents", "chunks", "model", "chunk tokens")
    for v in info["versions"]:
        fp = v["fingerprint"]
        table.add_row(
            v["version"],
            v["state"],
            v["created_at"][:19],
            str(v["documents"]),
            str(v["chunks"]),
            str(fp.get("embedding_model", "")),
            str(fp.get("chunk_max_tokens", "")),
        )
    out.print(table)
    if info["pending_changes"]:
        err.print(
            f"the environment changes {', '.join(info['pending_changes'])}: "
            "`ragwall reindex` applies it"
        )


def _switched(result: dict[str, Any]) -> None:
    out.print(f"index {result['active']} is active (was {result['previous']})")


def index_activate(
    version: Annotated[str, typer.Argument(help="A ready version: v3 or 3.")],
    url: remote.UrlOpt = None,
    key: remote.KeyOpt = None,
) -> None:
    """Make a ready version the active one (no rebuild)."""
    if url:
        body = {"version": version}
        _switched(remote.call(url, key, "POST", "/v1/index/activate", body, (200,)))
        return
    _switched(run(lambda svc: svc.activate(actor(), version), locked=SWITCH_LOCKED))


def index_rollback(url: remote.UrlOpt = None, key: remote.KeyOpt = None) -> None:
    """Make the previous ready version active again (no rebuild)."""
    if url:
        _switched(remote.call(url, key, "POST", "/v1/index/rollback", None, (200,)))
        return
    _switched(run(lambda svc: svc.rollback(actor()), locked=SWITCH_LOCKED))
