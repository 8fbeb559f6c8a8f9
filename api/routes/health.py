"""Liveness, readiness and metrics: the routes a load balancer and a Prometheus server call.

``/metrics`` is scraped with the ``RAGWALL_METRICS_TOKEN`` as a bearer token, or with an admin
key (``ragwall.api.guard.authorize_metrics``); 404 ``metrics_off`` when telemetry is off.

No `from __future__ import annotations` here: FastAPI reads these annotations at run time.
"""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ragwall.api.deps import SvcDep
from ragwall.api.guard import ApiError, authorize_metrics
from ragwall.api.models import Health
from ragwall.telemetry import CONTENT_TYPE

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Not ready"}},
)
def readyz(svc: SvcDep):  # noqa: ANN201 - a Health or a 503 response
    """Readiness: the index answers and the embedding model is loaded."""
    try:
        ready = svc.readiness()
    except Exception as exc:
        return JSONResponse(
            status_code=503, content={"status": "unavailable", "detail": {"error": str(exc)}}
        )
    return Health(status="ready", detail={k: str(v) for k, v in ready.items()})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(request: Request, svc: SvcDep) -> Response:
    """Prometheus metrics (text format). Scraped with the ``RAGWALL_METRICS_TOKEN`` as a bearer
    token, or with an admin key; 401 without either."""
    if not svc.settings.telemetry:
        raise ApiError(404, "metrics_off", "metrics are off on this server (RAGWALL_TELEMETRY=0)")
    authorize_metrics(svc, {k.lower(): v for k, v in request.headers.items()})
    return Response(svc.metrics_text(), media_type=CONTENT_TYPE)
