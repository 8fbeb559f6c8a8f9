"""The image and the compose stack, checked without a Docker engine (none on these machines):
the files parse, name files that exist, wire the services together, and install what the
Makefile installs."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#")),
    )
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_compose_wires_ragwall_to_a_healthy_qdrant():
    services = _compose()["services"]
    assert {"qdrant", "ragwall", "prometheus"} <= set(services)
    ragwall = services["ragwall"]
    assert ragwall["depends_on"]["qdrant"]["condition"] == "service_healthy"
    assert ragwall["environment"]["RAGWALL_QDRANT_URL"] == "http://qdrant:6333"
    assert ragwall["build"] == "." and (ROOT / "Dockerfile").exists()
    for name in ("qdrant", "ragwall", "prometheus"):
        assert services[name]["healthcheck"]["test"], name
    assert any("/readyz" in part for part in ragwall["healthcheck"]["test"])
    assert any(v.endswith(":/data") for v in ragwall["volumes"])
    assert "qdrant-storage:/qdrant/storage" in services["qdrant"]["volumes"]
    assert set(_compose()["volumes"]) >= {"qdrant-storage", "ragwall-data"}


def test_compose_names_files_that_exist():
    services = _compose()["services"]
    for service in services.values():
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            host = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", host)  # a default stands in
            if host.startswith("."):
                assert (ROOT / host).exists(), volume


def test_prometheus_is_optional_and_scrapes_metrics_with_the_token():
    prom = _compose()["services"]["prometheus"]
    assert prom["profiles"] == ["monitoring"]
    assert "ragwall_metrics_token" in prom["secrets"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["ragwall:8000"]
    assert job["authorization"]["credentials_file"] == "/run/secrets/ragwall_metrics_token"
    assert _compose()["secrets"]["ragwall_metrics_token"]["environment"] == "RAGWALL_METRICS_TOKEN"


def test_the_image_runs_ragwall_serve_as_a_non_root_user_with_a_healthcheck():
    steps = _instructions()
    users = [rest for word, rest in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    (entry,) = [rest for word, rest in steps if word == "ENTRYPOINT"]
    (cmd,) = [rest for word, rest in steps if word == "CMD"]
    argv = [*yaml.safe_load(entry), *yaml.safe_load(cmd)]  # JSON arrays
    assert argv[:2] == ["ragwall", "serve"]
    (health,) = [rest for word, rest in steps if word == "HEALTHCHECK"]
    assert "/readyz" in health
    env = " ".join(rest for word, rest in steps if word == "ENV")
    for setting in ("HF_HUB_OFFLINE=1", "DO_NOT_TRACK=1", "RAGWALL_DATA_DIR=/data"):
        assert setting in env


def test_the_image_entry_command_is_one_the_cli_accepts():
    (entry,) = [rest for word, rest in _instructions() if word == "ENTRYPOINT"]
    (cmd,) = [rest for word, rest in _instructions() if word == "CMD"]
    argv = yaml.safe_load(cmd)
    ragwall = Path(sys.executable).with_name("ragwall")
    out = subprocess.run(
        [str(ragwall), *argv[:1], "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in (a for a in argv[1:] if a.startswith("--")):
        assert option in out, option
    assert yaml.safe_load(entry) == ["ragwall"]


def test_the_image_copies_files_that_exist_and_every_package_folder():
    copied = []
    for word, rest in _instructions():
        if word == "COPY":
            *sources, _ = shlex.split(rest)
            copied += sources
    for source in copied:
        assert (ROOT / source).exists(), source
    pyproject = (ROOT / "pyproject.toml").read_text()
    folders = re.findall(r'^"ragwall\.\w+" = "(\w+)"$', pyproject, re.M)
    assert set(folders) <= set(copied), "a package folder is not copied into the image"


def test_the_image_installs_what_the_makefile_installs():
    makefile = (ROOT / "Makefile").read_text()
    torch = re.search(r"pip install -q (torch==[\d.]+)", makefile).group(1)
    runs = " ".join(rest for word, rest in _instructions() if word == "RUN")
    assert torch in runs
    spacy = "--no-deps --require-hashes -r requirements-spacy-model.txt"
    assert spacy in makefile and spacy in runs
    assert re.search(r"pip install -q [^&]*\s\.\s", runs), "the project itself is installed"
    assert "unstructured[pdf]" not in runs  # it pulls CUDA torch
