"""API keys: shown once, stored hashed, scoped, bound to groups, revocable."""

from __future__ import annotations

import sqlite3

import pytest

from ragwall.service.keys import ApiKeyError, KeyStore


def test_keys_are_stored_hashed_and_authenticate(tmp_path):
    path = tmp_path / "state.sqlite3"
    store = KeyStore(path)
    key, record = store.create("retrieve", ["finance", "finance", "ops"], name="agent")
    assert key.startswith(f"rw_{record.id}_") and record.groups == ("finance", "ops")
    raw = sqlite3.connect(path).execute("SELECT * FROM api_keys").fetchall()
    assert key.split("_", 2)[2] not in repr(raw)  # the secret itself is never stored
    who = store.authenticate(key)
    assert who and who.scope == "retrieve" and who.groups == ("finance", "ops")
    assert who.allows("retrieve") and not who.allows("admin")
    assert store.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.authenticate("rw_short") is None


def test_admin_keys_are_unrestricted_and_revocation_works(tmp_path):
    store = KeyStore(tmp_path / "s.sqlite3")
    key, record = store.create("admin")
    who = store.authenticate(key)
    assert who.groups is None and who.allows("retrieve") and who.allows("admin")
    store.revoke(record.id)
    assert store.authenticate(key) is None
    with pytest.raises(ApiKeyError):
        store.revoke(record.id)
    with pytest.raises(ApiKeyError, match="scope"):
        store.create("superuser")


def test_an_admin_key_cannot_be_bound_to_groups_and_a_stored_one_is_not_admin(tmp_path):
    """Issue 24: admin views cover the whole index, so admin is for unrestricted keys only."""
    path = tmp_path / "s.sqlite3"
    store = KeyStore(path)
    with pytest.raises(ApiKeyError, match="admin key cannot be bound to groups"):
        store.create("admin", ["finance"])
    assert store.list() == []  # nothing stored
    # one stored by an older release authenticates as a retrieve key, bound to its groups
    key, record = store.create("admin")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE api_keys SET groups = ? WHERE id = ?", ('["finance"]', record.id))
    who = store.authenticate(key)
    assert who.groups == ("finance",) and who.group_bound_admin
    assert who.allows("retrieve") and not who.allows("admin")
    assert "group-bound keys cannot hold the admin scope" in who.refusal("admin")
    assert f"ragwall keys revoke {record.id}" in who.refusal("admin")
