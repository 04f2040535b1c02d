"""A simulated officer's phone: works offline with a fast or true clock, then syncs through ``server.client``."""

from __future__ import annotations

import bisect
import datetime as dt
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from server.client import ACKED, DeviceClient, Outgoing, RetryPolicy, Session, iso_ms

from .faults import FaultyTransport
from .households import edit_writes, new_visit_answers, revisit_answers

if TYPE_CHECKING:
    from .run import Simulation

HOUSEHOLD_FORM = "verval_keluarga"
WIB = dt.timezone(dt.timedelta(hours=7))  # Kabupaten Bandung keeps Western Indonesian Time
HOUR_MS = 3_600_000
HOT_HOUSEHOLDS = 3  # the first few households of a village, which many officers visit: conflicts
# A push survives this many lost requests or replies in a row; with a 10 % loss rate that is never reached.
PUSH_ATTEMPTS = 12


class SimError(RuntimeError):
    """The simulation could not go on (setup refused, a request failed every retry)."""


class SimDevice:
    """An officer's phone: its own random source, clock (an hour fast on some), link, and a ``DeviceClient``."""

    def __init__(self, sim: Simulation, index: int, username: str, password: str, fast: bool) -> None:
        config = sim.config
        self.sim = sim
        self.index = index
        self.username = username
        self.rng = random.Random(f"{config.seed}:{sim.run_tag}:device:{index}")
        self.device_id = f"sim-{sim.run_tag}-d{index:04d}"
        self.fast = fast
        self._fast_ms = HOUR_MS if fast else 0
        self.link = FaultyTransport(sim.transport, random.Random(f"{config.seed}:{sim.run_tag}:link:{index}"),
                                    config.drop_rate)
        session = Session(self.link, username, password, device_id=self.device_id, app_version="kunjung-sim/2",
                          retry=RetryPolicy(attempts=PUSH_ATTEMPTS), observe=sim.latencies.observe,
                          gzip_requests=config.gzip)
        self.client = DeviceClient(session, wall_ms=self._phone_ms, definitions=sim.definitions,
                                   pull_limit=config.pull_limit, interner=sim.interner, tz=WIB, new_id=self._new_id)
        self.villages: list[str] = []  # as the server last said; an admin may add or take one away
        self.home: list[str] = []  # the villages at login, where this officer makes visits and edits
        self.definition: Any = None
        self.form_version = ""
        self.stats: Counter[str] = Counter()

    # the phone ----------------------------------------------------------------------------------
    def _phone_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self._fast_ms

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    @property
    def events(self) -> list[Outgoing]:
        return self.client.events

    @property
    def corrected(self) -> bool:
        """Whether a clock_skew verdict set this phone's clock right."""
        return self.client.stats["clock_corrections"] > 0

    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.client.wall_ms() / 1000, dt.UTC).date()

    # start --------------------------------------------------------------------------------------
    def start(self) -> None:
        """Log in with the device id, fetch the household form, make the first full pull."""
        user = self.client.login()
        self.villages = self.home = sorted(user["villages"])
        if not self.villages:
            raise SimError(f"{self.username} has no village")
        listed = next((form for form in self.client.forms() if form["form_id"] == HOUSEHOLD_FORM), None)
        if listed is None:
            raise SimError(f"{HOUSEHOLD_FORM} is not published to {self.username}; load the library forms")
        definition = self.client.definition(HOUSEHOLD_FORM, listed["version"])
        self.definition = self.sim.parsed_definition(listed["hash"], definition)
        self.form_version = listed["version"]
        self.client.pull()

    # what the phone holds -----------------------------------------------------------------------
    def visible(self) -> list[str]:
        """This run's households the phone holds, in its own villages."""
        return sorted(hid for hid in self.client.held()
                      if self.sim.is_run_household(hid) and self.client.village_of(hid) in self.home)

    # offline work -------------------------------------------------------------------------------
    def play_round(self, number: int) -> None:
        """Work offline for a while, then sync: push everything pending, pull everything new."""
        # What the phone holds changes offline only by its own new visits: the list is made once a round
        # (a thousand phones each sorting their village's households before every action cost a CPU-minute).
        targets = self.visible()
        for action in range(self.sim.config.events_per_round):
            roll = self.rng.random()
            if not targets or (number == 0 and (action == 0 or roll < 0.7)) or roll < 0.25:
                bisect.insort(targets, self.new_visit())
            else:
                hot = targets[:HOT_HOUSEHOLDS]
                target = self.rng.choice(hot if self.rng.random() < 0.6 else targets)
                if roll < 0.45:
                    self.revisit(target)
                else:
                    self.edit(target)
        self.sync()

    def _geotag(self, village: str, outside: bool) -> tuple[tuple[float, float], dict[str, Any]]:
        point = self.sim.boundaries.point(self.rng, village, outside=outside)
        geotag = {"lat": point[0], "lon": point[1], "accuracy_m": round(self.rng.uniform(3, 25), 1),
                  "captured_at": self.client.now_iso()}
        if self.rng.random() < 0.5:
            geotag["altitude_m"] = round(self.rng.uniform(650, 900), 1)
        return point, geotag

    def new_visit(self) -> str:
        """Visit a household nobody has visited yet; returns its id."""
        village = self.rng.choice(self.home)
        household_id = self._new_id()
        self.sim.register_household(household_id)
        outside = self.rng.random() < self.sim.config.outside_rate
        point, geotag = self._geotag(village, outside)
        answers = new_visit_answers(self.rng, village, self.sim.village_name(village), point, self.today(),
                                    self._new_id)
        self._visit(household_id, village, answers, geotag, outside, None)
        return household_id

    def revisit(self, household_id: str) -> None:
        village = self.client.village_of(household_id)
        outside = self.rng.random() < self.sim.config.outside_rate
        point, geotag = self._geotag(village, outside)
        record = self.client.record(household_id)
        answers = revisit_answers(self.rng, record, village, self.sim.village_name(village), point, self.today(),
                                  self._new_id)
        self._visit(household_id, village, answers, geotag, outside, record)

    def _visit(self, household_id: str, village: str, answers: dict[str, Any], geotag: dict[str, Any],
               outside: bool, record: Any) -> None:
        ended = self.client.wall_ms()
        self.client.visit(definition=self.definition, form_id=HOUSEHOLD_FORM, form_version=self.form_version,
                          village=village, household_id=household_id, answers=answers, geotag=geotag,
                          started_at=iso_ms(ended - self.rng.randint(8, 45) * 60_000, WIB),
                          ended_at=iso_ms(ended, WIB), record=record, tag=outside)

    def edit(self, household_id: str) -> None:
        record = self.client.record(household_id)
        village = self.client.village_of(household_id)
        writes = edit_writes(self.rng, record, self.sim.village_name(village))
        self.client.edit(household_id=household_id, village=village, writes=writes, record=record)

    # sync ---------------------------------------------------------------------------------------
    def sync(self) -> None:
        """Push, then pull; the app first asks which villages its officer has now."""
        self.villages = sorted(self.client.me()["villages"])
        report = self.client.push(self._batches)
        if report.unsent:
            raise SimError(f"{self.device_id}: {report.unsent} events still unsent after "
                           f"{self.client.max_push_passes} passes")
        self.client.pull()

    def _batches(self, pending: list[Outgoing]) -> Iterator[list[Outgoing]]:
        """Pending events in random order and batch sizes; some batches resend events the server has (a
        phone that lost track of what it sent), a few carry one event twice."""
        config = self.sim.config
        self.rng.shuffle(pending)
        while pending:
            size = self.rng.randint(1, config.batch_max)
            batch, pending = pending[:size], pending[size:]
            acked = [event for event in self.client.events if event.state == ACKED]
            if acked and self.rng.random() < config.dup_rate:
                for again in self.rng.sample(acked, min(len(acked), self.rng.randint(1, 2))):
                    batch.insert(self.rng.randint(0, len(batch)), again)
                    self.stats["resent_known"] += 1
            if self.rng.random() < config.dup_rate / 4:
                batch.append(self.rng.choice(batch))
                self.stats["repeated_in_batch"] += 1
            yield batch

    def totals(self) -> Counter[str]:
        """Every count this phone kept: its client's, its link's and its own."""
        return self.client.stats + self.link.stats + self.stats
