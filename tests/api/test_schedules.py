"""Sources that stay fresh on their own (issue 29, part 1): a schedule set over the API and the
CLI, the server's scheduler syncing a changed file with no manual command, the schedule resuming
from the registry after a restart, and a failed sync's reason shown. Real service, model and
engine; the app in process."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ragwall.api.app import create_app
from ragwall.api.cli import app
from ragwall.errors import MassRemoval
from ragwall.service import DEV_PRINCIPAL, RetrieveParams, Service


def _wait_sync(svc: Service, source_id: str, after: str, timeout: float = 120) -> dict:
    """The source's sync state once a sync has ended after ``after`` (ISO time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sync = {s.source.id: s.sync for s in svc.list_sources()}[source_id]
        if sync.last_sync_at is not None and sync.last_sync_at > after:
            return sync
        time.sleep(0.2)
    pytest.fail(f"no sync of {source_id} ended after {after}")


def test_a_changed_file_is_retrievable_after_the_next_sync_with_no_command(settings, encoder):
    folder = settings.data_dir.parent / "pumps"
    folder.mkdir()
    (folder / "seal.md").write_text("# Seals\n\nThe pump seal is replaced every six months.\n")
    conf = settings.model_copy(update={"query_encoder": "torch", "scheduler_tick_s": 0.2})
    with Service(conf, encoder=encoder) as svc:
        svc.add_source("admin", "pumps", str(folder), "internal", refresh_s=1)
        begun = datetime.now(UTC).isoformat()
        svc.start_scheduler()
        first = _wait_sync(svc, "pumps", begun)
        assert first.last_sync_ok
        (folder / "seal.md").write_text("# Seals\n\nThe pump seal is replaced every fortnight.\n")
        changed = datetime.now(UTC).isoformat()
        assert _wait_sync(svc, "pumps", changed).last_sync_ok
        hits = svc.retrieve(DEV_PRINCIPAL, RetrieveParams(query="how often is the seal replaced"))
        assert "fortnight" in hits.result.hits[0].text
        assert 'ragwall_source_sync_age_seconds{source="pumps"}' in svc.metrics_text().decode()
        jobs = svc.runtime.registry.recent_jobs(kinds=("ingest",))
        assert jobs and {j.actor for j in jobs} == {"scheduler"}
        svc.set_source_schedule("admin", "pumps", {"refresh_s": 3600})
        # A tick that read the old schedule may still start one last sync: let it end first.
        time.sleep(3 * conf.scheduler_tick_s)
        deadline = time.monotonic() + 120
        while svc.runtime.registry.unfinished_jobs() and time.monotonic() < deadline:
            time.sleep(0.2)
        last = {s.source.id: s.sync for s in svc.list_sources()}["pumps"]
    assert last.next_sync_at() > datetime.now(UTC)
    # After a restart the schedule resumes from the registry: nothing is due for an hour.
    with Service(conf, encoder=encoder) as again:
        again.start_scheduler()
        time.sleep(1)
        state = {s.source.id: s.sync for s in again.list_sources()}["pumps"]
        assert state.last_attempt_at == last.last_attempt_at
        assert state.refresh_s == 3600
    records = [json.loads(x) for x in settings.audit_path.read_text().splitlines()]
    assert [r["refresh_s"] for r in records if r["action"] == "source.schedule"] == [3600]


def test_schedules_over_the_api_and_the_cli(settings, encoder, tmp_path):
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nText.\n")
    conf = settings.model_copy(update={"query_encoder": "torch"})
    with Service(conf, encoder=encoder) as svc:
        key = svc.create_key("setup", "admin")[0]
        with TestClient(create_app(conf, svc)) as client:
            h = {"Authorization": f"Bearer {key}"}
            made = client.post(
                "/v1/sources",
                json={"id": "kb", "path": str(folder), "refresh": "15m", "stale_after": "180d"},
                headers=h,
            )
            assert made.status_code == 201, made.text
            assert (made.json()["refresh"], made.json()["stale_after"]) == ("15m", "180d")
            listed = client.get("/v1/sources", headers=h).json()[0]
            assert listed["refresh"] == "15m" and listed["last_sync_at"] is None
            assert listed["next_sync_at"] is not None  # never synced: due at once
            changed = client.patch("/v1/sources/kb", json={"refresh": "1h"}, headers=h)
            assert (changed.json()["refresh"], changed.json()["stale_after"]) == ("1h", "180d")
            cleared = client.patch("/v1/sources/kb", json={"refresh": None}, headers=h)
            assert cleared.json()["refresh"] is None and cleared.json()["next_sync_at"] is None
            for path, body, status, code in (
                ("/v1/sources/kb", {"refresh": "5 minutes"}, 422, "invalid_request"),
                ("/v1/sources/kb", {"refresh": "0s"}, 422, "invalid_request"),
                ("/v1/sources/kb", {"every": "1h"}, 422, "invalid_request"),
                ("/v1/sources/nope", {"refresh": "1h"}, 404, "source_not_found"),
            ):
                got = client.patch(path, json=body, headers=h)
                assert (got.status_code, got.json()["error"]["code"]) == (status, code), body
        env = {"RAGWALL_DATA_DIR": str(conf.data_dir)}
        cli = CliRunner().invoke(app, ["sources", "set", "kb", "--refresh", "30s"], env=env)
        assert cli.exit_code == 0 and "refresh 30s, stale after 180d" in cli.stdout
        both = CliRunner().invoke(
            app, ["sources", "set", "kb", "--refresh", "1h", "--no-refresh"], env=env
        )
        assert both.exit_code == 2 and "not both" in both.stderr
        bad = CliRunner().invoke(app, ["sources", "set", "kb", "--stale-after", "soon"], env=env)
        assert bad.exit_code == 2 and "not a duration" in bad.stderr
        listed = CliRunner().invoke(app, ["sources", "list", "--json"], env=env)
        assert json.loads(listed.stdout)[0]["refresh"] == "30s"


def test_old_documents_are_flagged_stale_and_modified_after_filters_in_the_store(
    settings, encoder, tmp_path
):
    folder = tmp_path / "manuals"
    folder.mkdir()
    old, new = folder / "old.md", folder / "new.md"
    old.write_text("# Boilers\n\nThe boiler pressure valve is checked every winter.\n")
    new.write_text("# Boilers\n\nThe boiler pressure valve is checked every spring now.\n")
    year_ago = time.time() - 400 * 86400
    os.utime(old, (year_ago, year_ago))
    conf = settings.model_copy(update={"query_encoder": "torch", "mass_removal_floor": 0})
    with Service(conf, encoder=encoder) as svc:
        svc.add_source("admin", "manuals", str(folder), "internal", stale_after_s=180 * 86400)
        svc.ingest("admin", "manuals")
        key = svc.create_key("setup", "retrieve")[0]
        with TestClient(create_app(conf, svc)) as client:
            h = {"Authorization": f"Bearer {key}"}
            query = {"query": "when is the boiler pressure valve checked", "top_k": 5}
            hits = client.post("/v1/retrieve", json=query, headers=h).json()["hits"]
            by_name = {x["provenance"]["doc_name"]: x for x in hits}
            stale = [f for f in by_name["old.md"]["flags"] if f["kind"] == "stale"]
            assert stale and stale[0]["reason"].startswith("document_age: modified 400 days ago")
            assert not [f for f in by_name["new.md"]["flags"] if f["kind"] == "stale"]
            assert by_name["old.md"]["provenance"]["doc_modified_at"].startswith(
                datetime.fromtimestamp(year_ago, UTC).date().isoformat()
            )
            # modified_after is a filter in the store: the old document is never a candidate.
            month_ago = datetime.fromtimestamp(time.time() - 30 * 86400, UTC).isoformat()
            recent = client.post(
                "/v1/retrieve", json={**query, "filters": {"modified_after": month_ago}}, headers=h
            ).json()["hits"]
            assert {x["provenance"]["doc_name"] for x in recent} == {"new.md"}
            bad = client.post(
                "/v1/retrieve",
                json={**query, "filters": {"modified_after": "last week"}},
                headers=h,
            )
            assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_request")
            # A source whose last sync failed flags its hits with the reason.
            for name in ("old.md", "new.md"):
                (folder / name).unlink()
            (folder / "other.md").write_text("# Other\n\nNothing about boilers.\n")
            svc.set_source_schedule("admin", "manuals", {"stale_after_s": None})
            with pytest.raises(MassRemoval):
                svc.ingest("admin", "manuals")
            hits = client.post("/v1/retrieve", json=query, headers=h).json()["hits"]
            reasons = [f["reason"] for x in hits for f in x["flags"] if f["kind"] == "stale"]
            assert reasons and all(r.startswith("sync_failed") for r in reasons)
            assert "mass_removal" in reasons[0]
