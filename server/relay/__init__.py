"""The village hall as a node: hall credentials, the event feed and intake, and the hall's exchange with upstream."""

from __future__ import annotations

import logging
import re

from flask import Flask, Response, request

from ..errors import ApiError
from ..i18n import gettext, translate_known
from ..storage import StoreUnavailable
from ..store import get_store

log = logging.getLogger("kunjung.relay")
RUNNER_EXTENSION = "kunjung.relay.runner"
# What phones post their work to: JSON sync, and ODK Collect's submissions under its token URL.
PUSH_PATHS = ("/api/v1/sync/push", re.compile(r"/key/[^/]+/submission"))


def is_push(path: str) -> bool:
    return any(path == p if isinstance(p, str) else p.fullmatch(path) for p in PUSH_PATHS)


def install_relay(app: Flask) -> None:
    """At a hall: refuse phone pushes (JSON sync and Collect submissions) while the hall's clock is
    too far from upstream's, saying why (to Collect in the OpenRosa shape it shows)."""

    @app.before_request
    def _hall_clock() -> Response | None:
        if request.method != "POST" or not is_push(request.path):
            return None
        from .node import push_refusal

        refusal = push_refusal(get_store())
        if not refusal:
            return None
        if not request.path.startswith("/api/"):
            from ..api.openrosa import message

            response = message(translate_known(refusal), 503, "error")
            response.headers["Retry-After"] = "60"
            return response
        raise ApiError(503, "hall_clock_skew", refusal,
                       {"clock": [gettext("the hall's clock is off; nothing was taken")]})


def start_background_relay(app: Flask) -> object | None:
    """Start the background rounds when this node is a hall and KUNJUNG_RELAY_BACKGROUND allows
    (gunicorn's app module calls this; tests and the CLI do not, unless asked)."""
    from .files import HallFiles
    from .node import Runner, hall_node, is_hall

    if not app.config.get("RELAY_BACKGROUND", True) or RUNNER_EXTENSION in app.extensions:
        return None
    try:
        store = get_store(app)
        hall = is_hall(store)
    except StoreUnavailable as exc:
        log.warning("relay: the store does not answer (%s); no background rounds in this worker", exc)
        return None
    if not hall:
        return None
    bound = app.config["CLOCK_SKEW_SECONDS"] * 1000
    interval = float(app.config.get("RELAY_INTERVAL_SECONDS", 60))
    files = HallFiles.for_app(app)
    runner = Runner(lambda: hall_node(store, skew_bound_ms=bound, files=files), store, interval=interval,
                    first_backoff=min(5.0, interval), max_backoff=min(900.0, 15 * interval),
                    context=app.app_context).start()
    app.extensions[RUNNER_EXTENSION] = runner
    log.info("relay: background rounds started")
    return runner
