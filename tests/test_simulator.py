"""The device simulator (scripts/simulate_devices.py): its visits, clean runs passing, faults failing checks."""

from __future__ import annotations

import copy
import datetime as dt
import importlib.util
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from http_helpers import PASSWORD, login, make_user

from forms import check_kk, check_nik, validate_answers, validate_definition
from forms.library import library_form
from sync import Record, Write

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "simulate_devices.py"


def _load_simulator():
    # scripts/ is not a package: load the script from its path, registered so its dataclasses resolve.
    spec = importlib.util.spec_from_file_location("simulate_devices", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


sim = _load_simulator()


@pytest.fixture
def quiet_server_logs():
    """Deliberate faults make the app log errors; keep the test output readable."""
    logger = logging.getLogger("kunjung")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@pytest.fixture
def library_app(app_factory, quiet_server_logs):
    """An app with the shipped forms published and an admin the simulator logs in as."""
    application = app_factory(LOAD_LIBRARY_FORMS=True)
    make_user(application, "admin", "admin")
    return application


def config(**overrides):
    settings = {"admin_user": "admin", "admin_password": PASSWORD, "concurrency": 8, "seed": 7}
    settings.update(overrides)
    return sim.Config(**settings)


def failed(figures):
    return {name for name, check in figures["checks"].items() if not check["ok"]}


# -- the visits it makes --------------------------------------------------------------------------


def test_generated_visits_are_valid_household_forms_with_valid_identifiers():
    definition = validate_definition(library_form("verval_keluarga"))
    boundaries = sim.Boundaries(json.loads(sim.SAMPLE_VILLAGES.read_text(encoding="utf-8")))
    rng = random.Random(3)
    today = dt.date.today()

    def new_id():
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    sizes = set()
    for index in range(150):
        village = sorted(boundaries.shapes)[index % 6]
        point = boundaries.point(rng, village, outside=False)
        answers = sim.new_visit_answers(rng, village, boundaries.names[village], point, today, new_id)
        report = validate_answers(definition, answers, today=today)
        assert report.errors == {}
        assert report.flags == [], report.flags
        assert check_kk(answers["no_kk"]) == []
        rows = answers.get("members", [])
        sizes.add(len(rows))
        for row in rows:
            assert check_nik(row["member_nik"]) == []
            assert row["member_nik"].startswith(village.replace(".", "")[:6])
        # a revisit prefills from the household the first visit wrote
        record = Record(str(uuid.uuid4()))
        for path, value in sim.household_writes(definition, answers).items():
            record.apply(Write(path, value, f"0000000000001-0000/dev/{index}"))
        again = sim.revisit_answers(rng, record, village, boundaries.names[village], point, today, new_id)
        report = validate_answers(definition, again, today=today)
        assert report.errors == {}
        assert report.flags == [], report.flags
        assert {row["_id"] for row in rows} <= {row["_id"] for row in again.get("members", [])} or \
            again["visit_result"] not in ("1", "2")
    assert sizes == {1, 2, 3, 4, 5, 6}


def test_points_fall_inside_or_clearly_outside_their_village():
    boundaries = sim.Boundaries(json.loads(sim.SAMPLE_VILLAGES.read_text(encoding="utf-8")))
    rng = random.Random(5)
    import shapely

    for code, geometry in boundaries.shapes.items():
        for _ in range(20):
            lat, lon = boundaries.point(rng, code, outside=False)
            assert geometry.covers(shapely.Point(lon, lat))
            lat, lon = boundaries.point(rng, code, outside=True)
            assert not geometry.covers(shapely.Point(lon, lat))


def test_the_oracle_follows_the_rule_text():
    def event(event_id, hlc, writes, base=None, device="a"):
        return sim.Accepted(event_id, "household_edit", "h1", "32.04.05.2001", hlc, device, f"officer-{device}",
                            "2026-03-02T09:00:00.000+07:00", writes, base or {})

    first = event("e1", "1763790000000-0000", {"head_name": "Asep"})
    stamp = first.stamp
    left = event("e2", "1763790000001-0000", {"head_name": "H. Asep"}, {"head_name": [stamp]}, "b")
    right = event("e3", "1763790000002-0000", {"head_name": "Asep, S.Pd."}, {"head_name": [stamp]}, "c")
    same = event("e4", "1763790000003-0000", {"phone": "0812"}, device="b")
    same_too = event("e5", "1763790000004-0000", {"phone": "0812"}, device="c")
    folded = sim.oracle_fold([right, first, left, left, same, same_too])
    head = folded["fields"]["head_name"]
    assert head["value"] == "Asep, S.Pd."
    assert [h["stamp"] for h in head["heads"]] == [left.stamp, right.stamp]
    assert [h["event_id"] for h in folded["conflicts"]["head_name"]] == ["e2", "e3"]
    assert folded["fields"]["phone"]["head_stamps"] == [same.stamp, same_too.stamp]
    assert "phone" not in folded["conflicts"]
    resolution = event("e6", "1763790000009-0000", {"head_name": "Asep"},
                       {"head_name": [left.stamp, right.stamp]}, "a")
    assert sim.oracle_fold([first, left, right, resolution])["conflicts"] == {}
    assert sim.canon(1) == sim.canon(1.0)
    assert sim.canon(True) != sim.canon(1)


# -- clean runs ---------------------------------------------------------------------------------


def test_twenty_devices_in_process_pass_every_check(library_app):
    started = time.monotonic()
    simulation = sim.Simulation(config(devices=20, rounds=3), sim.FlaskTransport(library_app))
    figures = simulation.run()
    assert figures["ok"], sim.summary_text(figures)
    assert time.monotonic() - started < 60
    events = figures["events"]
    # the run exercised what it is meant to: conflicts, resends, lost replies, a fast clock, flags
    assert figures["devices"] == 20
    assert figures["conflicts"]["server"] > 0
    assert figures["conflicts"]["resolved_by_supervisor"] == events["resolutions_accepted"] > 0
    assert figures["reassigned_officers"] == 2
    assert figures["pull"]["left_scope"] >= 2
    assert events["duplicate"] > 0
    assert figures["push"]["lost_replies"] + figures["push"]["lost_requests"] > 0
    assert events["rejected"].get("clock_skew", 0) > 0
    assert events["restamped"] == len({e.id for d in simulation.devices for e in d.events if e.restamps})
    assert set(events["rejected"]) == {"clock_skew"}
    assert events["accepted"] == events["created"]
    assert figures["pull"]["pages"] > figures["devices"]
    assert figures["checks"]["geotag_flags"]["checked"] == events["visits"]
    outside = [e for d in simulation.devices for e in d.events if e.kind == "visit" and e.outside]
    assert outside
    for label in ("POST /api/v1/sync/push", "GET /api/v1/sync/pull"):
        assert figures["latency_ms"][label]["count"] > 0
    assert "ALL CHECKS PASSED" in sim.summary_text(figures)


def test_given_accounts_are_used_as_they_are(library_app):
    client = library_app.test_client()
    admin = login(client, "admin")
    villages = json.loads(sim.SAMPLE_VILLAGES.read_text(encoding="utf-8"))
    assert client.post("/api/v1/villages", headers=admin, json=villages).status_code == 200
    make_user(library_app, "pengawas", "supervisor", ["32.04.05"])
    for name, village in (("ani", "32.04.05.2001"), ("citra", "32.04.05.2001"), ("dodi", "32.04.05.2002")):
        make_user(library_app, name, "officer", [village])
    accounts = {"supervisor": {"username": "pengawas", "password": PASSWORD},
                "officers": [{"username": name, "password": PASSWORD} for name in ("ani", "citra", "dodi")]}
    simulation = sim.Simulation(config(devices=3, rounds=2, admin_user=None, admin_password=None,
                                       accounts=accounts), sim.FlaskTransport(library_app))
    figures = simulation.run()
    assert figures["ok"], sim.summary_text(figures)
    assert sorted(device.username for device in simulation.devices) == ["ani", "citra", "dodi"]
    assert {v for device in simulation.devices for v in device.villages} == {"32.04.05.2001", "32.04.05.2002"}


# -- faults the checks must catch -----------------------------------------------------------------


class SwallowingTransport:
    """Forwards everything, except that it drops one event from one push and answers it applied."""

    def __init__(self, inner):
        self.inner = inner
        self.name = "swallowing"
        self.swallowed = None

    def send(self, method, path, *, query=None, body=None, headers=None):
        if path != "/api/v1/sync/push" or self.swallowed is not None:
            return self.inner.send(method, path, query=query, body=body, headers=headers)
        payload = json.loads(body)
        if len(payload["events"]) < 2:
            return self.inner.send(method, path, query=query, body=body, headers=headers)
        self.swallowed = payload["events"].pop()
        reply = self.inner.send(method, path, query=query, body=json.dumps(payload).encode(), headers=headers)
        answer = reply.json()
        answer["results"].append({"id": self.swallowed["id"], "status": "applied"})
        return sim.Reply(reply.status, json.dumps(answer).encode(), reply.headers)


def test_an_event_the_transport_swallows_fails_the_checks(library_app):
    transport = SwallowingTransport(sim.FlaskTransport(library_app))
    settings = config(devices=4, rounds=2, drop_rate=0.0, dup_rate=0.0, skewed_devices=0)
    figures = sim.Simulation(settings, transport).run()
    assert transport.swallowed is not None
    assert not figures["ok"]
    assert {"no_lost_events", "server_matches_oracle"} <= failed(figures)
    examples = " ".join(figures["checks"]["no_lost_events"]["examples"])
    assert f"{transport.swallowed['id']} is missing from the history" in examples


def test_a_corrupted_replica_or_a_forgotten_event_fails_the_checks(library_app):
    simulation = sim.Simulation(config(devices=6, rounds=2), sim.FlaskTransport(library_app))
    simulation.setup()
    simulation.play()
    simulation.final_pull()
    assert simulation.verify()["ok"]

    device = next(d for d in simulation.devices if d.view)
    household_id = sorted(device.view)[0]
    original = device.view[household_id]
    corrupted = copy.deepcopy(original)
    path = sorted(corrupted["fields"])[0]
    corrupted["fields"][path] = {"value": "rusak", "stamp": corrupted["fields"][path]["stamp"]}
    device.view[household_id] = corrupted
    device._replicas.clear()
    assert failed(simulation.verify()) == {"replicas_match_server"}
    device.view[household_id] = original
    device._replicas.clear()

    # a device that forgets an event the server accepted: the oracle no longer matches the server
    owner = next(d for d in simulation.devices if any(e.kind == "household_edit" for e in d.events))
    forgotten = next(e for e in owner.events if e.kind == "household_edit")
    owner.events.remove(forgotten)
    figures = simulation.verify()
    assert {"no_duplicated_events", "server_matches_oracle"} <= failed(figures)
    assert any(forgotten.id in example for example in figures["checks"]["no_duplicated_events"]["examples"])


def test_a_verdict_the_server_never_gave_is_reported(library_app):
    simulation = sim.Simulation(config(devices=3, rounds=1, drop_rate=0.0, dup_rate=0.0),
                                sim.FlaskTransport(library_app))
    simulation.setup()
    simulation.play()
    simulation.final_pull()
    device = simulation.devices[0]
    event = next(e for e in device.events if e.state == "acked")
    event.verdicts.append("applied")  # as if a resend had been applied a second time
    assert "no_lost_events" in failed(simulation.verify())


# -- against gunicorn -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn(tmp_path):
    """A real server: kunjung init, an admin from the CLI, gunicorn with two threaded workers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUNJUNG_")}
    port = _free_port()
    env.update({
        "KUNJUNG_DATABASE_URL": f"sqlite:///{tmp_path}/kunjung.db",
        "KUNJUNG_SECRET_KEY_FILE": str(tmp_path / "secret_key"),
        "KUNJUNG_LOAD_LIBRARY_FORMS": "true",
        "KUNJUNG_LOG_LEVEL": "WARNING",
    })
    bin_dir = ROOT / ".venv" / "bin"
    subprocess.run([str(bin_dir / "kunjung"), "init"], env=env, cwd=ROOT, check=True, capture_output=True)
    made = subprocess.run([str(bin_dir / "kunjung"), "create-user", "admin", "--role", "admin", "--password-stdin"],
                          input=PASSWORD + "\n", text=True, env=env, cwd=ROOT, capture_output=True, check=False)
    assert made.returncode == 0, made.stderr
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - closed after the server stops
    process = subprocess.Popen(
        [str(bin_dir / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2", "--worker-class", "gthread",
         "--threads", "4", "server.wsgi:app"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "gunicorn.log").read_text(errors="replace")
            try:
                with urllib.request.urlopen(url + "/health/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, "gunicorn did not become ready"
            time.sleep(0.2)
        yield url, env
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        log.close()


@pytest.mark.slow
def test_ten_threaded_devices_against_gunicorn_pass_every_check(gunicorn, tmp_path):
    url, env = gunicorn
    figures_path = tmp_path / "figures.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--url", url, "--devices", "10", "--rounds", "3", "--concurrency", "10",
         "--seed", "5", "--gzip", "--quiet", "--json", str(figures_path)],
        env={**env, "KUNJUNG_SIM_ADMIN_PASSWORD": PASSWORD}, cwd=ROOT, capture_output=True, text=True,
        timeout=600, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ALL CHECKS PASSED" in run.stdout
    figures = json.loads(figures_path.read_text(encoding="utf-8"))
    assert figures["ok"]
    assert figures["devices"] == 10
    assert figures["server"] == url
    assert figures["push"]["gzip"] is True
    assert figures["conflicts"]["server"] == figures["conflicts"]["oracle"] > 0
    assert figures["events"]["accepted"] == figures["events"]["created"]
    assert figures["latency_ms"]["POST /api/v1/sync/push"]["p99_ms"] >= \
        figures["latency_ms"]["POST /api/v1/sync/push"]["p50_ms"]
