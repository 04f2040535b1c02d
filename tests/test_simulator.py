"""The device simulator (scripts/simulator): its visits, its oracle, clean runs passing, faults failing checks."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import shapely
from http_helpers import PASSWORD, login, make_user

from forms import check_kk, check_nik, household_writes, validate_answers, validate_definition
from forms.library import library_form
from scripts.simulator import (
    SAMPLE_VILLAGES,
    Accepted,
    Boundaries,
    Config,
    Simulation,
    canon,
    oracle_fold,
    summary_text,
)
from scripts.simulator.households import new_visit_answers, revisit_answers
from scripts.simulator.memory import Trimmer, lean_environment
from scripts.simulator.villages import synthetic_villages
from server.client import ACKED, FlaskTransport, Reply, field_stamps
from sync import Record, Write

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "simulate_devices.py"


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
    return Config(**settings)


def failed(figures):
    return {name for name, check in figures["checks"].items() if not check["ok"]}


# -- the visits it makes --------------------------------------------------------------------------


def test_generated_visits_are_valid_household_forms_with_valid_identifiers():
    definition = validate_definition(library_form("verval_keluarga"))
    boundaries = Boundaries(json.loads(SAMPLE_VILLAGES.read_text(encoding="utf-8")))
    rng = random.Random(3)
    today = dt.date.today()

    def new_id():
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    sizes = set()
    for index in range(150):
        village = sorted(boundaries.shapes)[index % 6]
        point = boundaries.point(rng, village, outside=False)
        answers = new_visit_answers(rng, village, boundaries.names[village], point, today, new_id)
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
        for path, value in household_writes(definition, answers).items():
            record.apply(Write(path, value, f"0000000000001-0000/dev/{index}"))
        again = revisit_answers(rng, record, village, boundaries.names[village], point, today, new_id)
        report = validate_answers(definition, again, today=today)
        assert report.errors == {}
        assert report.flags == [], report.flags
        assert {row["_id"] for row in rows} <= {row["_id"] for row in again.get("members", [])} or \
            again["visit_result"] not in ("1", "2")
    assert sizes == {1, 2, 3, 4, 5, 6}


def test_a_household_of_a_given_size_is_a_complete_interview():
    definition = validate_definition(library_form("verval_keluarga"))
    rng = random.Random(11)
    today = dt.date.today()
    for _ in range(20):
        answers = new_visit_answers(rng, "32.04.05.2001", "Cileunyi Kulon", (-6.93, 107.675), today,
                                    lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4)), size=4,
                                    result="1")
        assert len(answers["members"]) == 4
        assert answers["visit_result"] == "1"
        assert validate_answers(definition, answers, today=today).errors == {}


def test_points_fall_inside_or_clearly_outside_their_village():
    boundaries = Boundaries(json.loads(SAMPLE_VILLAGES.read_text(encoding="utf-8")))
    rng = random.Random(5)
    for code, geometry in boundaries.shapes.items():
        for _ in range(20):
            lat, lon = boundaries.point(rng, code, outside=False)
            assert geometry.covers(shapely.Point(lon, lat))
            lat, lon = boundaries.point(rng, code, outside=True)
            assert not geometry.covers(shapely.Point(lon, lat))


# -- the oracle -----------------------------------------------------------------------------------


def _event(event_id, hlc, writes, base=None, device="a", seq=None, kind="household_edit"):
    return Accepted(event_id, kind, "h1", "32.04.05.2001", hlc, device, f"officer-{device}",
                    "2026-03-02T09:00:00.000+07:00", writes, base or {}, seq)


def test_the_simulator_runs_under_the_lean_allocator_unless_told_otherwise():
    assert lean_environment({"PATH": "/bin"}) == {"PATH": "/bin", "PYTHONMALLOC": "malloc", "MALLOC_ARENA_MAX": "2"}
    assert lean_environment({"PYTHONMALLOC": "malloc", "MALLOC_ARENA_MAX": "2"}) is None
    # a choice of the caller's own is kept
    assert lean_environment({"PYTHONMALLOC": "pymalloc"}) == {"PYTHONMALLOC": "pymalloc", "MALLOC_ARENA_MAX": "2"}


def test_the_trimmer_hands_memory_back_while_in_use():
    trims = []
    trimmer = Trimmer(every_s=0.01)
    trimmer.trim = lambda: trims.append(1)
    with trimmer:
        deadline = time.monotonic() + 5
        while len(trims) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    count = len(trims)
    assert count >= 3
    time.sleep(0.05)
    assert len(trims) == count  # stopped on exit


def test_the_oracle_follows_the_rule_text():
    first = _event("e1", "1763790000000-0000", {"head_name": "Asep"})
    stamp = first.stamp
    left = _event("e2", "1763790000001-0000", {"head_name": "H. Asep"}, {"head_name": [stamp]}, "b")
    right = _event("e3", "1763790000002-0000", {"head_name": "Asep, S.Pd."}, {"head_name": [stamp]}, "c")
    same = _event("e4", "1763790000003-0000", {"phone": "0812"}, device="b")
    same_too = _event("e5", "1763790000004-0000", {"phone": "0812"}, device="c")
    folded = oracle_fold([right, first, left, left, same, same_too])
    head = folded["fields"]["head_name"]
    assert head["value"] == "Asep, S.Pd."
    assert [h["stamp"] for h in head["heads"]] == [left.stamp, right.stamp]
    assert [h["event_id"] for h in folded["conflicts"]["head_name"]] == ["e2", "e3"]
    assert folded["fields"]["phone"]["head_stamps"] == [same.stamp, same_too.stamp]
    assert "phone" not in folded["conflicts"]
    resolution = _event("e6", "1763790000009-0000", {"head_name": "Asep"},
                        {"head_name": [left.stamp, right.stamp]}, "a")
    assert oracle_fold([first, left, right, resolution])["conflicts"] == {}
    assert canon(1) == canon(1.0)
    assert canon(True) != canon(1)


def test_the_oracle_lets_a_device_supersede_its_own_earlier_writes_by_device_seq():
    # Three visits by one phone, none naming a base; the third was re-stamped after clock_skew, so its HLC is
    # the smallest, but it is the phone's latest write and must win.
    one = _event("v1", "1763790000005-0000", {"head_name": "Asep"}, seq=1, kind="visit")
    two = _event("v2", "1763790000006-0000", {"head_name": "H. Asep"}, seq=2, kind="visit")
    three = _event("v3", "1763790000001-0000", {"head_name": "Asep S."}, seq=3, kind="visit")
    other = _event("v4", "1763790000007-0000", {"head_name": "Ujang"}, device="b", seq=1, kind="visit")
    assert len(oracle_fold([one, two, three])["conflicts"]["head_name"]) == 3  # the rule as it stands today
    own = oracle_fold([two, three, one], own_writes_supersede=True)
    assert own["fields"]["head_name"] == {"value": "Asep S.", "stamp": three.stamp}
    assert own["conflicts"] == {}
    # another device's write is not superseded by it
    both = oracle_fold([one, two, three, other], own_writes_supersede=True)
    assert [h["event_id"] for h in both["conflicts"]["head_name"]] == ["v3", "v4"]
    # without device_seq the device's order is its HLC order; a resolution supersedes only its base
    by_hlc = oracle_fold([_event("x1", "1763790000001-0000", {"phone": "1"}),
                          _event("x2", "1763790000002-0000", {"phone": "2"})], own_writes_supersede=True)
    assert by_hlc["fields"]["phone"]["value"] == "2"
    assert by_hlc["conflicts"] == {}
    server_made = [_event("r1", "1763790000001-0000", {"phone": "1"}, kind="resolution"),
                   _event("r2", "1763790000002-0000", {"phone": "2"}, kind="resolution")]
    assert "phone" in oracle_fold(server_made, own_writes_supersede=True)["conflicts"]


# -- clean runs ---------------------------------------------------------------------------------


def test_twenty_devices_in_process_pass_every_check(library_app):
    started = time.monotonic()
    simulation = Simulation(config(devices=20, rounds=3), FlaskTransport(library_app))
    figures = simulation.run()
    assert figures["ok"], summary_text(figures)
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
    assert [e for d in simulation.devices for e in d.events if e.kind == "visit" and e.tag]  # some made outside
    for label in ("POST /api/v1/sync/push", "GET /api/v1/sync/pull"):
        assert figures["latency_ms"][label]["count"] > 0
    assert figures["simulator"]["peak_rss_mb"] > 0
    assert (figures["lost_events"], figures["duplicated_events"]) == (0, 0)
    text = summary_text(figures)
    push_p99 = figures["latency_ms"]["POST /api/v1/sync/push"]["p99_ms"]
    assert f"push p99 {push_p99:,.0f} ms" in text
    assert "lost events 0, duplicated events 0" in text
    assert "ALL CHECKS PASSED" in text


def test_phones_of_one_village_share_one_copy_of_each_household(library_app):
    simulation = Simulation(config(devices=12, rounds=2, reassign=0), FlaskTransport(library_app))
    figures = simulation.run()
    assert figures["ok"], summary_text(figures)
    copies = {}
    held = 0
    for device in simulation.devices:
        for household_id, pulled in device.client.replica.items():
            held += 1
            copies.setdefault(household_id, set()).add(id(pulled))
    # every phone holds the final state, so one object per household serves them all
    assert held > 2 * len(copies)
    assert all(len(objects) == 1 for objects in copies.values())
    assert figures["simulator"]["distinct_households_held"] >= len(copies)


def test_given_accounts_are_used_as_they_are(library_app):
    client = library_app.test_client()
    admin = login(client, "admin")
    villages = json.loads(SAMPLE_VILLAGES.read_text(encoding="utf-8"))
    assert client.post("/api/v1/villages", headers=admin, json=villages).status_code == 200
    make_user(library_app, "pengawas", "supervisor", ["32.04.05"])
    # The checks compare whole values: a given supervisor must see NIK and No. KK unmasked.
    assert client.patch("/api/v1/users/pengawas", json={"see_identifiers": True}, headers=admin).status_code == 200
    for name, village in (("ani", "32.04.05.2001"), ("citra", "32.04.05.2001"), ("dodi", "32.04.05.2002")):
        make_user(library_app, name, "officer", [village])
    accounts = {"supervisor": {"username": "pengawas", "password": PASSWORD},
                "officers": [{"username": name, "password": PASSWORD} for name in ("ani", "citra", "dodi")]}
    simulation = Simulation(config(devices=3, rounds=2, admin_user=None, admin_password=None, accounts=accounts),
                            FlaskTransport(library_app))
    figures = simulation.run()
    assert figures["ok"], summary_text(figures)
    assert sorted(device.username for device in simulation.devices) == ["ani", "citra", "dodi"]
    assert {v for device in simulation.devices for v in device.villages} == {"32.04.05.2001", "32.04.05.2002"}


# -- faults the checks must catch -----------------------------------------------------------------


class SwallowingTransport:
    """Forwards everything, except one event of the first phone's pushes in the last round: dropped from its
    push and answered applied.

    The phone and the round are fixed, so no race between threads picks them. The event is one
    that no other event of its phone names in a base; in the last round a phone makes all its events before
    it syncs, so none ever will. Nothing else can name it either (the server never had it, so no pull
    showed it, and a supervisor resolves only heads the server lists), so in the oracle's fold it stays a
    head of every field it writes (a visit or an edit writes at least one), while the server never saw it:
    its household, and only its household, differs, whatever the threads' timing.
    """

    def __init__(self, inner):
        self.inner = inner
        self.name = "swallowing"
        self.simulation = None
        self.swallowed = None
        self._lock = threading.Lock()

    @staticmethod
    def _unnamed(device, event_id):
        event = next(e for e in device.events if e.id == event_id)
        if event.state == ACKED:
            return False
        return not any(event.stamp in stamps for other in device.events for stamps in other.base.values())

    def send(self, method, path, *, query=None, body=None, headers=None):
        sim = self.simulation
        if path != "/api/v1/sync/push" or sim.current_round != sim.config.rounds - 1:
            return self.inner.send(method, path, query=query, body=body, headers=headers)
        payload = json.loads(body)
        target = sim.devices[0]
        with self._lock:
            index = None
            if self.swallowed is None and payload["device_id"] == target.device_id:
                # the round's last event is named by none, so one of the phone's pushes of the round has one
                index = next((i for i, e in enumerate(payload["events"]) if self._unnamed(target, e["id"])), None)
                if index is not None:
                    self.swallowed = payload["events"].pop(index)
        if index is None:
            return self.inner.send(method, path, query=query, body=body, headers=headers)
        reply = self.inner.send(method, path, query=query, body=json.dumps(payload).encode(), headers=headers)
        answer = reply.json()
        answer["results"].insert(index, {"id": self.swallowed["id"], "status": "applied"})
        return Reply(reply.status, json.dumps(answer).encode(), reply.headers)


def test_an_event_the_transport_swallows_fails_the_checks(library_app):
    transport = SwallowingTransport(FlaskTransport(library_app))
    settings = config(devices=4, rounds=2, drop_rate=0.0, dup_rate=0.0, skewed_devices=0, run_tag="swallow")
    simulation = Simulation(settings, transport)
    transport.simulation = simulation
    figures = simulation.run()
    swallowed = transport.swallowed
    assert swallowed is not None
    assert swallowed["device_id"] == simulation.devices[0].device_id
    assert not figures["ok"]
    assert {"no_lost_events", "server_matches_oracle"} <= failed(figures) <= {
        "no_lost_events", "server_matches_oracle", "replicas_match_server", "conflicts_match_oracle"}
    lost = figures["checks"]["no_lost_events"]
    assert lost["failures"] == 1
    assert f"{swallowed['id']} is missing from the history of household {swallowed['household_id']}" in \
        lost["examples"][0]
    state = figures["checks"]["server_matches_oracle"]
    assert state["failures"] == 1
    assert f"household {swallowed['household_id']} " in state["examples"][0]
    assert (figures["lost_events"], figures["duplicated_events"]) == (1, 0)


class DoublingTransport:
    """Forwards everything; the history of the first household asked for lists its first event twice."""

    def __init__(self, inner):
        self.inner = inner
        self.name = "doubling"
        self.doubled = None

    def send(self, method, path, *, query=None, body=None, headers=None):
        reply = self.inner.send(method, path, query=query, body=body, headers=headers)
        if self.doubled is None and path.startswith("/api/v1/households/") and reply.status == 200:
            answer = reply.json()
            self.doubled = answer["history"][0]["event_id"]
            answer["history"].append(answer["history"][0])
            return Reply(reply.status, json.dumps(answer).encode(), reply.headers)
        return reply


def test_an_event_listed_twice_is_counted_duplicated(library_app):
    transport = DoublingTransport(FlaskTransport(library_app))
    figures = Simulation(config(devices=3, rounds=1, drop_rate=0.0, dup_rate=0.0), transport).run()
    assert transport.doubled is not None
    assert (figures["lost_events"], figures["duplicated_events"]) == (0, 1)
    assert failed(figures) == {"no_duplicated_events"}
    assert f"lists event {transport.doubled} 2 times" in " ".join(
        figures["checks"]["no_duplicated_events"]["examples"])
    assert "lost events 0, duplicated events 1" in summary_text(figures)


def _visible_event(simulation):
    """An acknowledged phone event whose stamp the server shows as a head of some field."""
    snapshot = simulation.snapshot()
    for device in simulation.devices:
        for event in device.events:
            pulled = snapshot.get(event.household_id)
            if pulled and any(event.stamp in field_stamps(state) for state in pulled.fields.values()):
                return device, event
    raise AssertionError("no phone event is a head anywhere")


def test_a_corrupted_replica_or_a_forgotten_event_fails_the_checks(library_app):
    simulation = Simulation(config(devices=6, rounds=2), FlaskTransport(library_app))
    simulation.setup()
    simulation.play()
    simulation.final_pull()
    assert simulation.verify()["ok"]

    device = next(d for d in simulation.devices if len(d.client.replica))
    household_id = sorted(device.client.replica)[0]
    original = device.client.replica.get(household_id)
    corrupted = original.to_change()
    path = sorted(corrupted["fields"])[0]
    corrupted["fields"][path] = {"value": "rusak", "stamp": corrupted["fields"][path]["stamp"]}
    device.client.replica.take(corrupted)
    figures = simulation.verify()
    assert failed(figures) == {"replicas_match_server"}
    assert f"{device.device_id} household {household_id} differs at ['{path}']" in \
        figures["checks"]["replicas_match_server"]["examples"]
    device.client.replica.take(original.to_change())
    assert simulation.verify()["ok"]

    # a phone that forgets an event the server shows: the oracle no longer matches the server
    owner, forgotten = _visible_event(simulation)
    owner.client.events.remove(forgotten)
    figures = simulation.verify()
    assert {"no_duplicated_events", "server_matches_oracle"} <= failed(figures)
    assert any(forgotten.id in example for example in figures["checks"]["no_duplicated_events"]["examples"])
    assert any(forgotten.household_id in example for example in figures["checks"]["server_matches_oracle"]["examples"])


def test_a_verdict_the_server_never_gave_is_reported(library_app):
    simulation = Simulation(config(devices=3, rounds=1, drop_rate=0.0, dup_rate=0.0), FlaskTransport(library_app))
    simulation.setup()
    simulation.play()
    simulation.final_pull()
    device = simulation.devices[0]
    event = next(e for e in device.events if e.state == ACKED)
    event.verdicts.append("applied")  # as if a resend had been applied a second time
    figures = simulation.verify()
    assert "no_lost_events" in failed(figures)
    assert f"{event.id} was answered applied 2 times" in " ".join(figures["checks"]["no_lost_events"]["examples"])


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
         "--connections", "4", "--seed", "5", "--gzip", "--quiet", "--json", str(figures_path)],
        env={**env, "KUNJUNG_SIM_ADMIN_PASSWORD": PASSWORD}, cwd=ROOT, capture_output=True, text=True,
        timeout=600, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ALL CHECKS PASSED" in run.stdout
    figures = json.loads(figures_path.read_text(encoding="utf-8"))
    assert figures["ok"]
    assert figures["devices"] == 10
    assert figures["server"] == url
    assert figures["push"]["gzip"] is True
    assert figures["simulator"]["allocator"] == "malloc"  # the script ran itself again under the lean allocator
    assert figures["connections"] == 4  # ten phones at once over four connections: some waited for one
    assert figures["latency_ms"]["(wait for a free connection)"]["max_ms"] > 0
    assert (figures["lost_events"], figures["duplicated_events"]) == (0, 0)
    assert figures["conflicts"]["server"] == figures["conflicts"]["oracle"] > 0
    assert figures["events"]["accepted"] == figures["events"]["created"]
    assert figures["latency_ms"]["POST /api/v1/sync/push"]["p99_ms"] >= \
        figures["latency_ms"]["POST /api/v1/sync/push"]["p50_ms"]


def test_spread_arrivals_begin_each_stage_over_the_window_and_still_pass(library_app):
    simulation = Simulation(config(devices=8, rounds=1, reassign=0, arrival_s=1.5, concurrency=3, run_tag="arrive"),
                            FlaskTransport(library_app))
    figures = simulation.run()
    assert figures["ok"], summary_text(figures)
    assert figures["arrivals"]["mode"] == "spread"
    assert figures["arrivals"]["window_s"] == 1.5
    # a stage lasts at least until its last phone's moment, which falls late in the window for eight phones
    assert figures["stages_s"]["start"] >= 0.5
    assert figures["stages_s"]["round_0"] >= 0.5
    assert figures["simulator"]["cpu_ms_per_device"] > 0
    # three threads at most, and the phones syncing at one moment took them: never more than three busy
    assert 1 <= figures["arrivals"]["most_busy"] <= 3
    # start, one round, the final pull: three syncs of each phone, their CPU apart from setup and checks
    assert figures["simulator"]["syncs"] == 8 * 3
    assert 0 < figures["simulator"]["sync_cpu_s"] < figures["simulator"]["cpu_s"]
    assert figures["simulator"]["cpu_ms_per_sync"] > 0
    text = summary_text(figures)
    assert "arrivals: spread uniformly over 1.5 s in every stage (8 phones)" in text
    assert "ms per phone's sync" in text


def test_a_burst_is_said_to_be_one(library_app):
    figures = Simulation(config(devices=3, rounds=1, reassign=0), FlaskTransport(library_app)).run()
    assert figures["arrivals"] == {"mode": "burst", "window_s": 0.0, "late": 0, "most_late_s": 0.0, "most_busy": 0,
                                   "late_for_thread": 0}
    assert "arrivals: a burst, 3 phones at once in every stage" in summary_text(figures)


def test_synthetic_villages_tile_the_regency_edge_to_edge_and_import_cleanly(library_app):
    collection = synthetic_villages(150)
    assert synthetic_villages(150) == collection  # the same count gives the same villages
    codes = [feature["properties"]["code"] for feature in collection["features"]]
    assert len(set(codes)) == 150
    assert codes[0] == "32.98.01.2001"
    assert codes[12] == "32.98.02.2001"  # a dozen desa to a kecamatan
    shapes = [shapely.geometry.shape(feature["geometry"]) for feature in collection["features"]]
    assert all(shape.is_valid and shape.area > 0 for shape in shapes)
    # neighbours meet along an edge and never overlap, as desa boundaries do
    assert shapes[0].intersection(shapes[1]).length > 0
    assert shapes[0].intersection(shapes[1]).area == pytest.approx(0, abs=1e-12)
    assert len({round(shape.area, 9) for shape in shapes}) > 100  # jittered: not one shape repeated
    client = library_app.test_client()
    reply = client.post("/api/v1/villages", json=collection, headers=login(client, "admin"))
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["imported"] == 150
    assert reply.get_json()["refused"] == 0
    with pytest.raises(ValueError, match="synthetic villages"):
        synthetic_villages(0)


def test_a_crowd_over_synthetic_villages_spreads_officers_and_passes(library_app):
    simulation = Simulation(config(devices=24, rounds=2, synthetic_villages=30, run_tag="spread"),
                            FlaskTransport(library_app))
    figures = simulation.run()
    assert figures["ok"], summary_text(figures)
    assert (figures["lost_events"], figures["duplicated_events"]) == (0, 0)
    homes = {village for device in simulation.devices for village in device.home}
    assert len(homes) == 24  # one village each (every fifth officer also covers the next officer's)
    assert all(village.startswith("32.98.") for village in homes)
    # each phone holds only what its villages hold, not the crowd's every household
    held = [len(device.client.held()) for device in simulation.devices]
    assert max(held) < figures["households"] / 4
    assert figures["checks"]["geotag_flags"]["checked"] == figures["events"]["visits"]
