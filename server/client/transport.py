"""How the client's requests reach a server: real HTTP with kept-alive connections, or a Flask app in-process."""

from __future__ import annotations

import http.client
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

# What a request can fail with before any answer arrives; TimeoutError is an OSError.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (OSError, http.client.HTTPException)
# A kept-alive connection the server closed while idle fails with one of these on its next use.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer: status, raw body, and headers with lower-case names."""

    status: int
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        """The decoded JSON body (None for an empty one); ValueError when it is not JSON."""
        return orjson.loads(self.body) if self.body else None

    @property
    def code(self) -> str | None:
        """The ``code`` of kunjung's error shape, when the body has one."""
        try:
            data = self.json()
        except ValueError:
            return None
        return data.get("code") if isinstance(data, dict) else None


class Transport(Protocol):
    """Sends one request and returns its reply; raises one of :data:`TRANSPORT_ERRORS` when none came.

    Implementations must be safe to call from several threads at once.
    """

    name: str

    def send(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: bytes | None = None,
             headers: Mapping[str, str] | None = None) -> Reply: ...


class HttpTransport:
    """A server over HTTP(S) with the standard library, reusing a small pool of kept-alive connections.

    ``base_url`` is ``http(s)://host[:port]`` with an optional path prefix; ``ssl_context`` lets a village hall's
    own certificate authority be trusted. A connection the server closed while idle is replaced once,
    transparently; every other failure reaches the caller, which decides whether to retry.

    ``max_connections`` bounds the requests in flight at once (a relay forwarding many phones, or a
    simulator of a thousand, over a few connections): a request beyond it waits for a connection to come
    free, inside :meth:`send`, so a caller timing ``send`` counts the wait, as a phone would feel it;
    ``observe_wait(seconds)`` hears of each wait.
    """

    def __init__(self, base_url: str, *, timeout: float = 60.0, pool_size: int = 8,
                 ssl_context: ssl.SSLContext | None = None, max_connections: int | None = None,
                 observe_wait: Callable[[float], None] | None = None) -> None:
        if max_connections is not None and max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"the server URL must be http(s)://host[:port], not {base_url!r}")
        self.name = base_url.rstrip("/")
        self.timeout = timeout
        self.pool_size = pool_size
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port
        self._prefix = parsed.path.rstrip("/")
        self._ssl = ssl_context
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections) if max_connections else None
        self._observe_wait = observe_wait

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def send(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: bytes | None = None,
             headers: Mapping[str, str] | None = None) -> Reply:
        if self._slots is None:
            return self._send(method, path, query, body, headers)
        began = time.perf_counter()
        with self._slots:
            if self._observe_wait is not None:
                self._observe_wait(time.perf_counter() - began)
            return self._send(method, path, query, body, headers)

    def _send(self, method: str, path: str, query: Mapping[str, Any] | None, body: bytes | None,
              headers: Mapping[str, str] | None) -> Reply:
        target = self._prefix + path + ("?" + urllib.parse.urlencode(query) if query else "")
        conn, reused = self._take()
        while True:
            try:
                conn.request(method, target, body=body, headers=dict(headers or {}))
                response = conn.getresponse()
                data = response.read()
            except _STALE:
                conn.close()
                if not reused:
                    raise
                conn, reused = self._connect(), False
                continue
            except BaseException:
                conn.close()
                raise
            break
        reply = Reply(response.status, data, {name.lower(): value for name, value in response.getheaders()})
        if response.will_close:
            conn.close()
        else:
            self._give_back(conn)
        return reply

    def close(self) -> None:
        """Close the idle connections (requests in flight finish on theirs)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class FlaskTransport:
    """A kunjung app in this process through Flask's test client: one client per thread, as clients keep state."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.name = "in-process"
        self._local = threading.local()

    def send(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: bytes | None = None,
             headers: Mapping[str, str] | None = None) -> Reply:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.app.test_client()
        response = client.open(path, method=method, query_string=dict(query or {}), data=body,
                               headers=dict(headers or {}))
        return Reply(response.status_code, response.get_data(),
                     {name.lower(): value for name, value in response.headers.items()})
