"""Screenshots of every web page at 1366x768 and 390x844 (run through scripts/screenshots)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "web")]

from live import LiveServer, launch_browser, sign_in  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from web_seed import ADMIN_PASSWORD, PASSWORD  # noqa: E402

SIZES = {"laptop": (1366, 768), "phone": (390, 844)}


def pages(world: dict[str, str]) -> list[tuple[str, str, str]]:
    """(name, who, path) of every page."""
    supervisor = [("dashboard", "/web/"), ("queue", "/web/queue"), ("visit", f"/web/visits/{world['outside']}"),
                  ("conflicts", "/web/conflicts"), ("households", "/web/households"),
                  ("household", f"/web/households/{world['plain_household']}"), ("map", "/web/map"),
                  ("exports", "/web/exports")]
    admin = [("forms", "/web/forms"), ("form", "/web/forms/verval_web"),
             ("editor", "/web/forms/verval_web/versions/1/edit"), ("users", "/web/users"),
             ("registers", "/web/registers"), ("audit", "/web/audit")]
    return ([("login", "", "/web/login")] + [(name, "sari", path) for name, path in supervisor]
            + [(name, "admin", path) for name, path in admin] + [("officer", "ani", "/web/")])


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "var" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        server = LiveServer(Path(folder), visits=300).start()
        try:
            with sync_playwright() as playwright:
                browser = launch_browser(playwright)
                passwords = {"sari": PASSWORD, "ani": PASSWORD, "admin": ADMIN_PASSWORD}
                for size, (width, height) in SIZES.items():
                    contexts = {}
                    for name, who, path in pages(server.world):
                        if who not in contexts:
                            context = browser.new_context(viewport={"width": width, "height": height})
                            page = context.new_page()
                            if who:
                                sign_in(page, server.url, who, passwords[who])
                            contexts[who] = page
                        page = contexts[who]
                        page.goto(server.url + path)
                        if page.locator("#map, #visit-map").count():
                            page.wait_for_selector("[data-loaded=true]", timeout=20000)
                        if page.locator("#editor-live").count():  # the editor's as-you-type check has answered
                            page.wait_for_selector("#editor-live-status", timeout=20000)
                        target = out / f"{name}-{size}.png"
                        page.screenshot(path=str(target), full_page=True)
                        print(target.relative_to(ROOT) if target.is_relative_to(ROOT) else target)
                        if name == "editor":  # and as the admin sees a mistake while typing
                            page.fill("input[name=survey-3-relevant]", "${members} >")
                            page.fill("input[name=survey-2-type]", "text")
                            page.wait_for_selector("#editor-live-status.error", timeout=20000)
                            target = out / f"editor-error-{size}.png"
                            page.screenshot(path=str(target), full_page=True)
                            print(target.relative_to(ROOT) if target.is_relative_to(ROOT) else target)
                browser.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
