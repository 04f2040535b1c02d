"""The map's visit layer with 10,000 visits stored, in a real headless Chromium: clusters whose counts add up to
every visit, a click on a cluster zooms in, a click on a point opens its visit (the time is measured in
scripts/bench_web.py, not here)."""

from __future__ import annotations

import pytest
from live import LiveServer, chromium_path, launch_browser, sign_in
from playwright import sync_api as playwright_api
from web_seed import PASSWORD

pytestmark = pytest.mark.slow
CROWD = 10_000
SEEDED = 3  # web_seed's own visits: two in the village, one outside it


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    if chromium_path() is None:
        pytest.fail("no chromium: ./scripts/test installs Debian's chromium with apt (scripts/_bootstrap.sh)")
    server = LiveServer(tmp_path_factory.mktemp("web-map"), visits=CROWD).start()
    yield server
    server.stop()


def shown_total(page) -> int:
    """Visits the map shows now: each cluster's count plus the single points."""
    counts = page.locator("#map .marker-cluster span").all_inner_texts()
    return sum(int(c) for c in counts) + page.locator("#map .visit-pin").count()


def test_ten_thousand_visits_cluster_add_up_zoom_in_and_open(crowded):
    with playwright_api.sync_playwright() as playwright:
        browser = launch_browser(playwright)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        sign_in(page, crowded.url, "sari", PASSWORD)
        page.goto(f"{crowded.url}/web/map")
        page.wait_for_selector("#map[data-loaded=true]", timeout=60_000)
        assert int(page.inner_text("#map-count")) == CROWD + SEEDED
        clusters = page.locator("#map .marker-cluster")
        assert 0 < clusters.count() < 200  # clustered, not 10,000 markers
        assert shown_total(page) == CROWD + SEEDED

        box = page.locator("#map").bounding_box()

        def inside(locator) -> list[int]:
            """The items of ``locator`` drawn well inside the map (Leaflet keeps some just outside its edge)."""
            found = []
            for index in range(locator.count()):
                at = locator.nth(index).bounding_box()
                if at and box["x"] + 30 < at["x"] < box["x"] + box["width"] - 30 \
                        and box["y"] + 30 < at["y"] < box["y"] + box["height"] - 30:
                    found.append(index)
            return found

        pins = page.locator("#map .visit-pin")
        clicks = 0
        for clicks in range(20):  # clusters zoom in (at least once) until single points show
            if clicks and inside(pins):
                break
            zoom = int(page.get_attribute("#map", "data-zoom"))
            biggest = max(inside(clusters), key=lambda i: int(clusters.nth(i).inner_text()))
            clusters.nth(biggest).click()
            page.wait_for_selector(f"#map:not([data-zoom='{zoom}'])")
            assert int(page.get_attribute("#map", "data-zoom")) > zoom
        assert clicks >= 1
        pins.nth(inside(pins)[0]).click()
        page.click(".leaflet-popup a.open-visit")
        page.wait_for_url("**/web/visits/**")
        assert page.locator("#answers").count() == 1
        assert errors == []
        browser.close()
