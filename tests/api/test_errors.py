"""ragwall.api.errors: one table answers every service error, most specific class first."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ragwall.api.errors import ERRORS, add_error_handlers, lookup
from ragwall.errors import (
    Conflict,
    IdempotencyKeyReused,
    InvalidRequest,
    JobNotFound,
    JobRunning,
    ModelError,
    RagwallError,
    ReportNotFound,
    SourceBusy,
    SourceExists,
    SourceNotFound,
    SourceOutsideRoots,
    StoreLocked,
    SwitchRefused,
    VersionNotFound,
)


@pytest.mark.parametrize(
    ("exc", "answer"),
    [
        (SourceNotFound("x"), (404, "source_not_found")),
        (SourceExists("x"), (409, "source_exists")),
        (SourceBusy("x", job_id="j"), (409, "ingest_running")),
        (SourceOutsideRoots("x"), (422, "invalid_source")),
        (JobNotFound("x"), (404, "job_not_found")),
        (VersionNotFound("x"), (404, "version_not_found")),
        (ReportNotFound("x"), (404, "report_not_found")),
        (JobRunning("x", job_id="j"), (409, "job_running")),
        (SwitchRefused("x"), (409, "switch_refused")),
        (IdempotencyKeyReused("x", job_id="j"), (422, "idempotency_key_reused")),
        (InvalidRequest("x"), (422, "invalid_request")),
        (StoreLocked("x"), (503, "store_unavailable")),
        (ModelError("x"), None),
    ],
)
def test_the_most_specific_class_decides(exc, answer):
    assert lookup(exc) == answer


def test_every_entry_is_a_ragwall_error():
    assert all(issubclass(cls, RagwallError) for cls in ERRORS)


def _app(exc: Exception) -> TestClient:
    app = FastAPI()
    add_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise exc

    return TestClient(app, raise_server_exceptions=False)


def test_the_body_names_the_job_when_there_is_one():
    answer = _app(JobRunning("busy", job_id="j1")).get("/boom")
    assert answer.status_code == 409
    assert answer.json() == {"error": {"code": "job_running", "message": "busy", "job_id": "j1"}}
    answer = _app(Conflict("no")).get("/boom")
    assert answer.json() == {"error": {"code": "conflict", "message": "no"}}


def test_an_error_the_table_does_not_name_is_a_500():
    assert _app(ModelError("broken")).get("/boom").status_code == 500
