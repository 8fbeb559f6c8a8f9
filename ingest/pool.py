"""Parser worker processes: bounded in memory, tied to their parent, stoppable mid-parse.

Each document is parsed in a ``pebble`` worker process (spawned: nothing is inherited), so
that whatever a hostile file does to a parser, it costs only that document:

- **time**: a parse that runs past ``RAGWALL_PARSE_TIMEOUT_S`` is killed (``timeout``); a
  worker that dies fails only its document (``parser_crashed``) and is replaced;
- **memory** (Linux): once its models are loaded, a worker holds itself to
  ``RAGWALL_PARSE_MEMORY_MB``. A watchdog thread reads the process's resident size every
  :data:`WATCH_EVERY_S` and ends the process with :data:`EXIT_OVER_MEMORY` past the limit, and
  ``RLIMIT_DATA``, a quarter higher, stops an allocation too fast for the watchdog (a
  ``MemoryError``). Both are reported ``too_large`` with the limit named. ``RLIMIT_AS`` is not
  used: the models' libraries map far more address space than they touch;
- **its parent**: a worker asks Linux for ``SIGKILL`` when the thread that started it ends
  (``PR_SET_PDEATHSIG``; the pool starts workers from the ingest's thread and from its own
  manager thread, both alive as long as the pool is) and exits at once if its parent is already
  gone, so no parse runs on as an orphan after a server or CLI is killed;
- **cancel**: :meth:`ParserPool.wait` returns ``None`` as soon as the caller's ``cancel`` event
  is set (it waits in :data:`POLL_S` steps), and :meth:`ParserPool.stop` kills every worker
  mid-parse.

Invariant: :meth:`ParserPool.wait` never raises for a document's sake; it returns the worker's
result or a ``{"ok": False, "reason", "message"}`` that says what happened.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any

from pebble import ProcessFuture, ProcessPool
from pebble.common import ProcessExpired

from ragwall.ingest.limits import ArchiveLimits
from ragwall.settings import Settings

#: A worker's exit status when its watchdog stopped it for memory.
EXIT_OVER_MEMORY = 86
WATCH_EVERY_S = 0.05
POLL_S = 0.2
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_LINUX = sys.platform.startswith("linux")
_limit_mb = 0  # this worker's RAGWALL_PARSE_MEMORY_MB (0: none), for its own messages


class ParserPool:
    """A pool of parser processes for one ingest run (a context manager)."""

    def __init__(self, settings: Settings, model_path: str, chunk_config: dict[str, int]) -> None:
        self.settings = settings
        self._job_args = (
            model_path,
            chunk_config,
            settings.max_file_bytes,
            asdict(ArchiveLimits.from_settings(settings)),
        )
        self._pool = ProcessPool(
            max_workers=settings.parse_workers,
            context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(settings.parse_memory_mb, os.getpid()),
        )

    def __enter__(self) -> ParserPool:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self._pool.close()
            self._pool.join()
        else:  # an error or a cancel: nothing scheduled is wanted any more
            self.stop()

    def submit(self, path: Path) -> ProcessFuture:
        return self._pool.schedule(
            _parse_job, args=(str(path), *self._job_args), timeout=self.settings.parse_timeout_s
        )

    def stop(self) -> None:
        """Kill every worker now, mid-parse included, and wait until they are gone."""
        self._pool.stop()
        self._pool.join()

    def wait(self, future: ProcessFuture, cancel: threading.Event | None = None) -> dict | None:
        """The document's result; ``None`` as soon as ``cancel`` is set."""
        while not future.done():
            if cancel is not None and cancel.is_set():
                return None
            wait([future], timeout=POLL_S)
        if cancel is not None and cancel.is_set():
            return None
        s = self.settings
        try:
            return future.result()
        except FutureTimeout:
            return _failed(
                "timeout", f"parsing took over {s.parse_timeout_s:g} s (RAGWALL_PARSE_TIMEOUT_S)"
            )
        except ProcessExpired as exc:
            if exc.exitcode == EXIT_OVER_MEMORY:
                return _failed("too_large", _over_memory(s.parse_memory_mb))
            return _failed("parser_crashed", f"the parser process died (exit code {exc.exitcode})")
        except Exception as exc:  # anything else raised inside the worker
            return _failed("parser_error", f"{type(exc).__name__}: {exc}")


def _failed(reason: str, message: str) -> dict[str, Any]:
    return {"ok": False, "reason": reason, "message": message}


def _over_memory(limit_mb: int) -> str:
    return (
        f"parsing needed more than {limit_mb} MB (RAGWALL_PARSE_MEMORY_MB); the parser process "
        "was stopped. Raise the limit if the document is genuine"
    )


# -- in the worker process ---------------------------------------------------------------------
def init_worker(memory_mb: int, parent_pid: int) -> None:
    """Tie the worker to its parent, load the parsers' models, then cap its memory."""
    die_with_parent(parent_pid)
    from threadpoolctl import threadpool_limits

    from ragwall.ingest.worker import warm_up  # deferred: the worker loads unstructured and spaCy

    threadpool_limits(1)  # one BLAS thread per parser process: the embedder owns the cores
    warm_up()
    limit_memory(memory_mb)


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent goes (Linux); exit now if it already has."""
    if _LINUX:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


def limit_memory(memory_mb: int) -> None:
    """Hold this process to ``memory_mb`` resident (see the module's doc); 0: no limit."""
    global _limit_mb
    _limit_mb = memory_mb
    if not memory_mb or not _LINUX:
        return
    limit = memory_mb * 1024 * 1024
    backstop = limit + limit // 4
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        backstop = min(backstop, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (backstop, hard))
    threading.Thread(target=_watch_memory, args=(limit,), daemon=True, name="rss-watch").start()


def _resident_bytes() -> int:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _watch_memory(limit: int) -> None:
    while True:
        if _resident_bytes() > limit:
            os._exit(EXIT_OVER_MEMORY)
        time.sleep(WATCH_EVERY_S)


def _parse_job(
    path: str,
    model_path: str,
    chunk_config: dict[str, int],
    max_bytes: int,
    archive: dict[str, Any],
) -> dict:
    from ragwall.ingest.worker import parse_and_chunk  # deferred: the worker loads unstructured

    try:
        return parse_and_chunk(path, model_path, chunk_config, max_bytes, ArchiveLimits(**archive))
    except MemoryError:
        message = _over_memory(_limit_mb) if _limit_mb else "parsing ran out of memory"
        return _failed("too_large", message)
