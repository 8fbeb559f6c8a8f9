"""The ``ragwall`` command line (output for scripts and logs: see ``ragwall.api.terminal``)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from ragwall.api import remote, secret_file  # noqa: E402
from ragwall.api.terminal import console, typer_app  # noqa: E402
from ragwall.errors import RagwallError, StoreLocked, validation_message  # noqa: E402
from ragwall.settings import TRUST_TIERS, Settings  # noqa: E402

app = typer_app("Ragwall: retrieval that AI agents can trust.")
sources_app = typer_app("Register and inspect sources.")
app.add_typer(sources_app, name="sources")
keys_app = typer_app("Create, list and revoke API keys.")
app.add_typer(keys_app, name="keys")
eval_app = typer_app("Measure retrieval quality (commands a CI can gate on).")
app.add_typer(eval_app, name="eval")
rerank_app = typer_app("Train and check cross-encoder rerankers.")
app.add_typer(rerank_app, name="rerank")
audit_app = typer_app("Inspect the audit trail.")
app.add_typer(audit_app, name="audit")
documents_app = typer_app("Quarantine or release single documents.")
app.add_typer(documents_app, name="documents")
defend_app = typer_app("Train and inspect the injection defenses.")
app.add_typer(defend_app, name="defend")

out = console()
err = console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        err.print(f"[red]error:[/red] invalid RAGWALL_* setting: {validation_message(exc)}")
        raise typer.Exit(2) from exc


def _fail(exc: RagwallError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2)


class ProgressLines:
    """Ingest progress for logs: the first update, then one line per ``every`` seconds."""

    def __init__(self, source_id: str, stream, every: float = 5.0) -> None:  # noqa: ANN001
        self.source_id, self.stream, self.every = source_id, stream, every
        self.started = time.monotonic()
        self.last: float | None = None
        self.state = (0, 0)

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.state = (done, total)
        now = time.monotonic()
        if self.last is None or now - self.last >= self.every:
            self.last = now
            self._line()

    def finish(self) -> None:
        if self.last is not None:
            self._line()

    def _line(self) -> None:
        done, total = self.state
        elapsed = time.monotonic() - self.started
        print(
            f"ingest {self.source_id}: {done}/{total} documents, {elapsed:.0f} s",
            file=self.stream,
            flush=True,
        )


def _service():  # noqa: ANN202 - a ragwall.service.Service
    """The service over the configured data dir (the model and store open on first use)."""
    from ragwall.service import Service

    try:
        return Service(_settings())
    except RagwallError as exc:
        raise _fail(exc) from exc


def _actor() -> str:
    from ragwall.service import cli_actor

    return cli_actor()


@sources_app.command("add")
def sources_add(
    source_id: Annotated[str, typer.Argument(help="A short id, e.g. 'wiki'.")],
    path: Annotated[str, typer.Argument(help="A folder, or a glob such as 'docs/**/*.md'.")],
    trust: Annotated[str, typer.Option(help=f"Trust tier: {', '.join(TRUST_TIERS)}.")] = "internal",
    group: Annotated[
        list[str] | None,
        typer.Option(
            "--group",
            "-g",
            help="Access group whose keys see the source (repeat). Without one, only keys "
            "without groups (unrestricted keys) see it; a group-bound key never does.",
        ),
    ] = None,
    exist_ok: Annotated[
        bool, typer.Option(help="Succeed quietly if the same source exists.")
    ] = False,
) -> None:
    """Register a source with a trust tier and access groups."""
    with _service() as svc:
        try:
            source = svc.add_source(
                _actor(), source_id, path, trust, group or [], exist_ok=exist_ok
            )
        except RagwallError as exc:
            raise _fail(exc) from exc
    out.print(
        f"source [bold]{source.id}[/bold]: {source.kind} {source.location} "
        f"(trust {source.trust_tier}, groups {source.groups or '[]'})"
    )


@sources_app.command("list")
def sources_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List registered sources with their document and chunk counts."""
    with _service() as svc:
        rows = [
            {**s.source.model_dump(), "documents": s.documents, "chunks": s.chunks}
            for s in svc.list_sources()
        ]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("id", "kind", "location", "trust", "groups", "documents", "chunks")
    for r in rows:
        table.add_row(
            r["id"],
            r["kind"],
            r["location"],
            r["trust_tier"],
            ",".join(r["groups"]),
            str(r["documents"]),
            str(r["chunks"]),
        )
    out.print(table)


@sources_app.command("remove")
def sources_remove(source_id: str, url: remote.UrlOpt = None, key: remote.KeyOpt = None) -> None:
    """Delete a source and every chunk it contributed (with --url: on the running server)."""
    if url:
        path = f"/v1/sources/{quote(source_id, safe='')}"
        n = remote.call(url, key, "DELETE", path, expect=(200,))["chunks"]
    else:
        with _service() as svc:
            try:
                n = svc.remove_source(_actor(), source_id)
            except StoreLocked as exc:
                err.print(
                    f"[red]error:[/red] {exc}\nA running server holds this data dir: add "
                    "`--url http://HOST:PORT --key ADMIN_KEY` to remove the source there."
                )
                raise typer.Exit(2) from exc
            except RagwallError as exc:
                raise _fail(exc) from exc
    out.print(f"removed source {source_id} and {n} chunks")


def _quarantine(kind: str, value: str, on: bool, reason: str) -> None:
    with _service() as svc:
        try:
            changed = svc.set_quarantine(_actor(), kind, value, on, reason)
        except RagwallError as exc:
            raise _fail(exc) from exc
    verb = "quarantined" if on else "released"
    out.print(f"{kind} {value} {verb}" + ("" if changed else f" (it already was {verb})"))


@sources_app.command("quarantine")
def sources_quarantine(
    source_id: str, reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = ""
) -> None:
    """Kill switch: no retrieve returns this source's chunks until it is released."""
    _quarantine("source", source_id, True, reason)


@sources_app.command("release")
def sources_release(source_id: str) -> None:
    """Lift a source's quarantine."""
    _quarantine("source", source_id, False, "")


@documents_app.command("quarantine")
def documents_quarantine(
    doc_sha256: str, reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = ""
) -> None:
    """Quarantine one document by the sha256 of its bytes (a hit's doc_sha256)."""
    _quarantine("document", doc_sha256, True, reason)


@documents_app.command("release")
def documents_release(doc_sha256: str) -> None:
    """Lift a document's quarantine."""
    _quarantine("document", doc_sha256, False, "")


@app.command()
def ingest(
    target: Annotated[
        str, typer.Argument(help="A source id; or, with --source, a file or folder.")
    ],
    source: Annotated[
        str | None, typer.Option(help="Ingest TARGET (a path) into this source.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="End with one JSON summary line.")
    ] = False,
    url: remote.UrlOpt = None,
    key: remote.KeyOpt = None,
) -> None:
    """Ingest a source (idempotent and incremental) or a one-off path into a source; with
    --url, a source as a job of that running server."""
    if url:
        if source is not None:
            err.print(
                "[red]error:[/red] --url ingests a registered source on the server; a one-off "
                "path (--source) is ingested in this process, without --url"
            )
            raise typer.Exit(2)
        _ingest_remote(url, key, target, as_json)
        return
    source_id = target if source is None else source
    with _service() as svc:
        try:
            paths = None if source is None else svc.files_under(source, Path(target))
            if err.is_terminal:
                with Progress(
                    TextColumn("[bold]{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=err,
                    transient=as_json,
                ) as bar:
                    task = bar.add_task(f"ingest {source_id}", total=None)

                    def on_progress(stage: str, done: int, total: int) -> None:
                        bar.update(task, completed=done, total=total)

                    report = svc.ingest(_actor(), source_id, paths=paths, progress=on_progress)
            else:  # a log, not a terminal: a plain line every few seconds instead of a bar
                lines = ProgressLines(source_id, err.file)
                report = svc.ingest(_actor(), source_id, paths=paths, progress=lines)
                lines.finish()
        except RagwallError as exc:
            raise _fail(exc) from exc
    summary = report.summary()
    for f in report.failed:
        err.print(f"[yellow]failed[/yellow] {f.path}: {f.reason}: {f.message}")
    for n in report.notes:
        err.print(f"[cyan]note[/cyan] {n.path}: {n.note}")
    err.print(
        f"{source_id}: {report.documents} documents, {report.chunks} chunks written, "
        f"{report.unchanged} unchanged, {report.removed} removed, {len(report.failed)} failed, "
        f"{len(report.skipped)} skipped in {report.seconds:.1f} s (run {report.run_id})"
    )
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    if report.failed:
        raise typer.Exit(1)


def _ingest_remote(url: str, key: str | None, source_id: str, as_json: bool) -> None:
    """``ingest --url``: the server ingests the source as a job; its summary is printed as a
    local ingest prints it, with the same exit status (1 when documents failed, or when the
    job did not finish)."""
    path = f"/v1/sources/{quote(source_id, safe='')}/ingest"
    started = remote.call(url, key, "POST", path, expect=(202,), idempotent=True)
    lines = ProgressLines(source_id, err.file)
    job = remote.wait_job(
        url,
        key,
        started["job_id"],
        lambda p: lines(
            p.get("stage", ""), p.get("documents_done", 0), p.get("documents_total", 0)
        ),
    )
    lines.finish()
    summary = job.get("result") or {}
    for f in summary.get("failed", []):
        err.print(f"[yellow]failed[/yellow] {f['path']}: {f['reason']}: {f['message']}")
    for n in summary.get("notes", []):
        err.print(f"[cyan]note[/cyan] {n['path']}: {n['note']}")
    if job["state"] != "succeeded":
        err.print(
            f"[red]error:[/red] ingest job {job['job_id']} {job['state']}: {job.get('error') or ''}"
        )
        raise typer.Exit(1)
    err.print(
        f"{source_id}: {summary['documents']} documents, {summary['chunks']} chunks written, "
        f"{summary['unchanged']} unchanged, {summary['removed']} removed, "
        f"{len(summary['failed'])} failed, {len(summary.get('skipped', []))} skipped "
        f"(job {job['job_id']})"
    )
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    if summary["failed"]:
        raise typer.Exit(1)


@keys_app.command("create")
def keys_create(
    scope: Annotated[str, typer.Option(help="retrieve (read) or admin.")] = "retrieve",
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="Bind to a group (repeat).")
    ] = None,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    policy: Annotated[
        str | None,
        typer.Option(help="Flagged hits for this key: flag, demote or drop (default: server's)."),
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write the key to this file (mode 0600) instead of printing it."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a key and print it once (only its hash is stored). An admin key cannot be bound
    to groups (admin views cover the whole index)."""
    try:  # --out: the new file first, so a key is never created with nowhere to go
        fd = None if out_file is None else secret_file.reserve(out_file)
    except RagwallError as exc:
        raise _fail(exc) from exc
    try:
        with _service() as svc:
            try:
                key, record = svc.create_key(_actor(), scope, group or None, name, policy)
            except RagwallError as exc:
                raise _fail(exc) from exc
            if fd is not None:
                try:
                    secret_file.write(fd, key)
                    fd = None
                except OSError as exc:  # the secret is lost: the key must not stay usable
                    svc.revoke_key(_actor(), record.id)
                    err.print(
                        f"[red]error:[/red] could not write the key to {out_file} "
                        f"({exc.strerror or exc}); key {record.id} was revoked"
                    )
                    raise typer.Exit(2) from exc
    finally:
        if fd is not None and out_file is not None:
            secret_file.discard(fd, out_file)
    if out_file is not None:
        err.print(
            f"key {record.id} (scope {record.scope}, groups "
            f"{list(record.groups or []) or 'all'}) written to {out_file} (mode 0600); "
            f"read it with: cat {out_file}"
        )
        return
    if as_json:
        print(
            json.dumps(
                {
                    "key": key,
                    "id": record.id,
                    "scope": record.scope,
                    "groups": list(record.groups) if record.groups is not None else None,
                }
            )
        )
        return
    err.print(
        f"key {record.id} (scope {record.scope}, groups {list(record.groups or []) or 'all'}); "
        "it is shown once, store it now:"
    )
    print(key)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""
    with _service() as svc:
        table = Table("id", "name", "scope", "groups", "created", "revoked")
        for r in svc.keys.list():
            table.add_row(
                r.id,
                r.name,
                r.effective_scope
                if r.effective_scope == r.scope
                else f"{r.effective_scope} (stored as {r.scope}: group-bound keys cannot be admin)",
                ",".join(r.groups) if r.groups is not None else "(all)",
                r.created_at[:19],
                (r.revoked_at or "")[:19],
            )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id."""
    with _service() as svc:
        try:
            svc.revoke_key(_actor(), key_id)
        except RagwallError as exc:
            raise _fail(exc) from exc
    out.print(f"revoked {key_id}")


@audit_app.command("verify")
def audit_verify(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check the audit chain; exit 1 if any record was edited, removed or reordered."""
    with _service() as svc:
        report = svc.audit.verify()
    if as_json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "records": report.records,
                    "problems": report.problems,
                    "warnings": report.warnings,
                }
            )
        )
    else:
        for problem in report.problems:
            err.print(f"[red]tampered:[/red] {problem}")
        for warning in report.warnings:
            err.print(f"[yellow]warning:[/yellow] {warning}")
        out.print(f"{report.records} records; chain {'intact' if report.ok else 'BROKEN'}")
    if not report.ok:
        raise typer.Exit(1)


@eval_app.command("retrieval")
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
    from ragwall.eval.retrieval import evaluate_retrieval

    settings = _settings()
    try:
        result = evaluate_retrieval(
            dataset, split, reranker or settings.reranker_model, progress=lambda m: err.print(m)
        )
    except RagwallError as exc:
        raise _fail(exc) from exc
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
    if as_json:
        print(json.dumps(result))


@eval_app.command("poisoning")
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
    from ragwall.eval.poisoning import evaluate_poisoning

    try:
        result = evaluate_poisoning(attack, background, clean, progress=lambda m: err.print(m))
    except RagwallError as exc:
        raise _fail(exc) from exc
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


@eval_app.command("injection")
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
    try:
        result = evaluate_injection(
            dataset or [],
            threshold,
            windows or [],
            unseen_only,
            say=lambda m: err.print(m),
            max_windows=max_windows,
        )
    except RagwallError as exc:
        raise _fail(exc) from exc
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


@rerank_app.command("train")
def rerank_train(
    corpus: Annotated[
        list[Path], typer.Option(help="A BEIR folder whose titled documents train it (repeat).")
    ],
    out: Annotated[Path, typer.Option(help="Output folder (model_int8.onnx, tokenizer, card).")],
    layers: Annotated[int, typer.Option(help="Encoder layers kept from the backbone.")] = 6,
    max_length: Annotated[int, typer.Option(help="Max tokens of query + passage.")] = 192,
    negatives: Annotated[int, typer.Option(help="Hard negatives per query.")] = 3,
    epochs: Annotated[int, typer.Option()] = 1,
    batch_size: Annotated[int, typer.Option()] = 16,
    lr: Annotated[float, typer.Option()] = 4e-5,
    seed: Annotated[int, typer.Option()] = 13,
    max_pairs: Annotated[int | None, typer.Option(help="Cap the pairs (quick runs).")] = None,
) -> None:
    """Fine-tune a cross-encoder from the packaged MiniLM on weak supervision; export ONNX int8."""
    from ragwall.rerank.train import TrainConfig, train

    out.mkdir(parents=True, exist_ok=True)
    card = train(
        TrainConfig(
            corpora=list(corpus),
            out_dir=out,
            layers=layers,
            max_length=max_length,
            negatives=negatives,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            max_pairs=max_pairs,
        ),
        say=lambda m: err.print(m),
    )
    err.print(f"trained on {card.pairs} pairs in {card.train_seconds} s; model in {out}")


@defend_app.command("train")
def defend_train(
    data: Annotated[
        Path,
        typer.Option(
            help="A folder laid out like ../shared/data: bipia/, injection/*.jsonl, cranfield/, "
            "cisi/, squad/, docs/."
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Output folder (model.onnx, tokenizer.json, card.json).")
    ] = Path("defend/models/injection-minilm"),
    work: Annotated[
        Path,
        typer.Option(help="Checkpoints and finished steps; run the same command again to resume."),
    ] = Path(".train/defend"),
    steps: Annotated[int, typer.Option(min=1, help="Training steps of the shipped model.")] = 1200,
    layers: Annotated[
        int, typer.Option(min=1, max=6, help="Backbone layers kept (all fine-tuned).")
    ] = 6,
    train_tokens: Annotated[
        int, typer.Option(min=16, max=256, help="Token window per training text.")
    ] = 128,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    leave_out: Annotated[
        list[str] | None,
        typer.Option(
            help="A source to leave out for a leave-one-source-out figure (repeat it); "
            "default: injecagent, spikee, cyberseceval, tasktracker, bipia."
        ),
    ] = None,
    loso_steps: Annotated[int, typer.Option(min=1, help="Steps of each left-out model.")] = 250,
    no_leave_out: Annotated[
        bool, typer.Option("--no-leave-out", help="Skip the leave-one-source-out models.")
    ] = False,
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """Fine-tune the injection classifier (every layer; CPU, or a GPU if torch sees one),
    calibrate it on held-back families, export ONNX int8 with its card. Resumable."""
    from ragwall.defend.finetune import FineTune
    from ragwall.defend.trainer import DEFAULT_LOSO, train

    recipe = FineTune(
        layers=layers,
        train_tokens=train_tokens,
        steps=steps,
        loso_steps=loso_steps,
        batch_size=batch_size,
        seed=seed,
    )
    sources = () if no_leave_out else tuple(leave_out or DEFAULT_LOSO)
    command = "ragwall defend train " + " ".join(sys.argv[3:] if len(sys.argv) > 3 else [])
    try:
        card = train(data, out, work, recipe, sources, lambda m: err.print(m), command.strip())
    except RagwallError as exc:
        raise _fail(exc) from exc
    print(json.dumps(card))


@defend_app.command("split")
def defend_split(
    data: Annotated[Path, typer.Option(help="The folder `defend train` reads.")],
    out: Annotated[Path, typer.Option(help="Where to write {dataset}.jsonl files.")],
    part: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """Write one part of the training split (for `ragwall eval injection --dataset`)."""
    from ragwall.defend.data import write_part

    try:
        counts = write_part(data, part, out, seed)
    except RagwallError as exc:
        raise _fail(exc) from exc
    for name, n in counts.items():
        err.print(f"{out / (name + '.jsonl')}: {n} texts")
    print(json.dumps(counts))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    dev: Annotated[bool, typer.Option(help="Dev mode: no API keys (never expose it).")] = False,
) -> None:
    """Serve the HTTP API on the configured index."""
    import uvicorn

    from ragwall.api.app import create_app
    from ragwall.service import Service
    from ragwall.telemetry import configure_logging

    settings = _settings()
    if dev:
        settings = settings.model_copy(update={"dev_mode": True})
    configure_logging(settings.log_format, settings.log_level)
    try:
        svc = Service(settings)
        _ = svc.searcher  # fail here, clearly, if the index is locked or the model is missing
    except RagwallError as exc:
        raise _fail(exc) from exc
    try:
        uvicorn.run(
            create_app(settings, svc),
            host=host,
            port=port,
            log_config=None,  # configure_logging's handler, in its format
            log_level=settings.log_level.lower(),
            access_log=False,  # ragwall.request logs one line per request instead
        )
    finally:
        svc.close()


# `ragwall reindex` and `ragwall index …` live in their own module (it imports the helpers above).
from ragwall.api.cli_index import index_app, reindex  # noqa: E402

app.add_typer(index_app, name="index")
app.command()(reindex)

# `ragwall eval snapshot` and `ragwall eval drift` register themselves on eval_app.
from ragwall.api import cli_drift  # noqa: E402, F401


def main() -> None:  # pragma: no cover - console entry
    app()
