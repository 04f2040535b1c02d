"""The village hall as a node: hall credentials, the event feed and intake, and the hall's exchange with upstream."""

from __future__ import annotations

import logging

from flask import Flask, request

from ..errors import ApiError
from ..i18n import gettext
from ..storage import StoreUnavailable
from ..store import get_store

log = logging.getLogger("kunjung.relay")
RUNNER_EXTENSION = "kunjung.relay.runner"
PUSH_PATHS = ("/api/v1/sync/push",)


def install_relay(app: Flask) -> None:
    """At a hall: refuse phone pushes while the hall's clock is too far from upstream's, saying why.

    ODK Collect submissions join ``PUSH_PATHS`` when they land (issue 18 leaves them for later)."""

    @app.before_request
    def _hall_clock() -> None:
        if request.path not in PUSH_PATHS or request.method != "POST":
            return
        from .node import push_refusal

        refusal = push_refusal(get_store())
        if refusal:
            raise ApiError(503, "hall_clock_skew", refusal,
                           {"clock": [gettext("the hall's clock is off; nothing was taken")]})


def start_background_relay(app: Flask) -> object | None:
    """Start the background rounds when this node is a hall and KUNJUNG_RELAY_BACKGROUND allows
    (gunicorn's app module calls this; tests and the CLI do not, unless asked)."""
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
    runner = Runner(lambda: hall_node(store, skew_bound_ms=bound), store, interval=interval,
                    first_backoff=min(5.0, interval), max_backoff=min(900.0, 15 * interval)).start()
    app.extensions[RUNNER_EXTENSION] = runner
    log.info("relay: background rounds started")
    return runner
