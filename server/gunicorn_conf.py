"""How gunicorn serves kunjung: the one set of options scripts/serve and the Dockerfile both use.

Run as ``gunicorn -c python:server.gunicorn_conf``. KUNJUNG_HOST, KUNJUNG_PORT,
KUNJUNG_WORKERS and KUNJUNG_THREADS choose where it listens and how many worker processes and
threads per worker it runs.
"""

from __future__ import annotations

import gc
import os
from typing import Any


def _setting(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _count(name: str, default: str) -> int:
    text = _setting(name, default)
    if not text.isdigit() or int(text) < 1:
        raise SystemExit(f"kunjung: {name}: expected a positive whole number, got {text!r}")
    return int(text)


host = _setting("KUNJUNG_HOST", "127.0.0.1")
port = _count("KUNJUNG_PORT", "8000")

wsgi_app = "server.wsgi:app"
bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
workers = _count("KUNJUNG_WORKERS", "2")
# Threads, not more processes: a request mostly waits on the store, and each worker keeps one
# connection per thread.
worker_class = "gthread"
threads = _count("KUNJUNG_THREADS", "4")
graceful_timeout = 20
# gunicorn 27's control socket lives at one path per user (~/.gunicorn): two servers of one user
# would contend for it, and kunjung has no use for it. Older gunicorns ignore the name.
control_socket_disable = True
accesslog = "-"
# Every access-log line names the request id its answer carried, as the application log does.
access_log_format = '%(h)s %(t)s "%(r)s" %(s)s %(B)s %(M)sms request_id=%({x-request-id}o)s'


def when_ready(server: Any) -> None:
    print(f"==> kunjung is serving at http://{host}:{port}/  (API docs: http://{host}:{port}/api/docs)", flush=True)


def post_worker_init(worker: Any) -> None:
    # The app, its forms and caches are loaded now and live as long as the worker: moved out of the
    # collector's generations, a full collection no longer traverses them again and again.
    gc.freeze()
