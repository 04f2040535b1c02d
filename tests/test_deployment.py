"""Deployment files: docker-compose.yml against the Compose Specification schema, and the Dockerfile."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import dukpy
import jsonschema
import pytest
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
    assert mongo["healthcheck"]["test"][:4] == ["CMD", "mongosh", "--quiet", "--eval"]
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


# The healthcheck's script, run by a JavaScript interpreter against a node in each state it can be
# in: mongosh exits non-zero on quit(1), which is what makes the container unhealthy.
_HARNESS = """
var initiated = [];
var exit_code = 0;
var quit = function (code) { throw {quit: code}; };
var print = function () {};
var db = {hello: function () { return dukpy.states.length > 1 ? dukpy.states.shift() : dukpy.states[0]; }};
var rs = {initiate: function (config) {
    initiated.push(config);
    if (dukpy.initiate_fails) { throw new Error("already initialized"); }
    return {ok: 1};
}};
try { eval(dukpy.script); } catch (e) { if (e && e.quit !== undefined) { exit_code = e.quit; } else { throw e; } }
[exit_code, initiated];
"""
_PRIMARY = {"isWritablePrimary": True, "setName": "rs0"}
_SECONDARY = {"isWritablePrimary": False, "secondary": True, "setName": "rs0"}
_UNINITIATED = {"isWritablePrimary": False, "secondary": False, "isreplicaset": True}


def _healthcheck(states, initiate_fails=False):
    script = _compose()["services"]["mongo"]["healthcheck"]["test"][-1]
    exit_code, initiated = dukpy.evaljs(_HARNESS, script=script, states=states, initiate_fails=initiate_fails)
    return exit_code, initiated


@pytest.mark.parametrize(("states", "healthy"), [
    ([_PRIMARY], True),
    ([_SECONDARY], False),
    ([_UNINITIATED, _SECONDARY], False),  # initiated now; the election has not finished yet
], ids=["writable primary", "secondary", "first start"])
def test_the_mongo_healthcheck_passes_only_on_a_writable_primary(states, healthy):
    exit_code, initiated = _healthcheck(states)
    assert (exit_code == 0) is healthy
    assert bool(initiated) is (states[0] is _UNINITIATED)


def test_the_healthcheck_initiates_the_replica_set_the_app_names_on_the_mongo_service():
    exit_code, initiated = _healthcheck([_UNINITIATED, _PRIMARY])
    assert exit_code == 0
    (config,) = initiated
    app_url = urlparse(_compose()["services"]["app"]["environment"]["KUNJUNG_DATABASE_URL"])
    assert config["_id"] == parse_qs(app_url.query)["replicaSet"][0]
    assert [m["host"] for m in config["members"]] == [app_url.netloc]
    assert app_url.hostname in _compose()["services"]


def test_a_second_initiate_that_fails_does_not_break_the_check():
    exit_code, _ = _healthcheck([_UNINITIATED, _SECONDARY], initiate_fails=True)
    assert exit_code == 1


def test_compose_interpolates_nothing_in_the_healthcheck():
    """Compose reads $ as a variable; the script has none, so it reaches mongosh as written."""
    assert "$" not in " ".join(_compose()["services"]["mongo"]["healthcheck"]["test"])


# Flags each tool accepts (mongo-tools: mongodump/options.go, mongorestore/options.go, common/options).
_TOOL_FLAGS = {
    "mongodump": {"--uri", "--db", "--archive", "--gzip", "--collection", "--out", "--oplog", "--quiet"},
    "mongorestore": {"--uri", "--archive", "--gzip", "--drop", "--nsInclude", "--nsExclude", "--oplogReplay",
                     "--quiet"},
}


def _readme_section(title):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _commands(section):
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    for block in blocks:
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line:
                yield line


def test_the_readme_backup_and_restore_commands_name_real_services_flags_and_the_apps_database():
    compose = _compose()
    database = urlparse(compose["services"]["app"]["environment"]["KUNJUNG_DATABASE_URL"]).path.strip("/")
    seen = set()
    for line in _commands(_readme_section("Care of the data")):
        for part in line.split("|"):
            words = shlex.split(part.split(">")[0].split("<")[0])
            if words[:2] != ["docker", "compose"]:
                continue
            verb = words[2]
            assert verb in ("exec", "stop", "start"), line
            service = next(w for w in words[3:] if not w.startswith("-"))
            assert service in compose["services"], line
            if verb == "exec":
                tool = words[words.index(service) + 1]
                assert tool in _TOOL_FLAGS, line
                flags = {w.split("=", 1)[0] for w in words if w.startswith("--")}
                assert flags <= _TOOL_FLAGS[tool], f"{line}: {flags - _TOOL_FLAGS[tool]}"
                assert "-T" in words, f"{line}: a piped archive needs exec -T (no terminal)"
                assert {"--archive", "--gzip"} <= flags, line
                if tool == "mongodump":
                    assert f"--db={database}" in words, line
                else:
                    assert f"--nsInclude={database}.*" in words, line
                seen.add(tool)
    assert seen == {"mongodump", "mongorestore"}


def test_each_worker_freezes_what_it_loaded_out_of_the_collectors_reach():
    import gc

    from server import gunicorn_conf

    assert gunicorn_conf.worker_class == "gthread"
    gc.unfreeze()
    try:
        gunicorn_conf.post_worker_init(None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
