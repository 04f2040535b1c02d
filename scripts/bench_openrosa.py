"""ODK Collect's figures for ``./scripts/bench``: OpenRosa submissions beside the JSON push of the same visits,
and the household entity list with 5,000 households in scope (``--only openrosa``)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from forms.definition import validate_definition
from forms.xform import submission_xml
from scripts.bench import (
    FORM_ID,
    FORM_VERSION,
    VILLAGE,
    DeviceClock,
    Figure,
    Scale,
    Server,
    connection,
    make_store,
    rate_for,
    seed_households,
    template_household,
    visit_event,
)
from server import create_app
from server.app_credentials import issue_credential
from server.security.scope import Scope
from server.store import get_store, raw_store

ENTITY_HOUSEHOLDS = 5_000
BOUNDARY = "kunjung-bench-boundary"
OPENROSA = {"X-OpenRosa-Version": "1.0"}


def _definition() -> Any:
    root = Path(__file__).resolve().parent.parent
    return validate_definition(json.loads((root / "forms" / "library" / "household_verification.json").read_text()))


def _credentials(db: Path, secret: str, pairs: list[tuple[str, str]]) -> list[str]:
    app = create_app({"DATABASE_URL": f"sqlite:///{db}", "SECRET_KEY": secret, "LOAD_LIBRARY_FORMS": False,
                      "SECRET_KEY_FILE": str(db.parent / "secret_key"), "LOG_LEVEL": "WARNING"})
    try:
        with app.app_context():
            return [issue_credential(get_store(), user, device, actor="bench", actor_scope=Scope("admin", ()))
                    for user, device in pairs]
    finally:
        raw_store(app).close()


def _multipart(xml: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"xml_submission_file\"; "
            f"filename=\"submission.xml\"\r\nContent-Type: text/xml\r\n\r\n").encode() + xml + \
        f"\r\n--{BOUNDARY}--\r\n".encode()


def _timed(server: Server, bodies: list[list[tuple[str, bytes, dict[str, str], int]]]) -> float:
    """Requests/s with one thread per device, each request on a fresh connection (as a phone sends)."""
    failures: list[str] = []

    def send(queue: list[tuple[str, bytes, dict[str, str], int]]) -> None:
        for path, body, headers, expect in queue:
            reply = connection(server, keep_alive=False).send("POST", path, body=body, headers=headers)
            if reply.status != expect:
                failures.append(f"{path.split('/')[-1]} answered {reply.status}: {reply.body[:300]!r}")
                return

    began = time.perf_counter()
    threads = [threading.Thread(target=send, args=(queue,)) for queue in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(failures[0])
    return sum(len(queue) for queue in bodies) / (time.perf_counter() - began)


def openrosa_figures(workdir: Path, scale: Scale) -> list[Figure]:
    workdir = workdir / "openrosa"  # stores of its own: other sections make the same file names
    workdir.mkdir(exist_ok=True)
    definition = _definition()
    visits = max(40, scale.push_batches * 50)
    db = workdir / "openrosa.db"
    secret = uuid.uuid4().hex * 2
    devices = [(f"petugas{n}", f"phone-odk-{n}") for n in range(4)]
    make_store(db, secret, [(user, "officer", [VILLAGE]) for user, _ in devices])
    tokens = _credentials(db, secret, devices)
    today = dt.date.today()
    clocks = [DeviceClock() for _ in devices]
    # The same visits both ways: each JSON event and the XML Collect would send for it (new ids each way).
    events = [visit_event(devices[n % 4][1], clocks[n % 4], n, today) for n in range(visits)]
    figures = []
    with Server(workdir, db, secret) as server:
        json_tokens = [server.login(user, device) for user, device in devices]
        json_queues: list[list[Any]] = [[] for _ in devices]
        xml_queues: list[list[Any]] = [[] for _ in devices]
        for n, event in enumerate(events):
            which = n % 4
            body = json.dumps({"device_id": devices[which][1], "events": [event]}).encode()
            json_queues[which].append(("/api/v1/sync/push", body, {
                "Content-Type": "application/json", "Authorization": f"Bearer {json_tokens[which]}"}, 200))
            xml = submission_xml(definition, event["answers"], instance_id=f"uuid:{uuid.uuid4()}",
                                 household_id=str(uuid.uuid4()))
            xml_queues[which].append((f"/key/{tokens[which]}/submission", _multipart(xml), {
                **OPENROSA, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}, 201))
        warm = _timed(server, [queue[:3] for queue in xml_queues]) + _timed(server, [q[:3] for q in json_queues])
        # CPU the workers spent per visit, beside the rates: on a busy machine the rates swing, the CPU less
        spent = server.cpu_seconds()
        json_rate = _timed(server, [queue[3:] for queue in json_queues])
        json_cpu, spent = server.cpu_seconds() - spent, server.cpu_seconds()
        xml_rate = _timed(server, [queue[3:] for queue in xml_queues])
        xml_cpu = server.cpu_seconds() - spent
        timed = visits - 12
        figures.append(Figure("openrosa_submission", "OpenRosa submissions, one visit per POST (household form)",
                              round(xml_rate, 1), "visits/s", round(json_rate, 1),
                              "JSON push of the same visits, one per request", round(xml_rate / json_rate, 3),
                              {"visits": timed, "devices": len(devices), "warm_rate": round(warm, 1),
                               "cpu_ms_per_visit": round(xml_cpu / timed * 1000, 2),
                               "json_cpu_ms_per_visit": round(json_cpu / timed * 1000, 2),
                               "cpu_ratio": round(json_cpu / xml_cpu, 3) if xml_cpu else None,
                               "goal": ">= 0.5 of the JSON push", "goal_met": xml_rate >= 0.5 * json_rate,
                               "form": f"{FORM_ID} {FORM_VERSION}"}))

    # the entity list with 5,000 households in the officer's village
    db = workdir / "entities.db"
    make_store(db, secret, [("petugas", "officer", [VILLAGE])])
    token = _credentials(db, secret, [("petugas", "phone-odk")])[0]
    seed_households(db, template_household(workdir), iter(lambda: VILLAGE, None), ENTITY_HOUSEHOLDS)
    with Server(workdir, db, secret) as server:
        transport = connection(server)
        base = f"/key/{token}/forms/{FORM_ID}/versions/{FORM_VERSION}"
        began = time.perf_counter()
        first = transport.send("GET", f"{base}/manifest", headers=OPENROSA)
        manifest_ms = (time.perf_counter() - began) * 1000
        again = transport.send("GET", f"{base}/manifest", headers=OPENROSA)
        if first.status != 200 or first.body != again.body:
            raise RuntimeError("the manifest changed although nothing did")
        began = time.perf_counter()
        csv = transport.send("GET", f"{base}/attachments/households.csv")
        csv_ms = (time.perf_counter() - began) * 1000
        lines = csv.body.count(b"\n")
        if csv.status != 200 or lines != ENTITY_HOUSEHOLDS + 1:
            raise RuntimeError(f"households.csv answered {csv.status} with {lines} lines")
        transport.close()
        etag = csv.headers["etag"]
        reuse = rate_for(server, f"{base}/attachments/households.csv", {"If-None-Match": etag},
                         scale.form_seconds, 304, clients=2)
        form_list = rate_for(server, f"/key/{token}/formList", OPENROSA, scale.form_seconds, 200, clients=2)
    figures.append(Figure("openrosa_entity_list", f"households.csv, {ENTITY_HOUSEHOLDS:,} households, streamed",
                          round(csv_ms, 1), "ms", round(manifest_ms, 1), "manifest (md5 of the same list)",
                          round(csv_ms / manifest_ms, 3),
                          {"csv_bytes": len(csv.body), "csv_304_per_s": round(reuse, 1),
                           "form_list_per_s": round(form_list, 1), "manifest_md5_unchanged": True}))
    return figures


def openrosa_goals(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 16's speed goal: OpenRosa submissions at half the JSON push of the same visits or better."""
    submission = figures.get("openrosa_submission")
    if not submission:
        return []
    details = submission.details
    return [{"goal": "OpenRosa submissions vs JSON push (one visit per request)", "target": ">= 0.5 of the JSON push",
             "reached": f"{submission.ratio:.2f} of the push's rate; workers' CPU {details['cpu_ms_per_visit']} ms "
                        f"per visit vs {details['json_cpu_ms_per_visit']} ms ({details['cpu_ratio']})",
             "met": submission.ratio >= 0.5}]
