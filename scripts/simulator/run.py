"""One simulation: accounts set up, phones working round by round on a bounded pool of threads, then every check."""

from __future__ import annotations

import concurrent.futures
import os
import random
import resource
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from forms import validate_definition
from server.client import ACKED, PAGE_LIMIT, Interner, PulledHousehold, RetryPolicy, Session, Transport

from .checks import Check, HouseholdVerdict, Resolution, check_household, check_replicas, index_conflicts, new_checks
from .device import SimDevice, SimError
from .faults import CONNECTION_WAIT, Latencies
from .geo import Boundaries
from .villages import synthetic_villages

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE_VILLAGES = ROOT / "server" / "data" / "sample_villages.geojson"
LATE_S = 0.1  # a phone beginning this much after its arrival moment is counted late


@dataclass
class Config:
    devices: int = 20
    rounds: int = 3
    events_per_round: int = 4
    seed: int = 1
    concurrency: int = 16
    drop_rate: float = 0.1
    dup_rate: float = 0.2
    outside_rate: float = 0.15
    skewed_devices: int | None = None
    batch_max: int = 6
    pull_limit: int = 50
    gzip: bool = False
    admin_user: str | None = None
    admin_password: str | None = None
    accounts: dict[str, Any] | None = None
    import_villages: bool = True
    villages_file: Path = SAMPLE_VILLAGES
    # When above 0, this many synthetic villages (scripts/simulator/villages.py) instead of villages_file:
    # a crowd spread over hundreds of villages, as in the field.
    synthetic_villages: int = 0
    run_tag: str | None = None
    resolve_rate: float = 0.3
    reassign: int = 2
    # The oracle lets a device's write supersede its own earlier writes to a field (docs/design.md §2);
    # off until the server's merge (sync/) does so, so that the run checks the rule the server has.
    own_writes_supersede: bool = False
    # Seconds over which the phones' syncs of one stage arrive, each at its own random moment (uniform): a
    # village-hall peak, not a thousand sockets opened in one millisecond. 0: a burst, every phone at once.
    arrival_s: float = 0.0


def _rss_mb(key: str = "VmRSS") -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class Simulation:
    """Sets the accounts up, runs the phones round by round, and checks everything against the oracle.

    Phones are plain objects; at most ``config.concurrency`` of them work at once, each on a thread of a
    bounded pool. Pulled households are shared between phones that pulled the same state (``Interner``).
    """

    def __init__(self, config: Config, transport: Transport, log: Callable[[str], None] | None = None,
                 latencies: Latencies | None = None) -> None:
        self.config = config
        self.transport = transport
        self.log = log or (lambda message: None)
        self.run_tag = config.run_tag or f"{config.seed % 10000:04d}{os.urandom(3).hex()}"
        self.latencies = latencies or Latencies()
        self.interner = Interner()
        self.villages = (synthetic_villages(config.synthetic_villages) if config.synthetic_villages > 0
                         else orjson.loads(config.villages_file.read_bytes()))
        self.boundaries = Boundaries(self.villages)
        self.rng = random.Random(f"{config.seed}:{self.run_tag}")
        self.devices: list[SimDevice] = []
        self.supervisor: Session | None = None
        self.admin: Session | None = None
        self.village_names: dict[str, str] = dict(self.boundaries.names)
        self.server_boundaries: set[str] = set()
        self.reassigned: list[SimDevice] = []
        self.resolutions: list[Resolution] = []
        self.current_round = -1
        self.stages: dict[str, float] = {}
        self.stage_cpu: dict[str, float] = {}
        self.stage_rss: dict[str, float | None] = {}
        self.device_errors: list[str] = []
        self.checks: dict[str, Check] = {}
        self.figures: dict[str, Any] = {}
        self._households: set[str] = set()
        self._lock = threading.Lock()
        self._definitions: dict[str, Any] = {}
        self.definitions: dict[tuple[str, str], Any] = {}  # every phone's fetched definitions, shared
        self._parse_lock = threading.Lock()
        self._resolver_rng = random.Random(f"{config.seed}:{self.run_tag}:supervisor")
        # Phones that began later than their arrival moment because every thread was busy, and by how much.
        self.late_arrivals = 0
        self.most_late_s = 0.0
        self.most_busy = 0  # most phones working at one moment of spread arrivals
        self.late_for_thread = 0  # of the late ones, those that waited mostly for a free thread

    # shared state -------------------------------------------------------------------------------
    def register_household(self, household_id: str) -> None:
        with self._lock:
            self._households.add(household_id)

    def is_run_household(self, household_id: str) -> bool:
        return household_id in self._households  # a set lookup is atomic; adds take the lock

    def village_name(self, code: str) -> str:
        return self.village_names.get(code, code)

    def parsed_definition(self, digest: str, definition: dict[str, Any]) -> Any:
        """The form parsed once for every phone (parsing takes a good part of a second; a thousand phones
        starting at once would each parse it)."""
        with self._parse_lock:
            parsed = self._definitions.get(digest)
            if parsed is None:
                parsed = self._definitions[digest] = validate_definition(definition)
        return parsed

    def session(self, username: str, password: str) -> Session:
        """A login without a device (admin, supervisor) on the plain transport."""
        return Session(self.transport, username, password, app_version="kunjung-sim/2",
                       retry=RetryPolicy(attempts=8), observe=self.latencies.observe)

    def _stage(self, name: str, started: float, cpu: float) -> None:
        self.stages[name] = round(time.perf_counter() - started, 3)
        times = os.times()
        self.stage_cpu[name] = round(times.user + times.system - cpu, 3)
        self.stage_rss[name] = _rss_mb()

    def _parallel(self, work: Callable[[Any], Any], items: Iterable[Any], stage: str) -> list[Any]:
        started, times = time.perf_counter(), os.times()
        results: list[Any] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
            futures = {pool.submit(work, item): item for item in items}
            for future in concurrent.futures.as_completed(futures):
                try:
                    results.append(future.result())
                except Exception as error:  # noqa: BLE001 - one device's failure is reported, the others go on
                    with self._lock:
                        self.device_errors.append(f"{stage}: {futures[future]!r}: {error}")
        self._stage(stage, started, times.user + times.system)
        return results

    def _arriving(self, work: Callable[[SimDevice], Any], stage: str) -> list[Any]:
        """``work`` for every phone, each beginning at its arrival moment within ``config.arrival_s``.

        One dispatcher sleeps until each phone's moment and only then hands it to the pool, so a thread is
        taken by a phone that is working, never by one waiting for its moment: the threads in use are the
        phones syncing at that instant (the pool makes them as needed, ``config.concurrency`` at most). A
        phone that finds every thread busy begins late, and is counted; so is one handed over late because
        the simulator's own CPU was behind (on a loaded machine), and the figures say which it mostly was.
        """
        window = self.config.arrival_s
        if window <= 0:
            return self._parallel(work, self.devices, stage)
        draw = random.Random(f"{self.config.seed}:{self.run_tag}:arrivals:{stage}")
        plan = sorted(((draw.uniform(0, window), device) for device in self.devices), key=lambda item: item[0])
        began = time.perf_counter()
        busy = [0]

        def arrive(item: tuple[float, float, SimDevice]) -> Any:
            offset, handed, device = item
            now = time.perf_counter() - began
            late = now - offset
            with self._lock:
                busy[0] += 1
                self.most_busy = max(self.most_busy, busy[0])
                if late > LATE_S:
                    self.late_arrivals += 1
                    self.most_late_s = max(self.most_late_s, late)
                    # waiting in the pool's queue, or handed over late: the simulator's own CPU was behind
                    if now - handed > handed - offset:
                        self.late_for_thread += 1
            try:
                return work(device)
            finally:
                with self._lock:
                    busy[0] -= 1

        def dispatch() -> Iterator[tuple[float, float, SimDevice]]:
            for offset, device in plan:
                wait = offset - (time.perf_counter() - began)
                if wait > 0:
                    time.sleep(wait)
                yield offset, time.perf_counter() - began, device

        return self._parallel(arrive, dispatch(), stage)

    # setup --------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Import the boundaries and create the supervisor and officers, or take the given accounts."""
        started, times = time.perf_counter(), os.times()
        config = self.config
        codes = sorted(self.boundaries.shapes)
        if config.accounts is None:
            if not config.admin_user or not config.admin_password:
                raise SimError("give an admin's credentials (--admin-user, --admin-password) or --accounts")
            admin = self.admin = self.session(config.admin_user, config.admin_password)
            admin.login()
            if config.import_villages:
                report = admin.call("POST", "/api/v1/villages", payload=self.villages)
                self.log(f"villages: {report['imported']} imported, {report['updated']} updated, "
                         f"{report['unchanged']} unchanged, {report['refused']} refused")
            known = {v["code"]: v for v in admin.paged("/api/v1/villages")}
            codes = [code for code in codes if known.get(code, {}).get("has_boundary")]
            if not codes:
                raise SimError("no sample village has a boundary on the server; import them or drop --no-import")
            password = f"sim-{self.run_tag}-{self.rng.getrandbits(64):016x}"
            supervisor = f"sim-{self.run_tag}-sup"
            areas = sorted({code.rsplit(".", 1)[0] for code in codes})
            plan = [(supervisor, "supervisor", areas)]
            officers = []
            for index in range(config.devices):
                villages = [codes[index % len(codes)]]
                if index % 5 == 4 and len(codes) > 1:
                    villages.append(codes[(index + 1) % len(codes)])  # some officers cover two villages
                officers.append(f"sim-{self.run_tag}-o{index:04d}")
                plan.append((officers[-1], "officer", villages))

            def create(entry: tuple[str, str, list[str]]) -> None:
                username, role, villages = entry
                admin.request("POST", "/api/v1/users", expect=(201,),
                              payload={"username": username, "password": password, "role": role,
                                       "villages": villages})

            self._parallel(create, plan, "create_users")
            if self.device_errors:
                raise SimError("; ".join(self.device_errors[:5]))
            # The checks compare whole values: the supervisor is granted NIK and No. KK unmasked
            # (supervisors see them masked by default, README "Personal data").
            admin.request("PATCH", f"/api/v1/users/{supervisor}", expect=(200,), payload={"see_identifiers": True})
            accounts = {"supervisor": {"username": supervisor, "password": password},
                        "officers": [{"username": name, "password": password} for name in officers]}
        else:
            accounts = {**config.accounts, "officers": config.accounts["officers"][:config.devices]}
        self.supervisor = self.session(accounts["supervisor"]["username"], accounts["supervisor"]["password"])
        self.supervisor.login()
        self.server_boundaries = {village["code"] for village in self.supervisor.paged("/api/v1/villages")
                                  if village["has_boundary"]}
        officers = accounts["officers"]
        skewed = config.skewed_devices if config.skewed_devices is not None else max(1, len(officers) // 10)
        fast = set(self.rng.sample(range(len(officers)), min(skewed, len(officers))))
        self.devices = [SimDevice(self, index, account["username"], account["password"], index in fast)
                        for index, account in enumerate(officers)]
        self._stage("setup", started, times.user + times.system)

    def play(self) -> None:
        """Every phone logs in and pulls, then all work and sync round by round; from the second round on the
        supervisor resolves conflicts while the phones push."""
        self._arriving(lambda device: device.start(), "start")
        for number in range(self.config.rounds):
            self.current_round = number
            if number in (1, 2):
                self.reassign(lend=number == 1)
            resolver, done = None, threading.Event()
            if number > 0 and self.config.resolve_rate > 0:
                resolver = threading.Thread(target=self._resolve_while, args=(done,), name="supervisor")
                resolver.start()
            self._arriving(lambda device, n=number: device.play_round(n), f"round_{number}")
            done.set()
            if resolver is not None:
                resolver.join()
            self.log(f"round {number + 1}/{self.config.rounds} done")

    def reassign(self, *, lend: bool) -> None:
        """The admin lends some officers a neighbouring village (their next pulls bring its households),
        or takes it back (their next pulls say left_scope)."""
        if self.admin is None or not self.config.reassign:
            return
        if lend:
            codes = sorted(self.boundaries.shapes)
            self.reassigned = self.rng.sample(self.devices, min(self.config.reassign, len(self.devices)))
            for device in self.reassigned:
                extra = next((code for code in codes if code not in device.home), None)
                if extra is not None:
                    self.admin.call("PATCH", f"/api/v1/users/{device.username}",
                                    label="PATCH /api/v1/users/<username>",
                                    payload={"villages": [*device.home, extra]})
        else:
            for device in self.reassigned:
                self.admin.call("PATCH", f"/api/v1/users/{device.username}", label="PATCH /api/v1/users/<username>",
                                payload={"villages": device.home})

    def _resolve_while(self, done: threading.Event) -> None:
        """The supervisor at the village hall looks at the conflicts again and again while officers sync."""
        seen: set[str] = set()
        try:
            while True:
                self.resolve_some(seen)
                if done.wait(0.3):
                    return
        except Exception as error:  # noqa: BLE001 - reported as a failed run, the devices go on
            with self._lock:
                self.device_errors.append(f"supervisor: {error}")

    def resolve_some(self, seen: set[str]) -> None:
        """The supervisor picks a value for some open conflicts of this run it has not looked at yet."""
        assert self.supervisor is not None
        rng = self._resolver_rng
        for conflict in self._paged("/api/v1/conflicts"):
            if conflict["id"] in seen or not self.is_run_household(conflict["household_id"]):
                continue
            seen.add(conflict["id"])
            if rng.random() >= self.config.resolve_rate:
                continue
            heads = conflict["heads"]
            value = rng.choice([head["value"] for head in heads])
            payload = {"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "value": value,
                       "heads": sorted(head["stamp"] for head in heads)}
            # a reply lost on the village hall's connection: the same resolution is sent again
            for _ in range(2 if rng.random() < self.config.drop_rate else 1):
                self.supervisor.call("POST", f"/api/v1/conflicts/{conflict['id']}/resolve",
                                     label="POST /api/v1/conflicts/<id>/resolve", payload=payload)
            with self._lock:
                self.resolutions.append(Resolution(payload["id"], conflict["household_id"], conflict["field"],
                                                   value, payload["heads"], conflict["id"]))

    def final_pull(self) -> None:
        """Once nobody pushes any more, every phone syncs to the end."""
        self._arriving(lambda device: device.sync(), "final_pull")

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.setup()
        self.play()
        self.final_pull()
        report = self.verify()
        report["duration_s"] = round(time.perf_counter() - started, 3)
        return report

    # checking -----------------------------------------------------------------------------------
    def _paged(self, path: str, query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        assert self.supervisor is not None
        return self.supervisor.paged(path, query=query)

    def snapshot(self) -> dict[str, PulledHousehold]:
        """Every household in the supervisor's scope, pulled from scratch (shared with the phones' equal copies)."""
        assert self.supervisor is not None
        households: dict[str, PulledHousehold] = {}
        cursor = None
        while True:
            query: dict[str, Any] = {"limit": PAGE_LIMIT, **({"since": cursor} if cursor else {})}
            data = self.supervisor.call("GET", "/api/v1/sync/pull", query=query)
            for change in data["changes"]:
                if change["type"] == "household":
                    households[change["id"]] = self.interner.household(change)
            cursor = data["next"]
            if not data["has_more"]:
                return households

    def verify(self) -> dict[str, Any]:
        """Fetch what the server holds and check it household by household (nothing is kept of a household's
        history once it is checked), then each phone's replica, the geotag flags and the run itself."""
        started, times = time.perf_counter(), os.times()
        assert self.supervisor is not None
        supervisor = self.supervisor
        self.checks = checks = new_checks()
        events: dict[str, list[Any]] = defaultdict(list)
        for device in self.devices:
            for anomaly in device.client.anomalies:
                checks["no_lost_events"].fail(f"{device.device_id}: {anomaly}")
            for event in device.events:
                events[event.household_id].append((device, event))
        resolutions: dict[str, list[Resolution]] = defaultdict(list)
        for resolution in self.resolutions:
            resolutions[resolution.household_id].append(resolution)
        # every household this run made, even one whose events a phone no longer holds
        households = sorted(set(events) | set(resolutions) | self._households)
        snapshot = self.snapshot()
        run_households = set(households)
        listed = index_conflicts(checks["conflicts_match_oracle"],
                                 (c for c in self._paged("/api/v1/conflicts") if c["household_id"] in run_households))
        visits = self._paged("/api/v1/visits")
        verdicts: dict[str, HouseholdVerdict] = {}

        def one(household_id: str) -> None:
            body = supervisor.call("GET", f"/api/v1/households/{household_id}", label="GET /api/v1/households/<id>",
                                   expect=(200, 404))
            verdict = check_household(
                checks, household_id, events.get(household_id, []), resolutions.get(household_id, ()),
                supervisor.username, body if body and "history" in body else None, snapshot.get(household_id),
                listed.get(household_id, {}), own_writes_supersede=self.config.own_writes_supersede)
            with self._lock:
                verdicts[household_id] = verdict

        self._parallel(one, households, "verify_households")
        for household_id in sorted(set(households) - set(verdicts)):
            checks["no_lost_events"].fail(f"household {household_id} could not be checked")
        doubled_visits = self._check_visits(checks, visits)
        check_replicas(checks["replicas_match_server"], self.devices, snapshot)
        run = checks["run_completed"]
        run.count(len(self.devices))
        for error in [*self.device_errors, *self.latencies.server_errors]:
            run.fail(error)
        self._stage("verify", started, times.user + times.system)
        self.figures = self._figures(verdicts, listed, snapshot, doubled_visits)
        return self.figures

    def _check_visits(self, checks: dict[str, Check], visits: list[dict[str, Any]]) -> int:
        """Each accepted visit is listed once in /visits, flagged outside its village exactly when made there;
        returns how many are listed more than once."""
        doubled = 0
        listed = Counter(visit["id"] for visit in visits)
        flags = {visit["id"]: [f for f in visit.get("flags", []) if f.get("code") == "outside_village"]
                 for visit in visits}
        geotags = checks["geotag_flags"]
        for device in self.devices:
            for event in device.events:
                if event.kind != "visit" or event.state != ACKED:
                    continue
                if listed[event.id] > 1:
                    doubled += 1
                if listed[event.id] != 1:
                    checks["no_duplicated_events"].fail(f"visit {event.id} is listed {listed[event.id]} times in "
                                                        "/api/v1/visits")
                if event.village not in self.boundaries.shapes or event.village not in self.server_boundaries:
                    continue  # a village without a boundary: the server flags no_boundary, not a distance
                geotags.count()
                found = flags.get(event.id, [])
                if event.tag and not (found and found[0].get("distance_m", 0) > 0):
                    geotags.fail(f"visit {event.id} was made outside {event.village} but is not flagged")
                if not event.tag and found:
                    geotags.fail(f"visit {event.id} was made inside {event.village} but is flagged {found}")
        return doubled

    def _figures(self, verdicts: dict[str, HouseholdVerdict], listed: dict[str, dict[str, Any]],
                 snapshot: dict[str, PulledHousehold], doubled_visits: int) -> dict[str, Any]:
        totals: Counter[str] = Counter()
        for device in self.devices:
            totals.update(device.totals())
        rejected = {key.removeprefix("rejected_"): count for key, count in sorted(totals.items())
                    if key.startswith("rejected_")}
        accepted = sum(verdict.accepted for verdict in verdicts.values())
        resolutions = sum(verdict.resolutions for verdict in verdicts.values())
        times = os.times()
        # The phones' own stages (start, every round, the final pull): what the simulator spends per sync,
        # apart from setting up accounts and checking the server afterwards.
        syncing = [name for name in self.stage_cpu if name == "start" or name.startswith("round_")
                   or name == "final_pull"]
        sync_cpu = sum(self.stage_cpu[name] for name in syncing)
        syncs = len(self.devices) * len(syncing)
        requests = sum(stats["count"] for label, stats in self.latencies.summary().items()
                       if label != CONNECTION_WAIT)
        return {
            "ok": all(check.ok for check in self.checks.values()),
            "server": self.transport.name,
            "seed": self.config.seed,
            "run_tag": self.run_tag,
            "devices": len(self.devices),
            "concurrency": self.config.concurrency,
            "connections": getattr(self.transport, "max_connections", None),
            "skewed_devices": sum(1 for device in self.devices if device.corrected or device.fast),
            "rounds": self.config.rounds,
            "arrivals": {"mode": "spread" if self.config.arrival_s > 0 else "burst",
                         "window_s": self.config.arrival_s, "late": self.late_arrivals,
                         "most_late_s": round(self.most_late_s, 3), "most_busy": self.most_busy,
                         "late_for_thread": self.late_for_thread},
            "households": len(verdicts),
            "households_on_server": len(snapshot),
            "lost_events": sum(verdict.lost for verdict in verdicts.values()),
            "duplicated_events": sum(verdict.duplicated for verdict in verdicts.values()) + doubled_visits,
            "events": {
                "created": totals["created"], "visits": totals["created_visit"],
                "edits": totals["created_household_edit"], "accepted": accepted,
                "resolutions_accepted": resolutions, "sent": totals["events_sent"], "applied": totals["applied"],
                "duplicate": totals["duplicate"], "rejected": rejected, "restamped": totals["restamped"],
                "resent_known": totals["resent_known"], "repeated_in_batch": totals["repeated_in_batch"],
            },
            "push": {"requests": totals["push_requests"], "lost_requests": totals["lost_requests"],
                     "lost_replies": totals["lost_replies"], "errors": totals["push_failures"],
                     "gzip": self.config.gzip},
            "oracle": {"own_writes_supersede": self.config.own_writes_supersede},
            "pull": {"requests": totals["pull_pages"] + totals["pull_failures"], "pages": totals["pull_pages"],
                     "lost_replies": totals["lost_pull_replies"], "changes": totals["pull_changes"],
                     "left_scope": totals["left_scope"], "fresh_starts": totals["fresh_pulls"]},
            "conflicts": {"server": sum(len(by_field) for by_field in listed.values()),
                          "oracle": sum(verdict.oracle_conflicts for verdict in verdicts.values()),
                          "resolved_by_supervisor": len(self.resolutions)},
            "clock_corrections": totals["clock_corrections"],
            "reassigned_officers": len(self.reassigned),
            "stages_s": dict(self.stages),
            "simulator": {"cpu_s": round(times.user + times.system, 2),
                          "cpu_ms_per_device": round(1000 * (times.user + times.system) / max(1, len(self.devices)), 1),
                          "syncs": syncs, "sync_cpu_s": round(sync_cpu, 2),
                          "cpu_ms_per_sync": round(1000 * sync_cpu / max(1, syncs), 2),
                          "cpu_ms_per_request": round(1000 * sync_cpu / max(1, requests), 3),
                          "peak_rss_mb": _peak_rss_mb(),
                          "stage_cpu_s": dict(self.stage_cpu), "stage_rss_mb": dict(self.stage_rss),
                          "distinct_households_held": len(self.interner),
                          "allocator": os.environ.get("PYTHONMALLOC", "pymalloc")},
            "latency_ms": self.latencies.summary(),
            "checks": {name: check.as_dict() for name, check in self.checks.items()},
        }


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
