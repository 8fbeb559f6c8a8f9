"""Operating Ragwall: Prometheus metrics, structured logs and OpenTelemetry traces.

The HTTP middleware (``ragwall.telemetry.asgi``) and the service record into these; nothing here
imports the service, so any layer may use it.
"""

from ragwall.telemetry import tracing
from ragwall.telemetry.facts import RequestFacts, current, new_request_id
from ragwall.telemetry.logs import JsonFormatter, TextFormatter, configure_logging, event
from ragwall.telemetry.metrics import CONTENT_TYPE, Metrics, StateReading

__all__ = [
    "CONTENT_TYPE",
    "JsonFormatter",
    "Metrics",
    "RequestFacts",
    "StateReading",
    "TextFormatter",
    "configure_logging",
    "current",
    "event",
    "new_request_id",
    "tracing",
]
