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
