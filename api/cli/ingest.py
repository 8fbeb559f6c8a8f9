"""``ragwall ingest``: a source (idempotent, incremental) or a one-off path into a source, in this
process; with ``--url``, a source as a job of the running server that holds the data dir.

Exit status: 0, 1 when documents failed (or the server's job did not finish), 2 on an error.
Progress goes to stderr (a bar on a terminal, a line every few seconds in a log); ``--json`` ends
stdout with one summary line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO
from urllib.parse import quote

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ragwall.api import remote
from ragwall.api.cli.common import actor, err, run

if TYPE_CHECKING:
    from ragwall.service import Service


class ProgressLines:
    """Ingest progress for logs: the first update, then one line per ``every`` seconds."""

    def __init__(self, source_id: str, stream: TextIO, every: float = 5.0) -> None:
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
    allow_mass_removal: Annotated[
        bool,
        typer.Option(
            "--allow-mass-removal",
            help="Remove the documents gone from the source even when they are more than "
            "RAGWALL_MAX_REMOVAL_SHARE of it (a sync refuses that otherwise, changing nothing).",
        ),
    ] = False,
    url: remote.UrlOpt = None,
    key: remote.KeyOpt = None,
) -> None:
    """Ingest a source (idempotent and incremental) or a one-off path into a source; with
    --url, a source as a job of that running server. A sync that would remove a mass of the
    source's documents (a mount gone, a share's permissions lost) changes nothing and exits 2,
    unless --allow-mass-removal."""
    if url:
        if source is not None:
            err.print(
                "[red]error:[/red] --url ingests a registered source on the server; a one-off "
                "path (--source) is ingested in this process, without --url"
            )
            raise typer.Exit(2)
        _ingest_remote(url, key, target, as_json, allow_mass_removal)
        return
    source_id = target if source is None else source
    report = run(
        lambda svc: _local(svc, source_id, source, Path(target), as_json, allow_mass_removal)
    )
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


def _local(
    svc: Service,
    source_id: str,
    into: str | None,
    target: Path,
    quiet: bool,
    allow_mass_removal: bool = False,
) -> Any:
    """Ingest here (the source, or with ``into`` the files under ``target`` into that source),
    with a bar on a terminal (``quiet``: cleared when done), else a line every few seconds."""
    paths = None if into is None else svc.files_under(into, target)
    if err.is_terminal:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=quiet,
        ) as bar:
            task = bar.add_task(f"ingest {source_id}", total=None)

            def on_progress(stage: str, done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return svc.ingest(
                actor(),
                source_id,
                paths=paths,
                progress=on_progress,
                allow_mass_removal=allow_mass_removal,
            )
    lines = ProgressLines(source_id, err.file)  # a log, not a terminal: a line every few seconds
    report = svc.ingest(
        actor(), source_id, paths=paths, progress=lines, allow_mass_removal=allow_mass_removal
    )
    lines.finish()
    return report


def _ingest_remote(
    url: str, key: str | None, source_id: str, as_json: bool, allow_mass_removal: bool = False
) -> None:
    """``ingest --url``: the server ingests the source as a job; its summary is printed as a
    local ingest prints it, with the same exit status (1 when documents failed, or when the
    job did not finish)."""
    path = f"/v1/sources/{quote(source_id, safe='')}/ingest"
    if allow_mass_removal:
        path += "?allow_mass_removal=true"
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
