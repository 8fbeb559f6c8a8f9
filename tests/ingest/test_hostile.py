"""Hostile folders cost only their bad files: links, files Ragwall does not read, files built to
exhaust a parser, a cancel mid-parse, a parent killed mid-parse. Real parser processes, the real
model and the real embedded Qdrant engine."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from ragwall.errors import IngestCancelled
from ragwall.ingest import Ingester, make_source
from ragwall.retrieval.store import Filter, Match
from tests.conftest import ROOT, shared
from tests.ingest.test_limits import SECRET, deep_html, docx_with_body, docx_with_xml

PENDING = Filter(must=(Match("state", "pending"),))
LIVE = Filter(must=(Match("state", "live"),))


def _register(ingester: Ingester, location: Path | str, sid: str = "kb"):
    source = make_source(sid, str(location), "internal", ["eng"])
    ingester.state.add_source(source)
    return source


def _with(ingester: Ingester, **changes) -> Ingester:
    """The same index and model, other settings."""
    settings = ingester.settings.model_copy(update=changes)
    return Ingester(settings, ingester.state, ingester.store, ingester.encoder)


def _slow_text(path: Path, paragraphs: int = 20_000) -> Path:
    """Plain text that takes the parser a minute or more (one heuristic pass per paragraph)."""
    words = ["turbine", "blade", "engine", "wing", "flow", "pressure"]
    path.write_text(
        "".join(
            f"Paragraph {i} talks about the {words[i % 6]} and the {words[i * 7 % 6]} of unit "
            f"{i * 13}.\n\n"
            for i in range(paragraphs)
        )
    )
    return path


def _heavy_docx(path: Path) -> Path:
    """A .docx within every archive limit (74 MB of varied XML, inflating 16 times) whose
    parse needs far more memory than a parser process is given below."""
    block = b"".join(b"<w:p><w:r><w:t>w%d</w:t></w:r></w:p>" % i for i in range(100_000))
    return docx_with_xml(path, [block] * 20)


def _workers(parent: psutil.Process) -> list[psutil.Process]:
    """The parser processes (multiprocessing spawn children) of ``parent`` still running."""
    found = []
    for child in parent.children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()) and child.status() != "zombie":
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def test_files_of_unsupported_types_are_skipped_not_failed(ingester, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    shutil.copy(shared("docs", "README.md"), folder)
    shutil.copy(shared("docs", "img", "DA-1p.png"), folder / "screenshot.png")
    with (folder / "demo.mp4").open("wb") as fh:  # 4 GiB, sparse: never read, never hashed
        fh.truncate(4 << 30)
    source = _register(ingester, folder)
    started = time.monotonic()
    report = ingester.ingest(source)
    assert report.documents == 1 and report.failed == []
    assert time.monotonic() - started < 120
    skipped = {Path(s.path).name: (s.reason, s.message) for s in report.skipped}
    assert set(skipped) == {"screenshot.png", "demo.mp4"}
    assert {reason for reason, _ in skipped.values()} == {"unsupported_type"}
    assert "'.png' is not read" in skipped["screenshot.png"][1]
    summary = report.summary()
    assert summary["failed"] == [] and len(summary["skipped"]) == 2
    assert set(summary["skipped"][0]) == {"path", "reason", "message"}
    # A file of such a type named on its own is skipped the same way.
    one_off = ingester.ingest(source, paths=[folder / "screenshot.png"])
    assert one_off.failed == [] and [s.reason for s in one_off.skipped] == ["unsupported_type"]


def test_symlink_loops_fail_alone(ingester, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    shutil.copy(shared("docs", "README.md"), folder)
    (folder / "a.md").symlink_to(folder / "b.md")
    (folder / "b.md").symlink_to(folder / "a.md")
    (folder / "self.md").symlink_to("self.md")
    (folder / "loop").symlink_to(".")  # a link to its own folder
    (folder / "loop2").symlink_to(".")
    source = _register(ingester, folder)
    for _ in range(2):  # a later full ingest is not blocked by the links either
        report = ingester.ingest(source)
        failed = {Path(f.path).name: f for f in report.failed}
        assert set(failed) == {"a.md", "b.md", "self.md"}
        assert all(
            f.reason == "unreadable" and "symlink loop" in f.message for f in failed.values()
        )
        assert report.documents + report.unchanged == 1
    assert ingester.store.count(LIVE) > 0
    # A glob source over the same folder: `**` does not walk the `loop -> .` links.
    started = time.monotonic()
    globbed = ingester.ingest(_register(ingester, f"{folder}/**/*.md", sid="kb-glob"))
    assert globbed.documents == 1 and len(globbed.failed) == 3
    assert time.monotonic() - started < 60


def test_a_failure_names_the_file_in_the_source_and_its_target(ingester, tmp_path):
    allowed = tmp_path / "allowed"
    folder = allowed / "kb"
    (folder / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hostname").write_text("a host name\n")
    shutil.copy(shared("docs", "README.md"), folder)
    (folder / "x.txt").symlink_to(outside / "hostname")
    (folder / "sub" / "blank.md").write_text("")
    (folder / "notes.md").symlink_to(folder / "sub" / "blank.md")
    rooted = _with(ingester, source_roots=[allowed])
    report = rooted.ingest(_register(rooted, folder))
    failed = {f["path"]: f for f in report.summary()["failed"]}
    assert failed[str(folder / "x.txt")] == {
        "path": str(folder / "x.txt"),
        "reason": "outside_source_roots",
        "message": failed[str(folder / "x.txt")]["message"],
        "target": str(outside / "hostname"),
    }
    assert failed[str(folder / "notes.md")]["reason"] == "empty"  # failed in the parser
    assert failed[str(folder / "notes.md")]["target"] == str(folder / "sub" / "blank.md")
    assert "target" not in failed[str(folder / "sub" / "blank.md")]  # not a link: no target


def test_hostile_files_fail_alone_in_bounded_time_and_memory(ingester, tmp_path):
    folder = tmp_path / "hostile"
    folder.mkdir()
    docx_with_body(folder / "a-bomb.docx", 150 * 1024 * 1024)
    _heavy_docx(folder / "b-heavy.docx")
    deep_html(folder / "c-deep.html")
    with (folder / "d-huge.txt").open("wb") as fh:
        fh.truncate(60 << 20)
    (folder / "e-binary.txt").write_bytes(shared("docs", "img", "DA-1p.png").read_bytes())
    shutil.copy(shared("docs", "README.md"), folder / "f-good.md")
    bounded = _with(ingester, parse_memory_mb=1024, parse_timeout_s=120)
    started = time.monotonic()
    report = bounded.ingest(_register(bounded, folder))
    assert time.monotonic() - started < 110  # the heavy .docx alone parses for minutes unbounded
    failed = {Path(f.path).name: f for f in report.failed}
    assert {name: f.reason for name, f in failed.items()} == {
        "a-bomb.docx": "too_large",
        "b-heavy.docx": "too_large",
        "d-huge.txt": "too_large",
        "e-binary.txt": "corrupt",
    }
    assert "RAGWALL_MAX_INFLATE_RATIO" in failed["a-bomb.docx"].message
    assert "RAGWALL_PARSE_MEMORY_MB" in failed["b-heavy.docx"].message
    assert "RAGWALL_MAX_FILE_BYTES" in failed["d-huge.txt"].message
    # The worker stopped for memory was replaced: the documents after it were ingested.
    assert report.documents == 2
    texts = " ".join(h.payload["text"] for h in ingester.store.scroll(LIVE, limit=1000)[0])
    assert SECRET in texts


def test_cancel_kills_the_parser_and_leaves_nothing_pending(ingester, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    shutil.copy(shared("docs", "README.md"), folder / "a.md")
    _slow_text(folder / "b-slow.txt")
    eager = _with(ingester, embed_buffer_chunks=1)  # a.md is written and live before the cancel
    source = _register(eager, folder)
    cancel, first_done, outcome = threading.Event(), threading.Event(), {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "write" and done >= 1:
            first_done.set()

    def run() -> None:
        try:
            outcome["report"] = eager.ingest(source, progress=progress, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    me = psutil.Process()
    thread = threading.Thread(target=run)
    thread.start()
    assert first_done.wait(180), "a.md was never written"
    time.sleep(2)  # the worker is now inside the slow file's parse
    assert _workers(me), "no parser process is running"
    cancel.set()
    started = time.monotonic()
    thread.join(30)
    assert not thread.is_alive() and time.monotonic() - started < 8
    error = outcome.get("error")
    assert isinstance(error, IngestCancelled), outcome
    assert error.report.cancelled and error.report.documents == 1
    assert not _workers(me)  # killed mid-parse, not left to finish
    assert eager.store.count(PENDING) == 0
    assert {h.payload["doc_name"] for h in eager.store.scroll(LIVE, limit=1000)[0]} == {"a.md"}
    run = eager.state.last_runs()["kb"]
    assert run.finished_at and run.summary["cancelled"] is True


def test_parser_workers_die_with_their_parent(tmp_path):
    slow = _slow_text(tmp_path / "slow.txt")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from ragwall.embed import resolve_model_path\n"
        "from ragwall.ingest.pool import ParserPool\n"
        "from ragwall.settings import Settings\n"
        "s = Settings()\n"
        "config = dict(max_tokens=256, overlap_tokens=32, max_chars=1000, new_after_chars=800,\n"
        "              combine_under_chars=200)\n"
        "pool = ParserPool(s, resolve_model_path(s.embedding_model), config)\n"
        "pool.wait(pool.submit(Path(sys.argv[1])))\n"
    )
    env = {**os.environ, "RAGWALL_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-c", script, str(slow)], cwd=ROOT, env=env)
    workers: list[psutil.Process] = []
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 120
        while not (workers := _workers(parent)):
            assert time.monotonic() < deadline and proc.poll() is None, "no worker started"
            time.sleep(0.2)
        # Let it load its models and start on the slow file (a minute and more of parsing).
        time.sleep(15)
        assert all(w.is_running() for w in workers)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        alive = workers
        while alive and time.monotonic() < deadline:
            alive = [w for w in alive if w.is_running() and w.status() != "zombie"]
            time.sleep(0.2)
        assert not alive, f"orphaned parser processes: {[w.pid for w in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for worker in workers:  # the very processes seen above, should the test have failed
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.kill()


def test_a_one_off_link_keeps_the_name_it_was_given(ingester, tmp_path):
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "link.md").symlink_to(tmp_path / "empty.md")
    (tmp_path / "empty.md").write_text("")
    source = _register(ingester, folder)
    report = ingester.ingest(source, paths=[folder / "link.md"])
    (failure,) = report.failed
    assert failure.path == str(folder / "link.md") and failure.target == str(tmp_path / "empty.md")
