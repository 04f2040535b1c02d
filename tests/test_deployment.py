"""Deployment files: docker-compose.yml against the Compose Specification schema, and the Dockerfile."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "tests" / "fixtures" / "compose-spec" / "compose-spec.json"


def _compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_compose_file_matches_the_compose_specification():
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(_compose()), key=lambda e: list(e.path))
    assert errors == [], [f"{list(e.path)}: {e.message}" for e in errors]


def test_schema_catches_a_broken_compose_file():
    """The validation above would notice a mistake (so its silence means something)."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    broken = _compose()
    broken["services"]["mongo"]["healthcheck"]["retries"] = "many"
    assert list(jsonschema.Draft201909Validator(schema).iter_errors(broken))


def test_mongo_is_a_healthy_replica_set_and_app_waits_for_it():
    compose = _compose()
    mongo, app = compose["services"]["mongo"], compose["services"]["app"]
    assert mongo["image"].startswith("mongo:7")
    assert "--replSet" in mongo["command"]
    assert "rs.initiate" in " ".join(mongo["healthcheck"]["test"])
    assert app["depends_on"]["mongo"]["condition"] == "service_healthy"
    url = app["environment"]["KUNJUNG_DATABASE_URL"]
    assert url.startswith("mongodb://mongo:27017/")
    assert "replicaSet=rs0" in url
    assert any(str(v).startswith("mongo-data:") for v in mongo["volumes"])
    assert "mongo-data" in compose["volumes"]


def test_dockerfile_runs_gunicorn_with_the_options_scripts_serve_uses():
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    serve = (ROOT / "scripts" / "serve").read_text(encoding="utf-8")
    assert "gunicorn -c python:server.gunicorn_conf" in text
    assert "-c python:server.gunicorn_conf" in serve
    for package in ("server", "sync", "forms"):
        assert f"COPY {package} ./{package}" in text
    assert "USER kunjung" in text
