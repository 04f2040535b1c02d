"""The benchmark behind ``./scripts/bench``: kunjung's speed, memory and concurrency, each beside a baseline.

Every figure is measured against gunicorn started here on 127.0.0.1 with the embedded SQLite
store in a temporary directory, next to a baseline measured in the same run, and written as a
ratio to ``var/bench/results.json``. ``--quick`` lowers the scales so the test suite can run it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The checkout must be importable before these (scripts/ is not installed).
from forms.library import library_form  # noqa: E402  (the shipped form the bench pushes visits for)
from scripts import bench_web  # noqa: E402  (the web pages' figures)
from scripts.bench_media import media_figures, media_goals  # noqa: E402
from scripts.simulator.households import new_visit_answers  # noqa: E402
from scripts.simulator.villages import synthetic_villages  # noqa: E402
from server import create_app  # noqa: E402
from server.client import FlaskTransport, HttpTransport, RetryPolicy, Session  # noqa: E402
from server.security.passwords import passwords  # noqa: E402
from server.storage import CollectionSpec, open_store  # noqa: E402
from server.store import COLLECTIONS, get_store, raw_store  # noqa: E402
from server.users import create_user, update_user  # noqa: E402
from server.villages import import_villages, read_geojson_file  # noqa: E402

FORM_ID = "verval_keluarga"
FORM_VERSION = library_form(FORM_ID)["settings"]["version"]
VILLAGE = "32.04.05.2001"  # Cileunyi Kulon in server/data/sample_villages.geojson
VILLAGE_NAME = "Cileunyi Kulon"
BIG_VILLAGE = "32.04.05.2002"  # holds the households of the memory figure
INSIDE = (-6.93, 107.675)  # lat, lon inside Cileunyi Kulon
OUTSIDE = (-6.955, 107.676)  # about 1 km south of it: flagged, and its distance computed
SAMPLE_VILLAGES = ROOT / "server" / "data" / "sample_villages.geojson"
SIMULATOR = ROOT / "scripts" / "simulate_devices.py"
BATCH = 500
PASSWORD = "bench-" + uuid.uuid4().hex
SPECS = {spec.name: spec for spec in COLLECTIONS}
# Nothing the bench sends may be retried out of sight: a retry would hide a failure inside a timing.
ONCE = RetryPolicy(attempts=1)


@dataclass(frozen=True)
class Scale:
    push_batches: int  # 500-event batches pushed through HTTP
    small_store: int  # households stored for the small incremental pull
    large_store: int  # ... and for the large one
    village_households: int  # households of the officer's village (first sync)
    memory_households: int  # households pulled while memory is watched
    pull_repeats: int  # incremental pulls timed at each size (the median is kept)
    form_seconds: float  # how long each requests/s figure runs
    devices: int  # simulated devices syncing at once
    device_rounds: int  # offline periods each simulated device ends with a sync


FULL = Scale(push_batches=24, small_store=10_000, large_store=1_000_000, village_households=2_000,
             memory_households=100_000, pull_repeats=15, form_seconds=5.0, devices=200, device_rounds=3)
QUICK = Scale(push_batches=4, small_store=2_000, large_store=20_000, village_households=400,
              memory_households=3_000, pull_repeats=5, form_seconds=1.5, devices=20, device_rounds=2)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the workload: the shipped household verification form, a family of 4 from the simulator's generator ------

def household_answers(today: dt.date, serial: int) -> dict[str, Any]:
    """A complete verval_keluarga interview of a family of four, the same for the same ``serial`` (so runs
    compare), with its own member ids and NIKs, so that every household is distinct."""
    rng = random.Random(f"bench:{serial}")
    return new_visit_answers(rng, VILLAGE, VILLAGE_NAME, INSIDE, today,
                             lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4)), size=4, result="1")


class DeviceClock:
    """A device's HLC strings, a minute behind server time so that no event trips the skew check, and its
    count of events (its ``device_seq``)."""

    def __init__(self) -> None:
        self.counter = 0

    def __call__(self) -> str:
        self.counter += 1
        return f"{int(time.time() * 1000) - 60_000:013d}-{self.counter % 10_000:04d}"


def visit_event(device_id: str, clock: DeviceClock, serial: int, today: dt.date) -> dict[str, Any]:
    """One new household's verification visit; every 20th geotag lies outside the village."""
    lat, lon = OUTSIDE if serial % 20 == 19 else INSIDE
    now = dt.datetime.now(dt.UTC)
    return {"id": str(uuid.uuid4()), "type": "visit", "device_id": device_id, "hlc": clock(),
            "device_seq": clock.counter, "form_id": FORM_ID, "form_version": FORM_VERSION, "village": VILLAGE,
            "household_id": str(uuid.uuid4()),
            "geotag": {"lat": lat, "lon": lon, "accuracy_m": 6.5,
                       "captured_at": (now - dt.timedelta(minutes=20)).isoformat().replace("+00:00", "Z")},
            "started_at": (now - dt.timedelta(minutes=45)).isoformat().replace("+00:00", "Z"),
            "ended_at": (now - dt.timedelta(minutes=20)).isoformat().replace("+00:00", "Z"),
            "answers": household_answers(today, serial)}


# -- HTTP, through the device client's transport -------------------------------------------------------------

def connection(server: Server, *, keep_alive: bool = True) -> HttpTransport:
    """A transport to the server under test: one kept-alive connection, or a fresh one per request."""
    return HttpTransport(server.url, timeout=300, pool_size=1 if keep_alive else 0)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (proc(5)), 0 for one that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn as ./scripts/serve runs it (server/gunicorn_conf.py), on a store of our own."""

    def __init__(self, workdir: Path, db: Path, secret: str, workers: int = 2):
        self.workdir = workdir
        self.db = db
        self.secret = secret
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUNJUNG_")}
        env.update({"KUNJUNG_DATABASE_URL": f"sqlite:///{self.db}", "KUNJUNG_SECRET_KEY": self.secret,
                    "KUNJUNG_SECRET_KEY_FILE": str(self.workdir / "secret_key"),
                    "KUNJUNG_LOAD_LIBRARY_FORMS": "false", "KUNJUNG_LOG_LEVEL": "WARNING",
                    "KUNJUNG_HOST": "127.0.0.1", "KUNJUNG_PORT": str(self.port), "KUNJUNG_WORKERS": str(self.workers)})
        return env

    def __enter__(self) -> Server:
        self.logfile = logfile = (self.workdir / f"gunicorn-{self.port}.log").open("wb")
        self.process = subprocess.Popen(
            # The product's own options (server/gunicorn_conf.py, as scripts/serve runs it); only where it
            # listens, its log and a timeout long enough for the largest pull differ.
            [sys.executable, "-m", "gunicorn", "-c", "python:server.gunicorn_conf", "--timeout", "300",
             "--access-logfile", str(self.workdir / f"access-{self.port}.log")],
            cwd=ROOT, env=self.env(), stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        probe = HttpTransport(self.url, timeout=5, pool_size=0)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_tail()}")
            with contextlib.suppress(OSError):
                if probe.send("GET", "/health/ready").status == 200 and len(self.worker_pids()) == self.workers:
                    return self
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"gunicorn did not become ready: {self.log_tail()}")

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.logfile.close()

    def log_tail(self) -> str:
        return (self.workdir / f"gunicorn-{self.port}.log").read_text(errors="replace")[-3000:]

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        try:
            text = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the workers have used so far: what a figure cost the server, however
        busy the machine is with other work."""
        return sum(process_cpu_seconds(pid) for pid in self.worker_pids())

    def session(self, username: str, device_id: str | None = None, *, keep_alive: bool = True) -> Session:
        """A login of ``username`` (with a device id to push) on a connection of its own."""
        session = Session(connection(self, keep_alive=keep_alive), username, PASSWORD, device_id=device_id,
                          app_version="kunjung-bench", retry=ONCE)
        session.login()
        return session

    def login(self, username: str, device_id: str | None = None) -> str:
        return self.session(username, device_id, keep_alive=False).access_token or ""


# -- stores ------------------------------------------------------------------------------------------------------

def make_store(db: Path, secret: str, users: list[tuple[str, str, list[str]]], *, cheap_hashes: bool = False,
               villages: Path | None = None) -> None:
    """A store as a fresh install has it (schema, the shipped forms, the sample villages) plus ``users``.
    ``cheap_hashes`` keeps argon2 at 1 MiB for accounts made only to be logged into by a simulator;
    ``villages`` is a GeoJSON file of more boundaries to import."""
    config = {"DATABASE_URL": f"sqlite:///{db}", "SECRET_KEY": secret, "LOAD_LIBRARY_FORMS": True,
              "SECRET_KEY_FILE": str(db.parent / "secret_key"), "LOG_LEVEL": "WARNING"}
    if cheap_hashes:
        config.update(PASSWORD_HASH_MEMORY_KIB=1024, PASSWORD_HASH_TIME_COST=1)
    app = create_app(config)
    try:
        with app.app_context():
            store = get_store()
            report = import_villages(store, read_geojson_file(SAMPLE_VILLAGES))
            if report.counts.get("imported") != 6:
                raise RuntimeError(f"sample villages not imported: {report.counts}")
            if villages is not None:
                report = import_villages(store, read_geojson_file(villages))
                if report.counts.get("refused"):
                    raise RuntimeError(f"villages of {villages.name} refused: {report.counts}")
            for username, role, villages in users:
                create_user(store, passwords(), username, PASSWORD, role, villages, actor="bench")
                if role == "supervisor":  # the simulator's checks compare NIK and No. KK whole
                    update_user(store, passwords(), username, {"see_identifiers": True}, actor="bench")
    finally:
        raw_store(app).close()


@contextlib.contextmanager
def opened(db: Path) -> Iterator[Any]:
    """The store in ``db`` through the storage interface (never its tables)."""
    store = open_store(f"sqlite:///{db}", COLLECTIONS)
    try:
        yield store
    finally:
        store.close()


# -- the raw baseline: the same rows and indexes in plain tables of the bench's own -----------------------------

def raw_table(conn: sqlite3.Connection, spec: CollectionSpec, verb: str = "INSERT") -> str:
    """A plain table for a collection's documents: id, seq and body, a column per indexed field, and the
    collection's indexes; the INSERT statement for it. This is what any SQLite layout of the same rows
    with the same indexes must pay, without kunjung's code around it."""
    table = f"raw_{spec.name}"
    columns = ["id", "seq", "body", *(f"f_{name}" for name in spec.fields)]
    conn.execute(f"CREATE TABLE {table} (id TEXT PRIMARY KEY, seq INTEGER, body TEXT NOT NULL"
                 + "".join(f", f_{name}" for name in spec.fields) + ")")
    if spec.tracked:
        conn.execute(f"CREATE UNIQUE INDEX ix_{table}__seq ON {table}(seq)")
    for n, index in enumerate(spec.indexes):
        conn.execute(f"CREATE INDEX ix_{table}_{n} ON {table}("
                     + ",".join(name if name in ("id", "seq") else f"f_{name}" for name in index) + ")")
    # Names come from server.store.COLLECTIONS (checked identifiers); every value is a bound parameter.
    return f"{verb} INTO {table} ({','.join(columns)}) VALUES ({','.join('?' * len(columns))})"


def raw_row(spec: CollectionSpec, doc: dict[str, Any]) -> tuple[Any, ...]:
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return (doc["id"], doc.get("seq"), body, *(doc.get(name) for name in spec.fields))


def raw_connect(db: Path) -> sqlite3.Connection:
    # The pragmas the embedded store uses, so the raw baseline pays the same fsyncs.
    conn = sqlite3.connect(db, isolation_level=None, timeout=60)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class HouseholdTemplate:
    """A stored household (a 4-member verification visit folded) to be stored again under other ids and
    villages, so that a million can be made without building each one."""

    def __init__(self, doc: dict[str, Any]):
        self._doc = orjson.loads(orjson.dumps(doc))
        self._doc.pop("seq", None)  # the store numbers each one itself
        self.size = len(json.dumps(self._doc, ensure_ascii=False, separators=(",", ":")).encode())

    def doc(self, household_id: str, village: str) -> dict[str, Any]:
        """A copy under another id and village; its field states are shared (the store only encodes them)."""
        return {**self._doc, "id": household_id, "village": village,
                "record": {**self._doc["record"], "id": household_id, "village": village}}


def template_household(workdir: Path) -> HouseholdTemplate:
    """Push one benchmark visit through the app in-process (the device client's Flask transport) and keep
    the household it made."""
    # each caller its own store: a second call must not meet the first one's
    db = workdir / f"template-{uuid.uuid4().hex[:8]}.db"
    secret = uuid.uuid4().hex * 2
    make_store(db, secret, [("petugas", "officer", [VILLAGE])])
    app = create_app({"DATABASE_URL": f"sqlite:///{db}", "SECRET_KEY": secret, "LOAD_LIBRARY_FORMS": False,
                      "SECRET_KEY_FILE": str(workdir / "secret_key"), "LOG_LEVEL": "WARNING"})
    try:
        session = Session(FlaskTransport(app), "petugas", PASSWORD, device_id="template-phone", retry=ONCE)
        session.login()
        event = visit_event("template-phone", DeviceClock(), 0, dt.date.today())
        reply = session.call("POST", "/api/v1/sync/push", payload={"device_id": "template-phone", "events": [event]})
        if reply["results"][0]["status"] != "applied":
            raise RuntimeError(f"template visit not applied: {reply}")
        with app.app_context():
            return HouseholdTemplate(get_store().get("households", event["household_id"]))
    finally:
        raw_store(app).close()


def seed_households(db: Path, template: HouseholdTemplate, villages: Iterator[str], count: int) -> list[str]:
    """Insert ``count`` households through the storage interface (villages in turn from ``villages``), in
    units of work of 50,000, so that the store numbers them in its change sequence; returns the ids."""
    ids: list[str] = []
    with opened(db) as store:
        done = 0
        while done < count:
            chunk = min(50_000, count - done)
            with store.transaction() as tx:
                for _ in range(chunk):
                    household_id = str(uuid.uuid4())
                    ids.append(household_id)
                    tx.insert("households", template.doc(household_id, next(villages)))
            done += chunk
    return ids


def filler_villages(every: int, own: str) -> Iterator[str]:
    """Village codes for a big store: ``own`` once in ``every`` households, the rest over 200 other villages."""
    others = [f"32.{10 + k // 100:02d}.{k % 100 // 10 + 1:02d}.{2001 + k % 10}" for k in range(200)]
    n = 0
    while True:
        n += 1
        yield own if n % every == 0 else others[n % len(others)]


# -- figures -----------------------------------------------------------------------------------------------------

@dataclass
class Figure:
    name: str
    label: str
    value: float
    unit: str
    baseline: float
    baseline_label: str
    ratio: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "value": self.value, "unit": self.unit, "baseline": self.baseline,
                "baseline_label": self.baseline_label, "ratio": self.ratio, "details": self.details}


def push_figure(workdir: Path, scale: Scale, profile: Path | None) -> Figure:
    """Visits/s through gunicorn in 500-event batches vs sqlite3 executemany of the same rows."""
    db = workdir / "push.db"
    secret = uuid.uuid4().hex * 2
    # Four phones at once, each batch on a connection of its own (as a phone syncing at the village hall
    # would), so that the kernel spreads them over both workers rather than pinning a keep-alive to one.
    devices = [(f"petugas{n}", f"phone-bench-{n}") for n in range(4)]
    make_store(db, secret, [(user, "officer", [VILLAGE]) for user, _ in devices])
    today = dt.date.today()
    clocks = [DeviceClock() for _ in devices]
    serial = 0

    def batch(device: int, size: int = BATCH) -> bytes:
        nonlocal serial
        events = []
        for _ in range(size):
            events.append(visit_event(devices[device][1], clocks[device], serial, today))
            serial += 1
        return json.dumps({"device_id": devices[device][1], "events": events}).encode()

    # Bodies are made before the clock starts: the figure is the server's, not this client's JSON encoder.
    warmup = [batch(i % len(devices), 50) for i in range(8)]  # fresh connections: most likely both workers
    bodies = [batch(i % len(devices)) for i in range(scale.push_batches)]
    with Server(workdir, db, secret) as server:
        tokens = [server.login(user, device) for user, device in devices]
        for i, body in enumerate(warmup):
            _push(server, tokens[i % len(devices)], body)
        spy = _start_profiler(server, profile) if profile else None
        results: list[tuple[int, float]] = []
        lock = threading.Lock()

        def pusher(which: int) -> None:
            for index in range(which, len(bodies), len(devices)):
                began = time.perf_counter()
                applied, outside = _push(server, tokens[which], bodies[index])
                with lock:
                    results.append((applied, outside, time.perf_counter() - began))

        began, cpu_before = time.perf_counter(), server.cpu_seconds()
        threads = [threading.Thread(target=pusher, args=(i,)) for i in range(len(devices))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed, cpu = time.perf_counter() - began, server.cpu_seconds() - cpu_before
        if spy is not None:
            _stop_profiler(spy)
    pushed = BATCH * len(bodies)
    applied = sum(count for count, _, _ in results)
    if applied != pushed:
        raise RuntimeError(f"{pushed - applied} of {pushed} benchmark visits were not applied")
    outside = sum(flagged for _, flagged, _ in results)
    if outside != pushed // 20:  # every 20th geotag lies outside: the boundary check ran on every visit
        raise RuntimeError(f"{outside} visits flagged outside their village, expected {pushed // 20}")
    raw_rate, raw_details = raw_insert_rate(db, workdir)
    rate = pushed / elapsed
    latencies = sorted(seconds for _, _, seconds in results)
    return Figure("push", "push, 500-visit batches over HTTP", round(rate, 1), "visits/s", round(raw_rate, 1),
                  "sqlite3 executemany of the same rows", round(rate / raw_rate, 3), {
                      "visits": pushed, "outside_village_flags": outside, "seconds": round(elapsed, 2),
                      "concurrent_devices": len(devices),
                      # What a visit costs the workers (HTTP, checks, fold, store): the figure that does not
                      # depend on how busy the machine is; two cores give at most 2 / this many visits/s.
                      "server_cpu_ms_per_visit": round(1000 * cpu / pushed, 3),
                      "batch_seconds_median": round(statistics.median(latencies), 3),
                      "batch_seconds_max": round(latencies[-1], 3), "request_body_bytes": len(bodies[0]),
                      **raw_details})


def _push(server: Server, token: str, body: bytes) -> tuple[int, int]:
    """One push on a fresh connection; every visit must be applied. Returns (applied, flagged outside)."""
    reply = connection(server, keep_alive=False).send("POST", "/api/v1/sync/push", body=body, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    if reply.status != 200:
        raise RuntimeError(f"push answered {reply.status}: {reply.body[:500]!r}")
    results = reply.json()["results"]
    statuses = {result["status"] for result in results}
    if statuses != {"applied"}:
        raise RuntimeError(f"push not applied: {sorted(statuses)}: {reply.body[:1000]!r}")
    outside = sum(1 for result in results for flag in result.get("flags", []) if flag["code"] == "outside_village")
    return len(results), outside


def raw_insert_rate(db: Path, workdir: Path) -> tuple[float, dict[str, Any]]:
    """The rows the push stored (its events, the households they changed and the visits, read through the
    storage interface) inserted again with executemany into plain tables with the same indexes, 500 events
    with their households and visits per transaction, JSON encoding included."""
    with opened(db) as store:
        # read by id (a declared read), inserted again in the order the push stored them
        events = sorted(store.iterate("events", order_by="id"), key=lambda doc: doc["seq"])
        households = {doc["id"]: doc for doc in store.iterate("households")}
        visits = {doc["id"]: doc for doc in store.iterate("visits")}
    conn = raw_connect(workdir / "raw.db")
    event_spec, household_spec, visit_spec = SPECS["events"], SPECS["households"], SPECS["visits"]
    event_sql = raw_table(conn, event_spec)
    household_sql = raw_table(conn, household_spec, "INSERT OR REPLACE")
    visit_sql = raw_table(conn, visit_spec)
    began = time.perf_counter()
    for start in range(0, len(events), BATCH):
        chunk = events[start:start + BATCH]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(event_sql, [raw_row(event_spec, doc) for doc in chunk])
        conn.executemany(household_sql, [raw_row(household_spec, households[doc["household_id"]]) for doc in chunk])
        conn.executemany(visit_sql, [raw_row(visit_spec, visits[doc["id"]]) for doc in chunk if doc["id"] in visits])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - began
    conn.close()
    sample = events[:50]

    def size(spec: CollectionSpec, docs: list[dict[str, Any]]) -> int:
        return sum(len(raw_row(spec, doc)[2]) for doc in docs) // max(1, len(docs))

    return len(events) / elapsed, {
        "raw_seconds": round(elapsed, 3), "raw_rows": ["events", "households", "visits"],
        "event_doc_bytes": size(event_spec, sample),
        "household_doc_bytes": size(household_spec, [households[doc["household_id"]] for doc in sample]),
        "visit_doc_bytes": size(visit_spec, [visits[doc["id"]] for doc in sample if doc["id"] in visits])}


def first_sync(session: Session, limit: int = 500, on_page: Callable[[], None] | None = None
               ) -> tuple[int, str, int]:
    """Pull pages until has_more is false; returns (household changes, cursor, pages)."""
    cursor, households = "", 0
    for pages in range(1, 100_001):
        query: dict[str, Any] = {"limit": limit, **({"since": cursor} if cursor else {})}
        body = session.call("GET", "/api/v1/sync/pull", query=query)
        households += sum(1 for change in body["changes"] if change["type"] == "household")
        cursor = body["next"]
        if on_page:
            on_page()
        if not body["has_more"]:
            return households, cursor, pages
    raise RuntimeError("first sync did not finish in 100,000 pages")


def raw_read_rate(db: Path, village: str, workdir: Path) -> tuple[float, int]:
    """The village's households (read through the storage interface) copied as the store encodes them into a
    plain table indexed by (village, seq), then read back in seq order and parsed: the raw read."""
    raw = workdir / f"raw-read-{uuid.uuid4().hex[:8]}.db"
    conn = raw_connect(raw)
    conn.execute("CREATE TABLE raw_households (id TEXT PRIMARY KEY, seq INTEGER, village TEXT, body TEXT)")
    conn.execute("CREATE INDEX ix_raw_households ON raw_households(village, seq)")
    with opened(db) as store:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO raw_households VALUES (?, ?, ?, ?)", (
            (doc["id"], doc["seq"], doc["village"], orjson.dumps(doc).decode())
            for doc in store.iterate("households", {"village": village}, order_by="seq")))
        conn.execute("COMMIT")
    conn.close()
    conn = sqlite3.connect(raw)
    began = time.perf_counter()
    count = 0
    for (body,) in conn.execute("SELECT body FROM raw_households WHERE village = ? ORDER BY seq", (village,)):
        json.loads(body)
        count += 1
    elapsed = time.perf_counter() - began
    conn.close()
    raw.unlink()
    return count / elapsed, count


@dataclass
class PullStore:
    size: int
    first_sync_rate: float
    first_sync_households: int
    raw_rate: float
    incremental_ms: list[float]
    seed_seconds: float
    memory: dict[str, Any] | None = None


def pull_store(workdir: Path, template: HouseholdTemplate, size: int, scale: Scale, *,
               memory_households: int = 0) -> PullStore:
    """A store of ``size`` households: the officer's village holds ``scale.village_households`` of them, the last
    500 arrive after the officer's first sync, and with ``memory_households`` another village holds that many
    for a first sync watched for memory."""
    db = workdir / f"pull-{size}.db"
    secret = uuid.uuid4().hex * 2
    make_store(db, secret, [("petugas", "officer", [VILLAGE]), ("petugas-besar", "officer", [BIG_VILLAGE])])
    began = time.perf_counter()
    if memory_households:
        seed_households(db, template, iter(lambda: BIG_VILLAGE, None), memory_households)
    before = size - BATCH - memory_households
    seed_households(db, template, filler_villages(max(1, before // scale.village_households), VILLAGE), before)
    seed_seconds = time.perf_counter() - began
    log(f"seeded {size - BATCH:,} households in {seed_seconds:.1f} s ({template.size:,} bytes each)")
    raw_rate, _ = raw_read_rate(db, VILLAGE, workdir)
    with Server(workdir, db, secret) as server:
        session = server.session("petugas", "phone-pull")
        began = time.perf_counter()
        households, cursor, _ = first_sync(session)
        rate = households / (time.perf_counter() - began)
        seed_households(db, template, iter(lambda: VILLAGE, None), BATCH)
        timings = []
        for _ in range(scale.pull_repeats):
            started = time.perf_counter()
            body = session.call("GET", "/api/v1/sync/pull", query={"limit": BATCH, "since": cursor})
            timings.append((time.perf_counter() - started) * 1000)
            got = sum(1 for change in body["changes"] if change["type"] == "household")
            if got != BATCH or body["has_more"]:
                raise RuntimeError(f"incremental pull returned {got} households (has_more={body['has_more']})")
        memory = memory_figure(server, memory_households) if memory_households else None
    return PullStore(size, rate, households, raw_rate, timings, seed_seconds, memory)


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for {pid}")


def memory_figure(server: Server, households: int) -> dict[str, Any]:
    """Worker RSS before, and peak during, a first sync of ``households`` households."""
    pids = server.worker_pids()
    session = server.session("petugas-besar", "phone-memory")
    session.call("GET", "/api/v1/sync/pull", query={"limit": 10})  # warm both code paths before the baseline
    before = {pid: _status_kib(pid, "VmRSS") for pid in pids}
    reset = True
    for pid in pids:
        try:
            # "5" resets the peak RSS (VmHWM) to the current RSS (proc(5), clear_refs).
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            reset = False
    sampled = dict(before)
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            for pid in pids:
                with contextlib.suppress(OSError, RuntimeError):
                    sampled[pid] = max(sampled[pid], _status_kib(pid, "VmRSS"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    pulled, _, pages = first_sync(session)
    elapsed = time.perf_counter() - began
    stop.set()
    sampler.join()
    if pulled != households:
        raise RuntimeError(f"memory first sync pulled {pulled} of {households} households")
    peaks = {pid: max(sampled[pid], _status_kib(pid, "VmHWM") if reset else 0) for pid in pids}
    growth = {pid: peaks[pid] - before[pid] for pid in pids}
    worst = max(pids, key=lambda pid: growth[pid])  # the worker that served the sync
    return {"households": households, "pages": pages, "seconds": round(elapsed, 2),
            "records_per_s": round(households / elapsed, 1),
            "rss_before_mb": round(before[worst] / 1024, 1),
            "peak_mb": round(peaks[worst] / 1024, 1),
            "growth_mb": round(growth[worst] / 1024, 1),
            "growth_all_workers_mb": round(sum(growth.values()) / 1024, 1),
            "peak_source": "VmHWM after clear_refs" if reset else "VmRSS sampled every 20 ms"}


def rate_for(server: Server, path: str, headers: dict[str, str], seconds: float, expect: int,
             clients: int = 4) -> float:
    """Requests/s from ``clients`` keep-alive connections for ``seconds``."""
    counts = [0] * clients
    failures: list[str] = []
    deadline = time.perf_counter() + seconds

    def run(which: int) -> None:
        transport = connection(server)
        while time.perf_counter() < deadline:
            reply = transport.send("GET", path, headers=headers)
            if reply.status != expect:
                failures.append(f"{reply.status}: {reply.body[:200]!r}")
                return
            counts[which] += 1
        transport.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"GET {path} answered {failures[0]}")
    return sum(counts) / (time.perf_counter() - began)


def form_figures(workdir: Path, scale: Scale) -> list[Figure]:
    """If-None-Match revalidation of the form list and of a definition, against /health/live."""
    db = workdir / "forms.db"
    secret = uuid.uuid4().hex * 2
    make_store(db, secret, [("petugas", "officer", [VILLAGE])])
    figures = []
    with Server(workdir, db, secret) as server:
        token = server.login("petugas", "phone-forms")
        auth = {"Authorization": f"Bearer {token}"}
        live = rate_for(server, "/health/live", {}, scale.form_seconds, 200)
        transport = connection(server)
        for name, label, path in (
                ("form_list_304", "form list, If-None-Match -> 304", "/api/v1/forms"),
                ("form_definition_304", "form definition, If-None-Match -> 304",
                 f"/api/v1/forms/{FORM_ID}/versions/{FORM_VERSION}")):
            reply = transport.send("GET", path, headers=auth)
            if reply.status != 200 or "etag" not in reply.headers:
                raise RuntimeError(f"GET {path} answered {reply.status} without an ETag")
            rate = rate_for(server, path, {**auth, "If-None-Match": reply.headers["etag"]}, scale.form_seconds, 304)
            figures.append(Figure(name, label, round(rate, 1), "requests/s", round(live, 1),
                                  "GET /health/live", round(rate / live, 3), {"clients": 4}))
        transport.close()
    return figures


# A village-hall peak: phones arriving at this rate (1,000 in a minute) rather than in one millisecond.
ARRIVALS_PER_S = 1000 / 60
# Officers per village in the crowd: a thousand officers cover 400 synthetic villages (one village each,
# every fifth a second one), as the field's hundreds; never fewer than the six sample villages.
OFFICERS_PER_VILLAGE = 2.5


def crowd_villages(devices: int) -> int:
    """How many synthetic villages the concurrency figure's officers are spread over."""
    return max(6, round(devices / OFFICERS_PER_VILLAGE))


def simulate(server: Server, workdir: Path, accounts: dict[str, Any], scale: Scale, tag: str,
             arrival_s: float = 0.0, villages: Path = SAMPLE_VILLAGES) -> dict[str, Any]:
    """One run of scripts/simulate_devices.py (its bad day: lost requests and replies, resent batches, a fast
    clock) with ``accounts`` made beforehand, every device at once or arriving over ``arrival_s``; returns its
    JSON figures."""
    out, given = workdir / f"devices-{tag}.json", workdir / f"accounts-{tag}.json"
    given.write_text(json.dumps(accounts))
    devices = len(accounts["officers"])
    # A thread for each device: in a burst every phone syncs at once; spread, a phone takes a thread only
    # from its arrival moment until its sync ends, so each arrives when it arrives however slow the server is
    # (a smaller pool would hold phones back and hide the queue they would meet). No request gives up
    # early; requests go over a bounded set of connections (its default), bounding memory.
    threads = devices
    command = [sys.executable, str(SIMULATOR), "--url", server.url, "--devices", str(devices),
               "--concurrency", str(threads), "--rounds", str(scale.device_rounds), "--seed", "7",
               "--arrival-window", str(arrival_s), "--villages-file", str(villages),
               "--timeout", "1800", "--run-tag", tag, "--accounts", str(given), "--quiet", "--json", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=max(1800, 12 * devices),
                          check=False)
    if not out.exists():
        raise RuntimeError(f"simulator exited {done.returncode} without figures: {done.stderr[-2000:]}")
    return json.loads(out.read_text())


def _latency(report: dict[str, Any], label: str) -> dict[str, float]:
    stats = report["latency_ms"].get(label)
    if not stats:
        raise RuntimeError(f"simulator measured no {label} requests")
    return stats


def arrival_window(devices: int, asked: float | None) -> float:
    """The seconds over which the crowd's syncs arrive: as asked, else a village-hall peak of
    ``ARRIVALS_PER_S`` phones a second (1,000 phones in 60 s)."""
    return asked if asked is not None else round(devices / ARRIVALS_PER_S, 1)


def crowd_load(devices: int, arrival_s: float) -> str:
    """What the crowd's load was, as the figures say it."""
    return f"{devices} devices at once" if arrival_s <= 0 else f"{devices} devices over {arrival_s:g} s"


def concurrency_figures(workdir: Path, scale: Scale, arrival_s: float = 0.0) -> list[Figure]:
    """p50/p95/p99 of push and pull requests with ``scale.devices`` phones syncing at once (``arrival_s`` 0) or
    arriving over ``arrival_s`` seconds, beside one phone syncing alone on the same server; and the
    simulator's count of lost and duplicated events, and what the run cost the server and the simulator."""
    if not SIMULATOR.exists():
        raise RuntimeError(f"{SIMULATOR.relative_to(ROOT)} is missing")
    db = workdir / "devices.db"
    secret = uuid.uuid4().hex * 2
    # The crowd's officers spread over many synthetic villages, a few to a village, as in the field.
    villages = workdir / "crowd-villages.geojson"
    villages.write_bytes(orjson.dumps(synthetic_villages(crowd_villages(scale.devices))))
    codes = [feature["properties"]["code"] for feature in json.loads(villages.read_text())["features"]]
    # As the simulator would make them (one village each, every fifth officer two), but beforehand: the
    # figures are about syncing, not about 200 argon2 hashes made at once.
    officers = [(f"bench-o{n:04d}", "officer", [codes[n % len(codes)]] + (
        [codes[(n + 1) % len(codes)]] if n % 5 == 4 else [])) for n in range(scale.devices)]
    supervisor = ("bench-sup", "supervisor", sorted({code.rsplit(".", 1)[0] for code in codes}))
    make_store(db, secret, [supervisor, ("bench-alone", "officer", [codes[0]]), *officers], cheap_hashes=True,
               villages=villages)

    def accounts(names: list[str]) -> dict[str, Any]:
        return {"supervisor": {"username": supervisor[0], "password": PASSWORD},
                "officers": [{"username": name, "password": PASSWORD} for name in names]}

    with Server(workdir, db, secret) as server:
        alone = simulate(server, workdir, accounts(["bench-alone"]), scale, "alone", villages=villages)
        began, server_cpu = time.perf_counter(), server.cpu_seconds()
        crowd = simulate(server, workdir, accounts([name for name, _, _ in officers]), scale, "crowd", arrival_s,
                         villages)
        elapsed, server_cpu = time.perf_counter() - began, server.cpu_seconds() - server_cpu
        load = round(os.getloadavg()[0], 2)
    checks = crowd["checks"]
    lost, duplicated = crowd["lost_events"], crowd["duplicated_events"]
    failed = sorted(name for name, check in checks.items() if not check["ok"])
    figures = []
    for name, label, what in (("concurrency_push", "POST /api/v1/sync/push", "push"),
                              ("concurrency_pull", "GET /api/v1/sync/pull", "pull")):
        busy, quiet = _latency(crowd, label), _latency(alone, label)
        figures.append(Figure(
            name, f"{what} latency p95, {crowd_load(scale.devices, arrival_s)}", busy["p95_ms"], "ms",
            quiet["p95_ms"],
            "same, 1 device alone", round(busy["p95_ms"] / quiet["p95_ms"], 3) if quiet["p95_ms"] else 0.0, {
                "devices": scale.devices, "requests": busy["count"], "p50_ms": busy["p50_ms"],
                "p95_ms": busy["p95_ms"], "p99_ms": busy["p99_ms"], "max_ms": busy["max_ms"],
                "alone_p50_ms": quiet["p50_ms"], "alone_p99_ms": quiet["p99_ms"], "lost": lost,
                "duplicated": duplicated, "checks_failed": failed, "events": crowd["events"],
                "connections": crowd["connections"],
                "push": crowd["push"], "rounds": scale.device_rounds, "seconds": round(elapsed, 1),
                "simulator": crowd["simulator"], "stages_s": crowd["stages_s"],
                "arrivals": crowd["arrivals"], "load": crowd_load(scale.devices, arrival_s),
                "villages": len(codes),
                "simulator_cpu_ms_per_sync": crowd["simulator"]["cpu_ms_per_sync"],
                "server_cpu_s": round(server_cpu, 1), "simulator_cpu_s": crowd["simulator"]["cpu_s"],
                "simulator_cpu_ms_per_device": crowd["simulator"]["cpu_ms_per_device"],
                "load_average_1m_after": load,
                "all_requests_ms": crowd["latency_ms"]}))
    return figures


# -- profiling (optional) ----------------------------------------------------------------------------------------

def _start_profiler(server: Server, out: Path) -> list[subprocess.Popen[bytes]]:
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        raise RuntimeError("--profile needs py-spy in the venv (.venv/bin/pip install py-spy)")
    out.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
                              "--output", str(out / f"push-worker-{pid}.txt"), "--nonblocking"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for pid in server.worker_pids()]


def _stop_profiler(spies: list[subprocess.Popen[bytes]]) -> None:
    for process in spies:
        process.send_signal(signal.SIGINT)
    for process in spies:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


# -- the report --------------------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory = round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024, 1)
    return {"cores": os.cpu_count(), "cpu": model, "memory_gib": memory, "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "platform": platform.platform(),
            "load_average_1m": round(os.getloadavg()[0], 2)}


# The goals of issue 13, for 2 cores and the embedded store.
PUSH_RATE_GOAL = 2000  # visits/s
PUSH_RAW_GOAL = 0.5  # of the raw insert of the same rows
FIRST_SYNC_RAW_GOAL = 0.5  # of the raw read of the same rows
P99_GOAL_MS = 2000  # push and pull, every device syncing at once


def relay_figure(workdir: Path, quick: bool) -> Figure:
    """A village hall's round carrying its events upstream vs a direct push of them (scripts/bench_relay.py)."""
    from bench_relay import relay_figure as measure_relay

    got = measure_relay(workdir, quick=quick)
    return Figure("relay_round", f"relay round of {got['events']:,} events, hall to central", got["value"],
                  "events/s", got["baseline"], "direct push of the same events", got["ratio"], got)


def relay_files_figure(workdir: Path, quick: bool) -> Figure:
    """A hall's round carrying visits with a photo each, vs the phone pushing and uploading them to central."""
    from bench_relay import relay_files_figure as measure_files

    got = measure_files(workdir, quick=quick)
    return Figure("relay_files", f"relay round of {got['files']} visits with a photo, hall to central", got["value"],
                  "files/s", got["baseline"], "direct push and tus upload of the same", got["ratio"], got)


def hall_rush_figure(workdir: Path, quick: bool) -> Figure:
    """A hall's officers syncing with it at once after a day offline (scripts/bench_relay.py)."""
    from bench_relay import hall_rush_figure as measure_rush

    got = measure_rush(workdir, quick=quick)
    return Figure("relay_hall_rush", f"{got['officers']} officers at one hall at once, {got['events']:,} events",
                  got["p99_ms"], "ms p99", got["p50_ms"], "p50 of the same rush", round(got["p99_ms"] / max(
                      got["p50_ms"], 0.1), 3), got)


def relay_goals(figures: dict[str, Figure]) -> list[dict[str, Any]]:
    """Issue 18's goal for a hall full of officers: nothing lost, p99 under the bound."""
    rush = figures.get("relay_hall_rush")
    if not rush:
        return []
    lost, p99 = rush.details["lost"], rush.details["p99_ms"]
    return [{"goal": f"hall rush ({rush.details['officers']} officers at once)",
             "target": f"0 lost, p99 < {P99_GOAL_MS:,} ms",
             "reached": f"{lost} lost, p99 {p99:,.0f} ms ({p99 / P99_GOAL_MS:.2f}x the bound)",
             "met": lost == 0 and p99 < P99_GOAL_MS}]


def goals(figures: dict[str, Figure]) -> list[dict[str, Any]]:
    """The goals of issue 13 (for 2 cores and the embedded store), each with what was reached."""
    out = []

    def goal(name: str, target: str, reached: str, met: bool | None) -> None:
        out.append({"goal": name, "target": target, "reached": reached, "met": met})

    push = figures.get("push")
    if push:
        goal("push throughput", f">= {PUSH_RATE_GOAL} visits/s",
             f"{push.value:,.0f} visits/s ({push.value / PUSH_RATE_GOAL:.2f}x the goal)", push.value >= PUSH_RATE_GOAL)
        goal("push vs raw insert", f">= {PUSH_RAW_GOAL} of raw",
             f"{push.ratio:.3f} of raw ({push.ratio / PUSH_RAW_GOAL:.2f}x the goal)", push.ratio >= PUSH_RAW_GOAL)
        # Two cores give at most 2,000 visits/s when a visit costs the workers 1 ms of CPU.
        budget = 2 * 1000 / PUSH_RATE_GOAL
        cpu = push.details["server_cpu_ms_per_visit"]
        goal("push CPU per visit", f"<= {budget:.1f} ms (2 cores at {PUSH_RATE_GOAL}/s)",
             f"{cpu:.3f} ms ({budget / cpu:.2f}x the budget)" if cpu else "not measured", 0 < cpu <= budget)
    first = figures.get("pull_first_sync")
    if first:
        goal(f"first sync vs raw read ({first.details['households']:,} households)",
             f">= {FIRST_SYNC_RAW_GOAL} of raw",
             f"{first.ratio:.3f} of raw ({first.ratio / FIRST_SYNC_RAW_GOAL:.2f}x the goal)",
             first.ratio >= FIRST_SYNC_RAW_GOAL)
    incremental = figures.get("pull_incremental")
    if incremental:
        goal("incremental pull vs store size", "large store within 1.5x of small",
             f"{incremental.ratio:.2f}x", incremental.ratio <= 1.5)
    memory = figures.get("first_sync_memory")
    if memory:
        households = memory.details["households"]
        goal(f"first-sync memory growth ({households:,} households)", "< 100 MB",
             f"{memory.value:.1f} MB", memory.value < 100)
    concurrency = figures.get("concurrency_push")
    if concurrency:
        devices = concurrency.details["devices"]
        lost, duplicated = concurrency.details["lost"], concurrency.details["duplicated"]
        goal(f"lost / duplicated events ({devices} devices)", "0 / 0",
             f"{lost} / {duplicated}", lost == 0 and duplicated == 0)
        for name in ("concurrency_push", "concurrency_pull"):
            figure = figures.get(name)
            if figure:
                p99 = figure.details["p99_ms"]
                goal(f"{name.removeprefix('concurrency_')} p99 ({figure.details.get('load', devices)})",
                     f"< {P99_GOAL_MS:,} ms",
                     f"{p99:,.0f} ms ({p99 / P99_GOAL_MS:.2f}x the bound)", p99 < P99_GOAL_MS)
    relay = figures.get("relay_round")
    if relay:
        goal("relay round vs direct push", ">= 0.5 of direct", f"{relay.ratio:.3f} of direct", relay.ratio >= 0.5)
    return out


def table(figures: dict[str, Figure], goal_rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    box = info["machine"]
    lines = [f"kunjung bench ({info['mode']}) on {box['cores']} cores, {box['cpu']} (load average "
             f"{box['load_average_1m_before']} before, {box['load_average_1m']} after)", ""]
    header = f"{'figure':<44} {'value':>14}  {'unit':<20} {'baseline':>14}  {'baseline is':<38} {'ratio':>7}"
    lines += [header, "-" * len(header)]
    for figure in figures.values():
        lines.append(f"{figure.label:<44} {figure.value:>14,.1f}  {figure.unit:<20} {figure.baseline:>14,.1f}  "
                     f"{figure.baseline_label:<38} {figure.ratio:>7.3f}")
    push = figures.get("push")
    if push:
        lines.append(f"  (push: {push.details['server_cpu_ms_per_visit']:.3f} ms of worker CPU per visit; "
                     f"raw insert of {', '.join(push.details['raw_rows'])})")
    for name, problem in info.get("errors", {}).items():
        lines.append(f"{name:<44} {'NOT MEASURED':>14}  {problem}")
    crowd = [figures[name] for name in ("concurrency_push", "concurrency_pull") if name in figures]
    if crowd:
        lines += ["", f"per request with {crowd[0].details['load']} (ms):"
                  f"{'p50':>10} {'p95':>9} {'p99':>9}   1 device alone: p50 / p95"]
        for figure in crowd:
            d = figure.details
            lines.append(f"  {figure.name.removeprefix('concurrency_'):<41}{d['p50_ms']:>10,.1f} {d['p95_ms']:>9,.1f} "
                         f"{d['p99_ms']:>9,.1f}   {d['alone_p50_ms']:,.1f} / {figure.baseline:,.1f}")
        lines.append(f"  lost events {crowd[0].details['lost']}, duplicated events {crowd[0].details['duplicated']}, "
                     f"simulator checks failed: {', '.join(crowd[0].details['checks_failed']) or 'none'}")
        lines.append(f"  (the simulator keeps {crowd[0].details['connections']} requests in flight; the others wait "
                     "for a connection, and the wait counts in their latency)")
        d = crowd[0].details
        arrivals = d["arrivals"]
        spread = (f", uniform arrivals, at most {arrivals.get('most_busy', '?')} phones syncing at one moment, "
                  f"{arrivals['late']} phone-stages began over 0.1 s late, "
                  f"{arrivals.get('late_for_thread', '?')} of them for want of a simulator thread"
                  ) if arrivals["mode"] == "spread" else ", a burst"
        lines.append(f"  (load: {d['load']} in {d.get('villages', 6)} villages{spread}; CPU: server workers "
                     f"{d['server_cpu_s']:,.1f} s, simulator {d['simulator_cpu_s']:,.1f} s = "
                     f"{d['simulator_cpu_ms_per_device']:,.0f} ms per device, "
                     f"{d.get('simulator_cpu_ms_per_sync', 0):,.1f} ms per phone's sync; "
                     f"load average {d['load_average_1m_after']} at the end; {d['seconds']:,.0f} s)")
    lines += ["", "goals (2 cores, embedded store):"]
    for row in goal_rows:
        verdict = "met" if row["met"] else "NOT MET"
        lines.append(f"  [{verdict:>7}] {row['goal']:<48} target {row['target']:<34} reached {row['reached']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    scale = QUICK if args.quick else FULL
    if args.devices:
        scale = Scale(**{**scale.__dict__, "devices": args.devices})
    only = set(args.only.split(",")) if args.only else None
    figures: dict[str, Figure] = {}
    errors: dict[str, str] = {}
    started = time.time()
    load_before = os.getloadavg()[0]
    if load_before > (os.cpu_count() or 1):
        log(f"the machine is busy (load average {load_before:.1f}): figures will be lower than on a quiet one")
    with tempfile.TemporaryDirectory(prefix="kunjung-bench-") as tmp:
        workdir = Path(tmp)

        def measure(name: str, step: Callable[[], Figure | list[Figure]]) -> None:
            if only and name not in only:
                return
            log(f"measuring {name}")
            began = time.perf_counter()
            try:
                made = step()
            except Exception as exc:  # noqa: BLE001 (one figure failing must not hide the others)
                errors[name] = f"{type(exc).__name__}: {exc}"[:500]
                log(f"{name} failed: {errors[name]}")
                return
            for figure in made if isinstance(made, list) else [made]:
                figures[figure.name] = figure
            log(f"{name} done in {time.perf_counter() - began:.1f} s")

        measure("push", lambda: push_figure(workdir, scale, args.profile))
        template: list[HouseholdTemplate] = []

        def pulls() -> list[Figure]:
            template.append(template_household(workdir))
            small = pull_store(workdir, template[0], scale.small_store, scale)
            large = pull_store(workdir, template[0], scale.large_store, scale,
                               memory_households=scale.memory_households)
            small_ms, large_ms = statistics.median(small.incremental_ms), statistics.median(large.incremental_ms)
            made = [
                Figure("pull_first_sync", f"first sync of a village ({small.first_sync_households:,} households)",
                       round(small.first_sync_rate, 1), "households/s", round(small.raw_rate, 1),
                       "sqlite3 read + json.loads of the rows", round(small.first_sync_rate / small.raw_rate, 3),
                       {"households": small.first_sync_households, "store_households": small.size,
                        "same_village_in_large_store_per_s": round(large.first_sync_rate, 1),
                        "household_doc_bytes": template[0].size}),
                Figure("pull_incremental", f"500-record incremental pull at {large.size:,} stored",
                       round(large_ms, 2), "ms (median)", round(small_ms, 2), f"same at {small.size:,} stored",
                       round(large_ms / small_ms, 3),
                       {"small_store": small.size, "large_store": large.size, "repeats": scale.pull_repeats,
                        "small_ms": [round(t, 2) for t in small.incremental_ms],
                        "large_ms": [round(t, 2) for t in large.incremental_ms],
                        "large_seed_seconds": round(large.seed_seconds, 1)}),
            ]
            if large.memory:
                memory = large.memory
                made.append(Figure("first_sync_memory", f"worker memory, first sync of {memory['households']:,}",
                                   memory["growth_mb"], "MB growth (peak)", memory["rss_before_mb"],
                                   "MB RSS before the sync", round(memory["growth_mb"] / memory["rss_before_mb"], 3),
                                   memory))
            return made

        measure("pull", pulls)
        measure("forms", lambda: form_figures(workdir, scale))
        measure("concurrency", lambda: concurrency_figures(
            workdir, scale, 0.0 if args.burst else arrival_window(scale.devices, args.arrival_window)))
        measure("media", lambda: media_figures(workdir, args.quick))
        measure("openrosa", lambda: __import__("scripts.bench_openrosa").bench_openrosa.openrosa_figures(
            workdir, scale))  # ODK Collect's figures live in scripts/bench_openrosa.py
        measure("web", lambda: bench_web.web_figures(workdir, quick=args.quick, bench=sys.modules[__name__]))
        measure("relay", lambda: relay_figure(workdir, args.quick))
        measure("relay", lambda: relay_files_figure(workdir, args.quick))
        measure("relay", lambda: hall_rush_figure(workdir, args.quick))
    goal_rows = (goals(figures) + media_goals(figures) + bench_web.web_goals(figures) + relay_goals(figures)
                 + __import__("scripts.bench_openrosa").bench_openrosa.openrosa_goals(figures))
    info = {"mode": "quick" if args.quick else "full", "machine": {**machine(), "load_average_1m_before": round(
        load_before, 2)}, "errors": errors}
    print(table(figures, goal_rows, info))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "mode": info["mode"], "machine": info["machine"],
        "started_at": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1), "scale": scale.__dict__,
        "figures": {name: figure.to_json() for name, figure in figures.items()},
        "goals": goal_rows, "errors": errors}, indent=2) + "\n")
    print(f"\nwritten to {out}")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small scales (about a minute); the test suite runs it")
    parser.add_argument("--output", default=str(ROOT / "var" / "bench" / "results.json"),
                        help="where the JSON results go (default var/bench/results.json)")
    parser.add_argument("--only", help="comma-separated subset of: push, pull, forms, concurrency, media, openrosa, "
                                       "web, relay")
    parser.add_argument("--devices", type=int, help="simulated devices for the concurrency figure")
    parser.add_argument("--arrival-window", type=float, metavar="SECONDS",
                        help=f"the concurrency figure's devices sync over this many seconds, each at a uniformly "
                             f"drawn moment (default: {ARRIVALS_PER_S:g} phones a second, 1,000 phones in "
                             f"{1000 / ARRIVALS_PER_S:g} s)")
    parser.add_argument("--burst", action="store_true",
                        help="the concurrency figure's devices all sync at once, each on a simulator thread")
    parser.add_argument("--profile", type=Path, help="record the push with py-spy into this directory")
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
