"""Journeys through the pages in a real headless Chromium against a seeded gunicorn: a supervisor reviews and
resolves, an admin publishes a form, sets up an officer and exports; no request leaves the server's origin."""

from __future__ import annotations

import pytest
from live import LiveServer, chromium_path, launch_browser, sign_in
from playwright import sync_api as playwright_api
from web_seed import ADMIN_PASSWORD, HOSTILE, PASSWORD, VILLAGES_CSV, xlsform_bytes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    # A real browser is what these tests are about: without one they fail, they do not skip.
    if chromium_path() is None:
        pytest.fail("no chromium: ./scripts/test installs Debian's chromium with apt (scripts/_bootstrap.sh)")
    server = LiveServer(tmp_path_factory.mktemp("web-live")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        launched = launch_browser(playwright)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, live):
    """A fresh browser context; every request it makes is kept, and must stay on the server's origin."""
    context = browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
    opened = context.new_page()
    requests: list[str] = []
    opened.on("request", lambda request: requests.append(request.url))
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    # A refused upload answers 422 on purpose; any other console error (a CSP refusal, a 404) fails the test.
    opened.on("console", lambda message: errors.append(message.text)
              if message.type == "error" and "status of 422" not in message.text else None)
    yield opened
    context.close()
    foreign = [url for url in requests if not url.startswith(live.url + "/") and not url.startswith("data:")]
    assert foreign == [], f"requests left the origin: {foreign}"
    assert errors == [], f"the pages reported errors (a CSP refusal shows here too): {errors}"


def test_a_supervisor_finds_a_flagged_visit_reviews_it_and_resolves_a_conflict(page, live):
    base = live.url
    sign_in(page, base, "sari", PASSWORD)
    assert page.locator("html").get_attribute("lang") == "id"
    assert page.locator("#coverage").inner_text().count("Cileunyi Kulon") == 1
    page.click("text=Antrean pemeriksaan")
    assert page.locator("#queue tr.conflict").count() == 1
    page.select_option("select[name=kind]", "visit")  # htmx swaps the rows in, without a reload
    page.wait_for_selector("#queue tr.conflict", state="detached")
    assert page.locator("#queue tr.visit").count() == 1
    assert "kind=visit" in page.url  # hx-push-url keeps the filter in the address
    page.click("#queue tr.visit >> text=Pemeriksaan")
    assert "di luar desa" in page.inner_text("body")
    page.wait_for_selector("#visit-map[data-loaded=true]")
    page.fill("textarea[name=comment]", "Titik lokasi di luar desa, mohon dicek")
    page.click("button[value=needs_revision]")
    page.wait_for_selector("#review-saved")
    assert page.inner_text("#review-state") == "perlu perbaikan"
    assert "Titik lokasi di luar desa, mohon dicek" in page.inner_text("body")

    page.click("nav >> text=Konflik")
    heads = page.locator("section.conflict label.head")
    assert heads.count() == 3  # two values and "another value"
    page.check("section.conflict input[type=radio] >> nth=1")
    page.click("text=Simpan nilai ini")
    page.wait_for_selector("#resolved")
    assert page.locator("section.conflict").count() == 0


def test_markup_in_answers_shows_as_text_and_the_map_draws_offline(page, live):
    base = live.url
    sign_in(page, base, "sari", PASSWORD)
    page.goto(f"{base}/web/visits/{live.world['hostile']}")
    assert HOSTILE in page.inner_text("#answers")
    assert page.evaluate("window.__kunjung_xss === undefined")
    page.goto(f"{base}/web/map")
    page.wait_for_selector("#map[data-loaded=true]")
    assert int(page.inner_text("#map-count")) == 3
    assert page.locator("#map path.leaflet-interactive, #map canvas").count() >= 1


def test_switching_language_to_english_and_back(page, live):
    base = live.url
    sign_in(page, base, "sari", PASSWORD)
    assert page.locator("nav >> text=Dasbor").count() == 1
    page.click("#switch-language")
    page.wait_for_selector("html[lang=en]")
    assert page.locator("nav >> text=Dashboard").count() == 1
    page.goto(f"{base}/web/visits/{live.world['plain']}")
    assert "Roof" in page.inner_text("#answers")
    assert "Clay tiles" in page.inner_text("#answers")
    page.click("#switch-language")
    page.wait_for_selector("html[lang=id]")
    assert "Jenis atap" in page.inner_text("#answers")


def test_an_admin_uploads_a_broken_then_a_good_form_creates_an_officer_and_exports(page, live, tmp_path):
    base = live.url
    sign_in(page, base, "admin", ADMIN_PASSWORD)
    broken, good = tmp_path / "rusak.xlsx", tmp_path / "baik.xlsx"
    broken.write_bytes(xlsform_bytes(broken=True, version="7"))
    good.write_bytes(xlsform_bytes(version="7"))
    page.goto(f"{base}/web/forms")
    page.set_input_files("#form-upload input[type=file]", str(broken))
    page.click("#form-upload button")
    errors = page.inner_text("#upload-errors")
    assert "tidak_ada" in errors
    assert "nama 'kepala' ganda" in errors  # the page speaks Indonesian, the engine's refusals too
    page.set_input_files("#form-upload input[type=file]", str(good))
    page.click("#form-upload button")
    page.wait_for_selector("#uploaded")
    page.click("#versions >> text=Terbitkan")
    page.wait_for_selector("#published")

    page.goto(f"{base}/web/users")
    page.fill("#new-user input[name=username]", "wulan")
    page.select_option("#new-user select[name=role]", "officer")
    page.fill("#new-user input[name=villages]", "32.04.05.2003")
    page.fill("#new-user input[name=password]", "kata-sandi-wulan-panjang")
    page.click("#new-user button")
    page.wait_for_selector("#user-created")
    assert "32.04.05.2003" in page.locator("#user-wulan input[name=villages]").input_value()

    page.goto(f"{base}/web/exports")
    page.select_option("#export select[name=format]", "csv_zip")
    with page.expect_download() as download:
        page.click("#export button")
    saved = tmp_path / "export.zip"
    download.value.save_as(saved)
    assert saved.read_bytes()[:2] == b"PK"

    page.goto(f"{base}/web/audit")
    assert "user_created" in page.inner_text("#audit")


def test_the_editor_checks_as_the_admin_types(page, live):
    base = live.url
    sign_in(page, base, "admin", ADMIN_PASSWORD)
    page.goto(f"{base}/web/forms/verval_web/versions/1/edit")
    page.wait_for_selector("#editor-guard[data-verdict=compatible]")
    page.fill("input[name=survey-3-relevant]", "${members} >")  # typed, not saved
    page.wait_for_selector("#q-errors-3 li")
    assert "cannot parse" in page.inner_text("#q-3")
    assert page.locator("#q-errors-2 li").count() == 0
    page.fill("input[name=survey-3-relevant]", "${members} > 2")
    page.wait_for_selector("#q-errors-3 li", state="detached")
    page.wait_for_selector("#editor-live-changes >> text=relevant")
    page.fill("input[name=survey-2-constraint]", "")
    page.fill("input[name=survey-2-type]", "text")
    page.wait_for_selector("#editor-guard[data-verdict=incompatible]")
    assert "was integer" in page.inner_text("#q-errors-2")
    assert "members" in page.inner_text("#editor-guard")
    assert "/edit" in page.url  # nothing was submitted


def test_an_admin_uploads_a_form_with_its_choice_csv_in_one_go(page, live, tmp_path):
    base = live.url
    sign_in(page, base, "admin", ADMIN_PASSWORD)
    workbook, villages = tmp_path / "desa-form.xlsx", tmp_path / "desa.csv"
    workbook.write_bytes(xlsform_bytes(version="9", from_file=True))
    villages.write_bytes(VILLAGES_CSV)
    page.goto(f"{base}/web/forms")
    page.set_input_files("#form-upload input[name=file]", str(workbook))
    page.set_input_files("#form-upload input[name=files]", [str(villages)])
    page.click("#form-upload button")
    page.wait_for_selector("#uploaded")
    assert "desa.csv" in page.inner_text("#files-9")
    assert page.locator("#missing-files-9").count() == 0
    page.click("#versions >> text=Terbitkan")
    page.wait_for_selector("#published")
