"""OpenTelemetry spans for a request and its stages; off unless it is configured.

Without a configured provider the OpenTelemetry API hands out non-recording spans, so
:func:`span` costs a few microseconds and exports nothing. :func:`configure_from_env` installs
an OTLP exporter when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set, with
the standard ``OTEL_*`` variables for everything else; tests pass their own span processor (the
SDK's in-memory exporter) to :func:`configure`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace

log = logging.getLogger("ragwall.telemetry")

_provider: Any = None  # the SDK provider this process configured, if any
TRACER_NAME = "ragwall"


def configure(processor: Any, service_name: str = "ragwall") -> Any:
    """Send spans to ``processor`` (an SDK ``SpanProcessor``); returns the tracer provider.

    The provider is Ragwall's own, not the global one, so configuring twice (tests) works.
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    global _provider
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(processor)
    _provider = provider
    return provider


def configure_from_env() -> bool:
    """Export spans by OTLP/HTTP when an OTLP endpoint is set; returns whether tracing is on."""
    if not (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    configure(
        BatchSpanProcessor(OTLPSpanExporter()),
        os.environ.get("OTEL_SERVICE_NAME", "ragwall"),
    )
    log.info("tracing on: spans are exported by OTLP/HTTP")
    return True


def disable() -> None:
    """Stop recording spans (flushes and shuts down the configured provider)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
    _provider = None


def enabled() -> bool:
    return _provider is not None


def tracer() -> trace.Tracer:
    if _provider is None:
        return trace.NoOpTracer()
    return _provider.get_tracer(TRACER_NAME)


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span named ``ragwall.<name>`` under the current one (a no-op when tracing is off)."""
    if _provider is None:
        yield None
        return
    with tracer().start_as_current_span(f"ragwall.{name}", attributes=attributes) as s:
        yield s


def trace_id() -> str | None:
    """The current span's trace id (32 hex digits), for log lines; ``None`` when not tracing."""
    if _provider is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
