"""A village's mobile link as the simulator plays it (lost requests and replies), and the latencies it measured."""

from __future__ import annotations

import math
import random
import threading
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

from server.client import Reply, Transport

PUSH_PATH = "/api/v1/sync/push"
PULL_PATH = "/api/v1/sync/pull"
CONNECTION_WAIT = "(wait for a free connection)"


class RequestLost(ConnectionResetError):
    """The simulated link dropped the request before it reached the server."""


class ReplyLost(TimeoutError):
    """The server answered, but the simulated link dropped the reply: the device sees a timeout."""


class FaultyTransport:
    """One phone's link: forwards every request to ``inner``, but loses a share of pushes (on the way out
    or, twice as often, their replies on the way back) and of pull replies (half the rate).

    Each phone has its own, with its own random source, so that a seed repeats where faults fall.
    """

    def __init__(self, inner: Transport, rng: random.Random, drop_rate: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.rng = rng
        self.drop_rate = drop_rate
        self.stats: Counter[str] = Counter()

    def send(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: bytes | None = None,
             headers: Mapping[str, str] | None = None) -> Reply:
        fate = None
        if path == PUSH_PATH and self.rng.random() < self.drop_rate:
            fate = self.rng.choice(("request", "reply", "reply"))
        elif path == PULL_PATH and self.rng.random() < self.drop_rate / 2:
            fate = "pull_reply"
        if fate == "request":
            self.stats["lost_requests"] += 1
            raise RequestLost("request lost on the simulated link")
        reply = self.inner.send(method, path, query=query, body=body, headers=headers)
        if fate == "reply":
            self.stats["lost_replies"] += 1
            raise ReplyLost(f"reply ({reply.status}) lost on the simulated link")
        if fate == "pull_reply":
            self.stats["lost_pull_replies"] += 1
            raise ReplyLost(f"pull reply ({reply.status}) lost on the simulated link")
        return reply


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class Latencies:
    """Durations of answered requests by endpoint label, from every thread (a ``Session`` observer)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[str, list[float]] = defaultdict(list)
        self.server_errors: list[str] = []

    def observe(self, label: str, seconds: float, status: int | None) -> None:
        if status is None:
            return  # no answer came: nothing the server's speed can be judged by
        with self._lock:
            self._seconds[label].append(seconds)
            if status >= 500 and len(self.server_errors) < 200:
                self.server_errors.append(f"{label} answered {status}")

    def observe_wait(self, seconds: float) -> None:
        """A request's wait for one of the simulator's connections (an ``HttpTransport`` observer); the
        wait is also inside the request's own duration."""
        with self._lock:
            self._seconds[CONNECTION_WAIT].append(seconds)

    def summary(self) -> dict[str, dict[str, float]]:
        with self._lock:
            items = {label: sorted(values) for label, values in self._seconds.items()}
        return {label: {"count": len(values), "p50_ms": _ms(percentile(values, 50)),
                        "p95_ms": _ms(percentile(values, 95)), "p99_ms": _ms(percentile(values, 99)),
                        "max_ms": _ms(values[-1])}
                for label, values in sorted(items.items())}
