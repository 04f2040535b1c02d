"""One login to a kunjung server: the token pair, refresh and logout, and requests retried with backoff."""

from __future__ import annotations

import gzip
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .transport import TRANSPORT_ERRORS, Reply, Transport

# Statuses that say "try again later" rather than "this request is wrong".
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# The largest page a list gives (docs/protocol.md "Lists").
PAGE_LIMIT = 1000

Observer = Callable[[str, float, "int | None"], None]


class ClientError(RuntimeError):
    """A request was answered with a status the caller did not expect; ``code`` is kunjung's error code."""

    def __init__(self, label: str, reply: Reply | None, message: str | None = None) -> None:
        self.label = label
        self.reply = reply
        self.status = reply.status if reply is not None else None
        self.code = reply.code if reply is not None else None
        detail = message or (f"answered {reply.status}: {reply.body[:300]!r}" if reply is not None else "failed")
        super().__init__(f"{label} {detail}")


class Unreachable(ClientError):
    """Every attempt of a request failed in transport or with a retryable status; the last reply, if any."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a request is tried again: exponential backoff with full jitter.

    Attempt ``n`` (from 0) waits a random time up to ``min(cap_s, base_s * 2**n)``, or the server's
    ``Retry-After`` when it gives one (bounded by ``cap_s``).
    """

    attempts: int = 8
    base_s: float = 0.05
    cap_s: float = 2.0

    def delay(self, attempt: int, reply: Reply | None, draw: Callable[[], float]) -> float:
        if reply is not None:
            after = reply.headers.get("retry-after", "")
            if after.isdigit():
                return min(self.cap_s, float(after))
        return draw() * min(self.cap_s, self.base_s * 2**attempt)


class Session:
    """One login: its access and refresh tokens, and JSON requests that refresh an expired access token.

    Give ``password`` to log in (and to log in again when the refresh token was spent or revoked), or
    ``tokens`` (``{"access_token", "refresh_token"}``) made elsewhere. ``observe(label, seconds, status)`` is
    called after every attempt that reached the transport (status None when no answer came), for latency
    figures. ``gzip_requests`` compresses request bodies of 1 KiB or more. Safe to share between threads.
    """

    def __init__(self, transport: Transport, username: str, password: str | None = None, *,
                 device_id: str | None = None, tokens: Mapping[str, str] | None = None,
                 app_version: str = "kunjung-client/1", retry: RetryPolicy | None = None,
                 observe: Observer | None = None, gzip_requests: bool = False,
                 sleep: Callable[[float], None] = time.sleep, jitter: Callable[[], float] | None = None) -> None:
        self.transport = transport
        self.username = username
        self.password = password
        self.device_id = device_id
        self.app_version = app_version
        self.retry = retry or RetryPolicy()
        self.observe = observe
        self.gzip_requests = gzip_requests
        self.access_token: str | None = (tokens or {}).get("access_token")
        self.refresh_token: str | None = (tokens or {}).get("refresh_token")
        self.user: dict[str, Any] = {}
        self._sleep = sleep
        self._jitter = jitter or random.SystemRandom().random
        self._lock = threading.Lock()

    # -- the token pair ---------------------------------------------------------------------
    def login(self) -> dict[str, Any]:
        """Log in (with this session's device id, if any); returns the user (username, role, villages)."""
        if self.password is None:
            raise ClientError("POST /api/v1/auth/login", None, "needs a password")
        payload: dict[str, Any] = {"username": self.username, "password": self.password,
                                   "app_version": self.app_version}
        if self.device_id:
            payload["device_id"] = self.device_id
        reply = self.request("POST", "/api/v1/auth/login", payload=payload, authorize=False)
        data = reply.json()
        with self._lock:
            self.access_token, self.refresh_token = data["access_token"], data["refresh_token"]
            self.user = data["user"]
        return self.user

    def refresh(self, used: str | None = None) -> None:
        """Trade the refresh token for a new pair (it is spent); log in again if it no longer works.

        ``used`` is the access token a failed request carried: when another thread has refreshed since,
        nothing is done.
        """
        with self._lock:
            if used is not None and self.access_token != used:
                return
            refresh_token = self.refresh_token
        try:
            reply = self.request("POST", "/api/v1/auth/refresh", token=refresh_token, authorize=False)
        except ClientError as error:
            if error.status != 401 or self.password is None:
                raise
            self.login()
            return
        data = reply.json()
        with self._lock:
            self.access_token, self.refresh_token = data["access_token"], data["refresh_token"]

    def logout(self) -> None:
        """End this login on the server: its access and refresh tokens stop working."""
        if self.access_token is None:
            return
        self.request("POST", "/api/v1/auth/logout", expect=(204,))
        with self._lock:
            self.access_token = self.refresh_token = None

    # -- requests ---------------------------------------------------------------------------
    def encode(self, payload: Any) -> tuple[bytes, dict[str, str]]:
        """The body and content headers for a JSON payload (gzipped when this session says so)."""
        body = orjson.dumps(payload)
        return self.wrap(body)

    def wrap(self, body: bytes) -> tuple[bytes, dict[str, str]]:
        """Content headers for an already encoded JSON body, compressing it when this session says so."""
        headers = {"Content-Type": "application/json"}
        if self.gzip_requests and len(body) >= 1024:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        return body, headers

    def attempt(self, method: str, path: str, *, label: str | None = None, query: Mapping[str, Any] | None = None,
                body: bytes | None = None, headers: Mapping[str, str] | None = None, token: str | None = None,
                authorize: bool = True) -> Reply:
        """One try, no retry: the reply, or a transport error raised. ``observe`` hears of it either way."""
        label = label or f"{method} {path}"
        sent = {"Accept": "application/json", **(headers or {})}
        bearer = token if token is not None else (self.access_token if authorize else None)
        if bearer:
            sent["Authorization"] = f"Bearer {bearer}"
        started = time.perf_counter()
        status = None
        try:
            reply = self.transport.send(method, path, query=query, body=body, headers=sent)
            status = reply.status
            return reply
        finally:
            if self.observe is not None:
                self.observe(label, time.perf_counter() - started, status)

    def request(self, method: str, path: str, *, label: str | None = None, query: Mapping[str, Any] | None = None,
                payload: Any = None, body: bytes | None = None, headers: Mapping[str, str] | None = None,
                expect: Iterable[int] = (200,), token: str | None = None, authorize: bool = True,
                on_failure: Callable[[Reply | None, BaseException | None], None] | None = None) -> Reply:
        """A request answered with one of ``expect``, tried again after transport errors and retryable
        statuses (429, 5xx) with backoff, and once after a refresh when the access token has expired.

        Raises :class:`ClientError` for any other status and :class:`Unreachable` when every attempt failed.
        ``on_failure(reply, error)`` hears of each failed attempt (a push uses it to know that events were
        sent without an answer).
        """
        label = label or f"{method} {path}"
        expected = tuple(expect)
        if payload is not None:
            body, content = self.encode(payload)
            headers = {**content, **(headers or {})}
        refreshed = False
        last: Reply | None = None
        attempt = 0
        while attempt < self.retry.attempts:
            used = token if token is not None else self.access_token
            try:
                reply = self.attempt(method, path, label=label, query=query, body=body, headers=headers,
                                     token=token, authorize=authorize)
            except TRANSPORT_ERRORS as error:
                if on_failure is not None:
                    on_failure(None, error)
                self._sleep(self.retry.delay(attempt, None, self._jitter))
                attempt += 1
                continue
            if reply.status in expected:
                return reply
            if reply.status == 401 and authorize and token is None and not refreshed and \
                    reply.code == "token_expired":
                refreshed = True
                self.refresh(used)
                continue
            if reply.status in RETRYABLE_STATUSES:
                last = reply
                if on_failure is not None:
                    on_failure(reply, None)
                self._sleep(self.retry.delay(attempt, reply, self._jitter))
                attempt += 1
                continue
            raise ClientError(label, reply)
        raise Unreachable(label, last, f"failed {self.retry.attempts} times"
                          + (f", last answered {last.status}" if last is not None else ""))

    def call(self, method: str, path: str, **options: Any) -> Any:
        """:meth:`request`, returning the decoded JSON answer."""
        return self.request(method, path, **options).json()

    def pages(self, path: str, *, label: str | None = None, query: Mapping[str, Any] | None = None,
              limit: int = PAGE_LIMIT) -> Iterator[list[Any]]:
        """The pages of a list (``{"items", "next"}``), one request each, following ``next`` as ``after``
        until it is null. The cursor is the server's, passed on untouched."""
        label = label or f"GET {path}"
        after: str | None = None
        while True:
            page_query = {**(query or {}), "limit": limit, **({"after": after} if after is not None else {})}
            page = self.call("GET", path, label=label, query=page_query)
            yield page["items"]
            after = page["next"]
            if after is None:
                return

    def paged(self, path: str, *, label: str | None = None, query: Mapping[str, Any] | None = None,
              limit: int = PAGE_LIMIT) -> list[Any]:
        """Every item of a list, page after page (see :meth:`pages`)."""
        return [item for items in self.pages(path, label=label, query=query, limit=limit) for item in items]
