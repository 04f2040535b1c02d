"""Schemathesis against /api/openapi.json of an in-process app: no 5xx, and every answer as the document says."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from http_helpers import PASSWORD, make_user
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)
from sync_helpers import VILLAGE, Device, listed

from forms.library import library_form
from server import create_app
from server.relay.halls import create_hall
from server.store import get_store, raw_store
from server.villages import import_villages, read_geojson_file

VERVAL_VERSION = library_form("verval_keluarga")["settings"]["version"]

# A name the fuzzer will not generate, so a fuzzed PATCH or revoke cannot lock the caller out.
ADMIN = "fuzz-admin-4c1e9a"
EXAMPLES = 25  # per operation and mode: ~45 operations x 2-3 passes stay near a minute on 2 cores
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, response_headers_conformance]
SECRET = "kunjung-fuzz-secret-that-is-long-enough-0123456789"
# A tus PATCH body is raw bytes, sent as binary bodies are.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")


def make_app(path: Path, **overrides: Any) -> Any:
    """An app on ``path``/kunjung.db with cheap password hashing, as tests/conftest.py makes them; made here
    because ``import conftest`` finds whichever conftest module was collected first."""
    return create_app({"DATABASE_URL": f"sqlite:///{path}/kunjung.db", "SECRET_KEY": SECRET,
                       "SECRET_KEY_FILE": str(path / "secret_key"), "LOAD_LIBRARY_FORMS": False, "TESTING": True,
                       "PASSWORD_HASH_MEMORY_KIB": 1024, "PASSWORD_HASH_TIME_COST": 1, **overrides})


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    """Seeded as a village would have it: the shipped forms, sample villages, officers, visits, a review and a
    conflict, so that list and detail answers carry real records for the schema check."""
    tmp_path = tmp_path_factory.mktemp("fuzz")
    app = make_app(tmp_path, LOAD_LIBRARY_FORMS=True, LOGIN_RATE_LIMIT=1_000_000)
    with app.app_context():
        import_villages(get_store(), read_geojson_file("server/data/sample_villages.geojson"))
    make_user(app, ADMIN, "admin")
    make_user(app, "supervisor", "supervisor", ["32.04.05"])
    make_user(app, "ani", "officer", [VILLAGE])
    make_user(app, "citra", "officer", [VILLAGE])
    client = app.test_client()
    ani, citra = Device(client, "ani"), Device(client, "citra")
    household = str(uuid.uuid4())
    visit = {"id": str(uuid.uuid4()), "type": "visit", "device_id": ani.device_id, "hlc": ani.hlc(),
             "form_id": "verval_keluarga", "form_version": VERVAL_VERSION, "village": VILLAGE,
             "household_id": household,
             "geotag": {"lat": -6.93, "lon": 107.675, "accuracy_m": 8, "captured_at": "2026-11-22T03:00:00Z"},
             "started_at": "2026-11-22T02:50:00Z", "ended_at": "2026-11-22T03:00:00Z",
             "answers": {"head_name": "Siti", "members": [{"_id": str(uuid.uuid4()), "member_name": "Rahmat"}]}}
    assert ani.push([visit])["results"][0]["status"] == "applied"
    ani.push([ani.edit(household, {"address": "RT 01"})])
    citra.push([citra.edit(household, {"address": "RT 02"})])  # two heads: an open conflict
    supervisor = {"Authorization": client.post("/api/v1/auth/login", json={
        "username": "supervisor", "password": PASSWORD}).get_json()["access_token"]}
    supervisor["Authorization"] = f"Bearer {supervisor['Authorization']}"
    reviewed = client.post(f"/api/v1/visits/{visit['id']}/review", headers=supervisor,
                           json={"id": str(uuid.uuid4()), "state": "approved", "comment": "Lengkap"})
    assert reviewed.status_code == 200, reviewed.get_json()
    conflicts = listed(client, "/api/v1/conflicts", supervisor)
    assert len(conflicts) == 1
    with app.app_context():
        create_hall(get_store(), "balai", [VILLAGE], actor="fuzz")
    app.config["FUZZ_KNOWN_IDS"] = {
        "form_id": "verval_keluarga", "version": VERVAL_VERSION, "household_id": household, "visit_id": visit["id"],
        "username": "ani", "device_id": ani.device_id, "code": VILLAGE, "conflict_id": conflicts[0]["id"],
        "name": "desa.csv", "upload_id": uuid.uuid4().hex, "path": "foto_rumah"}
    # The same parameter name means another record on some paths: a hall's name, not a form file's.
    app.config["FUZZ_KNOWN_BY_PATH"] = {"/api/v1/relay/halls/": {"name": "balai"}}
    yield app
    raw_store(app).close()


@pytest.fixture(scope="module")
def api_schema(fuzz_app):
    return schemathesis.openapi.from_wsgi("/api/openapi.json", fuzz_app)


@pytest.fixture(scope="module")
def admin_login(fuzz_app):
    """A fresh admin login with a device for each example: a fuzzed logout or refresh ends only its own."""
    client = fuzz_app.test_client()

    def login() -> dict[str, str]:
        response = client.post("/api/v1/auth/login", json={"username": ADMIN, "password": PASSWORD,
                                                           "device_id": f"fuzz-{uuid.uuid4().hex[:8]}"})
        assert response.status_code == 200, response.get_json()
        return {"Authorization": f"Bearer {response.get_json()['access_token']}"}

    return login


def _operations() -> list[str]:
    """Every documented operation, read from an app on an in-memory store when the module is collected."""
    # The secret key is given, so the directory (and its secret_key file) is never touched.
    app = make_app(Path("/nonexistent"), DATABASE_URL="sqlite:///:memory:")
    try:
        paths = app.test_client().get("/api/openapi.json").get_json()["paths"]
    finally:
        raw_store(app).close()
    return [f"{method.upper()} {path}" for path, item in paths.items() for method in item if method != "parameters"]


@pytest.mark.parametrize("label", _operations())
def test_every_operation_answers_as_documented_and_never_5xx(label, api_schema, admin_login, fuzz_app):
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label
    inputs = (len(operation.path_parameters) + len(operation.query) + len(operation.headers)
              + len(list(operation.body)))
    # With nothing to send there is nothing to get wrong: negative generation has no cases.
    runs = [(GenerationMode.POSITIVE, None), (GenerationMode.NEGATIVE, None)] if inputs else [
        (GenerationMode.POSITIVE, None)]
    if len(operation.path_parameters):
        # Random ids mostly meet 404; the seeded ones reach the answers that carry records.
        known = {**fuzz_app.config["FUZZ_KNOWN_IDS"], **next(
            (ids for prefix, ids in fuzz_app.config["FUZZ_KNOWN_BY_PATH"].items() if operation.path.startswith(prefix)),
            {})}
        runs.append((GenerationMode.POSITIVE, {p.name: known[p.name] for p in operation.path_parameters}))
    for mode, path_parameters in runs:

        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        def answers_as_documented(case) -> None:
            # The fuzzer makes up bearer tokens from the security scheme; forged ones are test_hostile's.
            case.headers = {**(case.headers or {}), **admin_login()}
            response = case.call()
            case.validate_response(response, checks=CHECKS)

        answers_as_documented()
