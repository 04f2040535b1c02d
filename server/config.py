"""Configuration: defaults, ``KUNJUNG_*`` environment variables, where the store and the secret live,
and the kept secret key with the secrets it replaced."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .i18n import gettext
from .security.keys import RetiredSecret


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    key: str  # Flask config key
    env: str  # environment variable
    default: Any
    parse: Callable[[str], Any]
    help: str


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(gettext("expected true/false, got %(text)r", text=text))


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(gettext("expected a positive whole number, got %(text)r", text=text))
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(gettext("expected zero or a positive whole number, got %(text)r", text=text))
    return value


# The table in README.md lists these; keep them in step.
SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", "KUNJUNG_DATABASE_URL", None, str,
            "Store URL: sqlite:///path (embedded) or mongodb://host/db?replicaSet=rs0; unset: the checkout's "
            "var/kunjung.db when kunjung runs from its checkout, else kunjung refuses to start"),
    Setting("MONGO_ALLOW_STANDALONE", "KUNJUNG_MONGO_ALLOW_STANDALONE", False, _bool,
            "Accept a standalone mongod, which has no transactions (a push cut short may leave part of it)"),
    Setting("SECRET_KEY", "KUNJUNG_SECRET_KEY", None, str,
            "The server's secret (keys for tokens and cursors are derived from it); if unset, one is "
            "generated and kept in KUNJUNG_SECRET_KEY_FILE"),
    Setting("SECRET_KEY_FILE", "KUNJUNG_SECRET_KEY_FILE", None, str,
            "Where the generated secret and the retired ones are kept (mode 0600); unset: the checkout's "
            "var/secret_key when kunjung runs from its checkout"),
    Setting("MAX_BODY_BYTES", "KUNJUNG_MAX_BODY_BYTES", 16 * 1024 * 1024, _positive_int,
            "Largest request body accepted, as sent (413 above it)"),
    Setting("MAX_DECOMPRESSED_BYTES", "KUNJUNG_MAX_DECOMPRESSED_BYTES", 64 * 1024 * 1024, _positive_int,
            "Largest body after gzip decompression (413 above it)"),
    Setting("MAX_BATCH_EVENTS", "KUNJUNG_MAX_BATCH_EVENTS", 1000, _positive_int,
            "Most events in one sync push"),
    Setting("ACCESS_TOKEN_MINUTES", "KUNJUNG_ACCESS_TOKEN_MINUTES", 15, _positive_int,
            "Lifetime of an access token"),
    Setting("REFRESH_TOKEN_DAYS", "KUNJUNG_REFRESH_TOKEN_DAYS", 30, _positive_int,
            "Lifetime of a refresh token (officers stay offline for weeks)"),
    Setting("CLOCK_SKEW_SECONDS", "KUNJUNG_CLOCK_SKEW_SECONDS", 300, _positive_int,
            "How far ahead of the server clock an event's HLC may be"),
    Setting("TRUSTED_PROXIES", "KUNJUNG_TRUSTED_PROXIES", 0, _non_negative_int,
            "Number of reverse proxies in front of kunjung whose X-Forwarded-For is trusted"),
    Setting("LOGIN_RATE_LIMIT", "KUNJUNG_LOGIN_RATE_LIMIT", 10, _positive_int,
            "Failed logins per username before each further try must wait longer (doubling); per known "
            "device in the window; five times as many per client address in the window"),
    Setting("LOGIN_RATE_WINDOW_SECONDS", "KUNJUNG_LOGIN_RATE_WINDOW_SECONDS", 300, _positive_int,
            "Length of the login rate-limit window"),
    Setting("COLLECT_BACKLOG_DAYS", "KUNJUNG_COLLECT_BACKLOG_DAYS", 5, _positive_int,
            "Days an ODK Collect offline update waits for the earlier one of its branch before it is taken in "
            "without it, flagged collect_forced (as ODK Central does)"),
    Setting("BLOB_DIR", "KUNJUNG_BLOB_DIR", None, str,
            "Folder of the files attached to visits; unset: <store file>-blobs beside the SQLite file, or "
            "GridFS in the MongoDB database"),
    Setting("APP_HOSTS", "KUNJUNG_APP_HOSTS", 1, _positive_int,
            "How many hosts run kunjung on this store; above 1, files and uploads under way must be where they "
            "all reach them: GridFS, or KUNJUNG_BLOB_DIR on a shared volume with KUNJUNG_BLOB_DIR_SHARED "
            "(docs/scaling.md)"),
    Setting("BLOB_DIR_SHARED", "KUNJUNG_BLOB_DIR_SHARED", False, _bool,
            "KUNJUNG_BLOB_DIR is one volume every app host mounts (NFS, a cluster file system)"),
    Setting("MAX_IMAGE_BYTES", "KUNJUNG_MAX_IMAGE_BYTES", 20 * 1024 * 1024, _positive_int,
            "Largest photo, signature or drawing (413 above it)"),
    Setting("MAX_AUDIO_BYTES", "KUNJUNG_MAX_AUDIO_BYTES", 100 * 1024 * 1024, _positive_int,
            "Largest audio recording (413 above it)"),
    Setting("MAX_VIDEO_BYTES", "KUNJUNG_MAX_VIDEO_BYTES", 1024 * 1024 * 1024, _positive_int,
            "Largest video (413 above it)"),
    Setting("MAX_FILE_BYTES", "KUNJUNG_MAX_FILE_BYTES", 50 * 1024 * 1024, _positive_int,
            "Largest file attached to a file question (413 above it)"),
    Setting("LOAD_LIBRARY_FORMS", "KUNJUNG_LOAD_LIBRARY_FORMS", True, _bool,
            "Publish the shipped forms on first start"),
    Setting("LOG_LEVEL", "KUNJUNG_LOG_LEVEL", "INFO", str.upper, "Logging level"),
    Setting("CENTRAL", "KUNJUNG_CENTRAL", True, _bool,
            "This server is the central one: only the central server erases personal data"),
    Setting("AUDIT_RETENTION_DAYS", "KUNJUNG_AUDIT_RETENTION_DAYS", 730, _positive_int,
            "Days the audit log keeps an entry; kunjung apply-retention removes older ones"),
    Setting("RAW_BODY_RETENTION_DAYS", "KUNJUNG_RAW_BODY_RETENTION_DAYS", 365, _positive_int,
            "Days after its review that a visit's raw event body and its files are kept; kunjung "
            "apply-retention removes them"),
    Setting("PUBLIC_URL", "KUNJUNG_PUBLIC_URL", None, lambda text: text.strip().rstrip("/") or None,
            "The address phones reach the server at (http://192.168.1.10:8000 on the hall's Wi-Fi, or the "
            "district's https name); put in ODK Collect's set-up QR codes. Unset: the address a request came to"),
    Setting("RELAY_BACKGROUND", "KUNJUNG_RELAY_BACKGROUND", True, _bool,
            "At a village hall: exchange events with upstream in the background (docs/relay.md)"),
    Setting("RELAY_INTERVAL_SECONDS", "KUNJUNG_RELAY_INTERVAL_SECONDS", 60, _positive_int,
            "At a village hall: seconds between rounds while the link is up"),
)


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings, each from its environment variable when set, else its default."""
    environ = os.environ if environ is None else environ
    config: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.env)
        if raw is None or raw == "":
            config[setting.key] = setting.default
            continue
        try:
            config[setting.key] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{setting.env}: {exc}") from None
    return config


# -- where the store and the secret live ----------------------------------------------------------------
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def checkout_root() -> Path | None:
    """The kunjung checkout this package runs from (an editable install), or None for an installed copy.

    It is the package's own folder that counts, never the working directory: ``kunjung …`` run
    from elsewhere must not quietly make a new, empty store there.
    """
    if (PACKAGE_ROOT / "setup.cfg").is_file() and (PACKAGE_ROOT / "scripts" / "serve").is_file():
        return PACKAGE_ROOT
    return None


def resolve_locations(config: dict[str, Any]) -> dict[str, Any]:
    """Fill in DATABASE_URL and SECRET_KEY_FILE from the checkout's ``var/`` when unset; refuse when
    there is no checkout to default to."""
    root = checkout_root()
    if not config.get("DATABASE_URL"):
        if root is None:
            raise ConfigError(gettext("KUNJUNG_DATABASE_URL is not set: say where the store is, e.g. "
                                      "sqlite:////var/lib/kunjung/kunjung.db or mongodb://host/kunjung?replicaSet=rs0 "
                                      "(only a checkout of kunjung has a default, its own var/ folder)"))
        config["DATABASE_URL"] = f"sqlite:///{root / 'var' / 'kunjung.db'}"
    if not config.get("SECRET_KEY") and not config.get("SECRET_KEY_FILE"):
        if root is None:
            raise ConfigError(gettext("KUNJUNG_SECRET_KEY_FILE is not set: say where the server's secret is kept, "
                                      "e.g. /var/lib/kunjung/secret_key (or give the secret itself in "
                                      "KUNJUNG_SECRET_KEY)"))
        config["SECRET_KEY_FILE"] = str(root / "var" / "secret_key")
    return config


def sqlite_path(url: str) -> Path | None:
    """The file of an embedded store's URL (None for another backend or an in-memory store)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///")
    return None if path in ("", ":memory:") else Path(path)


def protect_store_files(url: str) -> None:
    """Make the embedded store's file owner-only (0600) before SQLite opens it.

    SQLite gives its -wal and -shm files the mode of the database file, so creating the file
    0600 first is what keeps those private too. A store made 0644 by an older version is
    narrowed. Anything that fails here is left for the store itself to report.
    """
    path = sqlite_path(url)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if name.exists() and stat.S_IMODE(name.stat().st_mode) & 0o077:
                name.chmod(0o600)
    except OSError:
        return


# -- the secret ---------------------------------------------------------------------------------------------
RETIRED = "retired"


def read_secret_file(path: Path) -> tuple[str, list[RetiredSecret]]:
    """The current secret (first line) and the retired ones (``retired <unix seconds> <secret>`` lines)."""
    current = ""
    retired: list[RetiredSecret] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        words = line.split()
        if not words:
            continue
        if words[0] == RETIRED:
            try:
                retired.append(RetiredSecret(words[2], float(words[1])))
            except (IndexError, ValueError):
                raise ConfigError(gettext("%(path)s line %(line)s: expected 'retired <unix seconds> <secret>'",
                                          path=path, line=number)) from None
        elif not current:
            current = words[0]
        else:
            raise ConfigError(gettext("%(path)s line %(line)s: a second current secret", path=path, line=number))
    if len(current) < 32:
        raise ConfigError(gettext("%(path)s holds a secret shorter than 32 characters", path=path))
    return current, retired


def _write_secret_file(path: Path, current: str, retired: list[RetiredSecret]) -> None:
    lines = [current] + [f"{RETIRED} {r.retired_at:.0f} {r.secret}" for r in retired]
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def load_secrets(config: dict[str, Any]) -> tuple[str, list[RetiredSecret]]:
    """The current secret and the retired ones: KUNJUNG_SECRET_KEY as it is (no retired ones),
    else the secret file, generated on first use."""
    if config.get("SECRET_KEY"):
        return str(config["SECRET_KEY"]), []
    path = Path(config["SECRET_KEY_FILE"])
    if path.exists():
        return read_secret_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # O_EXCL: two workers starting together must not write two different keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_secret_file(path)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return key, []


def rotate_secret(config: dict[str, Any], now: float | None = None) -> tuple[str, list[RetiredSecret]]:
    """Make a new secret in the secret file and keep the old one as retired from ``now``.

    Retired secrets past the refresh-token lifetime verify nothing any more and are dropped.
    The running server reads the file at start: restart it to sign with the new secret.
    """
    if config.get("SECRET_KEY"):
        raise ConfigError(gettext("the secret comes from KUNJUNG_SECRET_KEY: change it there (tokens signed with the "
                                  "old one stop working), or unset it to keep the secret in KUNJUNG_SECRET_KEY_FILE"))
    now = time.time() if now is None else now
    path = Path(config["SECRET_KEY_FILE"])
    current, retired = load_secrets(config)
    grace = config["REFRESH_TOKEN_DAYS"] * 86400
    kept = [RetiredSecret(current, now)] + [r for r in retired if now - r.retired_at <= grace]
    new = secrets.token_urlsafe(48)
    _write_secret_file(path, new, kept)
    return new, kept
