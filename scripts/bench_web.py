"""The web pages' figures for ``./scripts/bench``: dashboard, review queue and map data with many visits stored,
each timed beside the JSON API call that feeds it (goal: within 3x)."""

from __future__ import annotations

import http.client
import re
import statistics
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

from server.storage import open_store
from server.store import COLLECTIONS

WEB_GOAL = 3.0
VILLAGES = ("32.04.05.2001", "32.04.05.2002", "32.04.05.2003")
CENTRES = {"32.04.05.2001": (-6.93, 107.675), "32.04.05.2002": (-6.93, 107.707), "32.04.05.2003": (-6.93, 107.737)}
CHUNK = 5000
STATES = ("pending", "pending", "pending", "approved", "needs_revision", "rejected")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def visit_doc(serial: int, form: tuple[str, str], received: str) -> dict[str, Any]:
    """A stored visit as the push writes it; one in ten outside its village (flagged)."""
    village = VILLAGES[serial % len(VILLAGES)]
    lat, lon = CENTRES[village]
    outside = serial % 10 == 0
    lat += (serial % 97) * 0.0001 + (0.05 if outside else 0)
    lon += (serial % 89) * 0.0001
    flags = [{"code": "outside_village", "distance_m": 5500}] if outside else []
    state = STATES[serial % len(STATES)]
    geotag = {"lat": lat, "lon": lon, "accuracy_m": 6, "captured_at": received}
    return {"id": f"bench-visit-{serial:07d}", "village": village, "household_id": str(uuid.uuid4()),
            "form_id": form[0], "form_version": form[1], "officer": f"petugas{serial % 20}",
            "device_id": f"hp-{serial % 20}", "hlc": f"{1796635455489 + serial:013d}-0000",
            "started_at": received, "ended_at": received, "received_at": received, "geotag": geotag,
            "answers": {"head_name": f"Warga {serial}"}, "supersedes": None, "superseded_by": None,
            "review_state": state, "reviewed": state != "pending", "review": None, "review_record": None,
            "location": {"type": "Point", "coordinates": [lon, lat]},
            "flags": flags, "flag_codes": [f["code"] for f in flags], "flagged": bool(flags)}


def seed_visits(db: Path, count: int, form: tuple[str, str]) -> float:
    """``count`` visits through the storage interface, in units of work of CHUNK; returns the seconds taken."""
    began = time.perf_counter()
    received = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    store = open_store(f"sqlite:///{db}", COLLECTIONS)
    try:
        for start in range(0, count, CHUNK):
            with store.transaction() as tx:
                for serial in range(start, min(count, start + CHUNK)):
                    tx.insert("visits", visit_doc(serial, form, received))
    finally:
        store.close()
    return time.perf_counter() - began


class Browser:
    """A signed-in web session over one kept-alive connection: cookies kept, CSRF read from the page."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=300)
        self.cookies: dict[str, str] = {}

    def send(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes, http.client.HTTPResponse]:
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self.connection.request(method, path, body=body, headers=sent)
        reply = self.connection.getresponse()
        data = reply.read()
        for header in reply.headers.get_all("Set-Cookie") or ():
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if value and "Max-Age=0" not in header:
                self.cookies[name] = value
            else:
                self.cookies.pop(name, None)
        return reply.status, data, reply

    def sign_in(self, username: str, password: str) -> None:
        status, page, _ = self.send("GET", "/web/login")
        token = CSRF.search(page.decode()).group(1)  # type: ignore[union-attr]
        form = urllib.parse.urlencode({"username": username, "password": password, "csrf_token": token}).encode()
        status, _, _ = self.send("POST", "/web/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 302 or "kunjung_web" not in self.cookies:
            raise RuntimeError(f"web sign-in answered {status}")

    def get(self, path: str, headers: dict[str, str] | None = None) -> float:
        """Milliseconds for one GET that must answer 200."""
        began = time.perf_counter()
        status, body, _ = self.send("GET", path, headers=headers)
        took = (time.perf_counter() - began) * 1000
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {body[:200]!r}")
        return took


def median_ms(browser: Browser, paths: list[str], repeats: int, headers: dict[str, str] | None = None) -> float:
    """The median over ``repeats`` of the time to fetch every path in ``paths`` (one figure)."""
    browser.get(paths[0], headers)  # warm the worker's caches
    return statistics.median(sum(browser.get(path, headers) for path in paths) for _ in range(repeats))


def web_figures(workdir: Path, *, quick: bool, bench: Any) -> list[Any]:
    """Dashboard, review queue and map data against the API calls that feed them, on one gunicorn."""
    visits = 5_000 if quick else 100_000
    repeats = 3 if quick else 5
    db = workdir / "web.db"
    secret = uuid.uuid4().hex * 2
    bench.make_store(db, secret, [("pengawas", "supervisor", ["32.04.05"])])
    seconds = seed_visits(db, visits, (bench.FORM_ID, bench.FORM_VERSION))
    figures = []
    with bench.Server(workdir, db, secret) as server:
        token = server.login("pengawas")
        api = {"Authorization": f"Bearer {token}"}
        page = Browser(server.url)
        page.sign_in("pengawas", bench.PASSWORD)
        from server.web.views import MAP_PAGE  # the map's page size, so both sides fetch the same visits

        api_pages = max(1, MAP_PAGE // 500)
        village = VILLAGES[0]
        cases = [
            # The dashboard shows the three reports side by side: its baseline is the three calls.
            ("web_dashboard", "dashboard page", ["/web/"],
             ["/api/v1/reports/coverage", "/api/v1/reports/officers", "/api/v1/reports/devices"],
             "reports coverage + officers + devices"),
            ("web_review_queue", "review queue page", ["/web/queue?kind=visit"],
             ["/api/v1/reports/review-queue?kind=visit"], "reports/review-queue?kind=visit"),
            ("web_map_data", f"map data ({MAP_PAGE} points)",
             [f"/web/map/visits.json?village={village}"], None, f"/api/v1/visits, {api_pages} pages of 500"),
        ]
        for name, label, web_paths, api_paths, api_label in cases:
            if api_paths is None:
                api_paths = _visit_pages(page, api, village, api_pages)
            web_ms = median_ms(page, web_paths, repeats)
            api_ms = median_ms(page, api_paths, repeats, api)
            figures.append(bench.Figure(name, f"{label}, {visits // 1000:,}k visits", round(web_ms, 1), "ms (median)",
                                        round(api_ms, 1), api_label, round(web_ms / api_ms, 3),
                                        {"visits": visits, "repeats": repeats, "seed_seconds": round(seconds, 1)}))
    figures.extend(map_layer_figures(workdir, quick=quick, bench=bench))
    return figures


MAP_LAYER_VISITS = 10_000


def map_layer_figures(workdir: Path, *, quick: bool, bench: Any) -> list[Any]:
    """The map's clustered visit layer with 10,000 visits, in headless Chromium: the time from opening /web/map to
    every point in the layer, beside fetching the same points' JSON pages; and a cluster click's zoom.
    Chromium is needed as for the browser tests (scripts/_bootstrap.sh installs it): without it this fails."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "web"))
    from live import chromium_path, launch_browser
    from playwright import sync_api as playwright_api

    if chromium_path() is None:
        raise RuntimeError("no chromium for the map layer figure (scripts/_bootstrap.sh installs it)")
    repeats = 2 if quick else 5
    db = workdir / "web-map.db"
    secret = uuid.uuid4().hex * 2
    bench.make_store(db, secret, [("pengawas", "supervisor", ["32.04.05"])])
    seed_visits(db, MAP_LAYER_VISITS, (bench.FORM_ID, bench.FORM_VERSION))
    with bench.Server(workdir, db, secret) as server:
        data = Browser(server.url)
        data.sign_in("pengawas", bench.PASSWORD)
        import json

        paths, after = [], None
        while True:  # the pages the map fetches, cursors read from the answers
            paths.append("/web/map/visits.json" + (f"?after={urllib.parse.quote(after)}" if after else ""))
            after = json.loads(data.send("GET", paths[-1])[1]).get("next")
            if not after:
                break
        data_ms = median_ms(data, paths, repeats)
        with playwright_api.sync_playwright() as playwright:
            browser = launch_browser(playwright)
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(f"{server.url}/web/login")
            page.fill("input[name=username]", "pengawas")
            page.fill("input[name=password]", bench.PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            loads, zooms = [], []
            for _ in range(repeats + 1):
                began = time.perf_counter()
                page.goto(f"{server.url}/web/map")
                page.wait_for_selector("#map[data-loaded=true]", timeout=120_000)
                loads.append((time.perf_counter() - began) * 1000)
                shown = int(page.inner_text("#map-count"))
                if shown != MAP_LAYER_VISITS:
                    raise RuntimeError(f"the map shows {shown} visits, not {MAP_LAYER_VISITS}")
                zoom = page.get_attribute("#map", "data-zoom")
                began = time.perf_counter()
                page.locator("#map .marker-cluster").first.click()
                page.wait_for_selector(f"#map:not([data-zoom='{zoom}'])")
                zooms.append((time.perf_counter() - began) * 1000)
            browser.close()
    load_ms, zoom_ms = statistics.median(loads[1:]), statistics.median(zooms[1:])  # the first warms caches
    return [bench.Figure("web_map_layer", f"map page with its clustered layer, {MAP_LAYER_VISITS:,} visits (Chromium)",
                         round(load_ms, 1), "ms (median)", round(data_ms, 1),
                         f"the layer's {len(paths)} JSON pages alone", round(load_ms / data_ms, 3),
                         {"visits": MAP_LAYER_VISITS, "repeats": repeats, "cluster_click_zoom_ms": round(zoom_ms, 1)})]


def _visit_pages(browser: Browser, api: dict[str, str], village: str, pages: int) -> list[str]:
    """The paths of the first ``pages`` API pages of the village's visits (cursors read from the answers)."""
    import json

    paths = [f"/api/v1/visits?village={village}&limit=500"]
    while len(paths) < pages:
        status, body, _ = browser.send("GET", paths[-1], headers=api)
        following = json.loads(body).get("next")
        if status != 200 or not following:
            break
        paths.append(f"/api/v1/visits?village={village}&limit=500&after={urllib.parse.quote(following)}")
    return paths


def web_goals(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Each page within WEB_GOAL times the JSON API call that feeds it."""
    out = []
    for name, goal in (("web_dashboard", "web dashboard"), ("web_review_queue", "web review queue"),
                       ("web_map_data", "web map data")):
        figure = figures.get(name)
        if figure:
            out.append({"goal": f"{goal} vs the API ({figure.details['visits']:,} visits)",
                        "target": f"<= {WEB_GOAL:g}x", "reached": f"{figure.ratio:.2f}x",
                        "met": figure.ratio <= WEB_GOAL})
    return out
