"""A reindex request names models by id or by a folder under RAGWALL_MODEL_ROOTS only, and a
refused path gets one message whether it exists or not (issue 24: no filesystem probing)."""

from __future__ import annotations

import pytest

from ragwall.errors import ModelNotAllowed
from ragwall.service.model_roots import check_requested_models
from ragwall.settings import DEFAULT_EMBEDDING_MODEL, Settings


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path / "data")


def _refusal(settings: Settings, **given: object) -> str:
    with pytest.raises(ModelNotAllowed) as info:
        check_requested_models(settings, given)
    return str(info.value)


def test_paths_outside_the_roots_are_refused_alike(settings, tmp_path):
    (tmp_path / "outside-model").mkdir()
    messages = {
        _refusal(settings, embedding_model=path)
        for path in ("/etc", "/nonexistent/model", str(tmp_path / "outside-model"), "/etc/passwd")
    }
    assert len(messages) == 1  # existing, missing, folder or file: the same answer
    (message,) = messages
    assert "RAGWALL_MODEL_ROOTS" in message and "/etc" not in message
    traversal = str(settings.data_dir / "models" / ".." / ".." / "outside-model")
    assert _refusal(settings, embedding_model=traversal) == message
    assert "injection_model" in _refusal(settings, injection_model="/etc")


def test_ids_roots_and_the_configured_model_are_allowed(settings, tmp_path):
    inside = settings.data_dir / "models" / "my-model"
    inside.mkdir(parents=True)
    for given in (
        {"embedding_model": DEFAULT_EMBEDDING_MODEL},
        {"embedding_model": "BAAI/bge-small-en-v1.5"},
        {"embedding_model": str(inside)},
        {"injection_model": "none"},
        {"injection_model": str(inside)},
    ):
        check_requested_models(settings, given)
    other_root = tmp_path / "models-elsewhere"
    (other_root / "m").mkdir(parents=True)
    with_roots = Settings(data_dir=settings.data_dir, model_roots=str(other_root))
    check_requested_models(with_roots, {"embedding_model": str(other_root / "m")})
    _refusal(with_roots, embedding_model=str(inside))  # the default root no longer applies
    configured = Settings(data_dir=settings.data_dir, embedding_model=str(tmp_path / "outside"))
    check_requested_models(configured, {"embedding_model": str(tmp_path / "outside")})


def test_a_relative_path_is_not_an_id(settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "model").mkdir(parents=True)
    _refusal(settings, embedding_model="org/model")  # exists here: a path, outside the roots
    _refusal(settings, embedding_model="../x")
