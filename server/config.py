"""Configuration: defaults, ``KUNJUNG_*`` environment variables, and the kept secret key."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
    raise ValueError(f"expected true/false, got {text!r}")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"expected a positive whole number, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"expected zero or a positive whole number, got {text!r}")
    return value


# The table in README.md lists these; keep them in step.
SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", "KUNJUNG_DATABASE_URL", "sqlite:///var/kunjung.db", str,
            "Store URL: sqlite:///path (embedded) or mongodb://host/db?replicaSet=rs0"),
    Setting("MONGO_ALLOW_STANDALONE", "KUNJUNG_MONGO_ALLOW_STANDALONE", False, _bool,
            "Accept a standalone mongod, which has no transactions (a push cut short may leave part of it)"),
    Setting("SECRET_KEY", "KUNJUNG_SECRET_KEY", None, str,
            "Key that signs tokens; if unset, one is generated and kept in KUNJUNG_SECRET_KEY_FILE"),
    Setting("SECRET_KEY_FILE", "KUNJUNG_SECRET_KEY_FILE", "var/secret_key", str,
            "Where the generated secret key is kept (mode 0600)"),
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
            "Failed logins allowed per username and per client address in the window"),
    Setting("LOGIN_RATE_WINDOW_SECONDS", "KUNJUNG_LOGIN_RATE_WINDOW_SECONDS", 300, _positive_int,
            "Length of the login rate-limit window"),
    Setting("LOAD_LIBRARY_FORMS", "KUNJUNG_LOAD_LIBRARY_FORMS", True, _bool,
            "Publish the shipped forms on first start"),
    Setting("LOG_LEVEL", "KUNJUNG_LOG_LEVEL", "INFO", str.upper, "Logging level"),
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


def ensure_secret_key(config: dict[str, Any]) -> str:
    """The configured secret, or the one kept in SECRET_KEY_FILE, generated on first use."""
    if config.get("SECRET_KEY"):
        return str(config["SECRET_KEY"])
    path = Path(config["SECRET_KEY_FILE"])
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if len(key) < 32:
            raise ConfigError(f"{path} holds a secret shorter than 32 characters")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # O_EXCL: two workers starting together must not write two different keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return key
