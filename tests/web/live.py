"""A seeded kunjung served by gunicorn on a free loopback port, and a headless Chromium to drive it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from web_seed import ROOT, seed

SECRET = "kunjung-web-live-secret-that-is-long-enough-0123456789"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    """Debian's chromium (scripts/_bootstrap.sh installs it for the tests when missing)."""
    given = os.environ.get("KUNJUNG_CHROMIUM")
    if given:
        return given
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """``start()`` seeds a store in ``folder`` and serves it; ``stop()`` ends the server it started."""

    def __init__(self, folder: Path, *, visits: int = 0) -> None:
        self.folder = folder
        self.visits = visits
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.world: dict[str, Any] = {}

    def start(self) -> LiveServer:
        sys.path.insert(0, str(ROOT / "tests"))
        from http_helpers import make_app  # the suite's app settings (cheap hashing for seeding)

        from server.store import raw_store

        database = f"sqlite:///{self.folder}/live.db"
        app = make_app(self.folder, DATABASE_URL=database, SECRET_KEY=SECRET)
        self.world = seed(app, visits=self.visits)
        raw_store(app).close()
        env = {**os.environ, "KUNJUNG_DATABASE_URL": database, "KUNJUNG_SECRET_KEY": SECRET,
               "KUNJUNG_PORT": str(self.port), "KUNJUNG_HOST": "127.0.0.1", "KUNJUNG_WORKERS": "1",
               "KUNJUNG_LOAD_LIBRARY_FORMS": "false", "KUNJUNG_LOG_LEVEL": "WARNING"}
        self.log = open(self.folder / "server.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:server.gunicorn_conf"],
                                        cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/health/ready", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the server did not become ready: {self.output()}")

    def output(self) -> str:
        return (self.folder / "server.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
        self.log.close()


def launch_browser(playwright: Any) -> Any:
    """Headless Chromium from the system (no browser download)."""
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                      args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])


def sign_in(page: Any, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/web/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
