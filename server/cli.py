"""The ``kunjung`` command line: set-up, data care and imports an admin runs on the server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from flask import Flask

from .config import ConfigError
from .storage import StorageError


class Context:
    """Builds the application once, on first use, so ``--help`` needs no store."""

    def __init__(self) -> None:
        self._app: Flask | None = None

    @property
    def app(self) -> Flask:
        if self._app is None:
            from . import create_app

            self._app = create_app()
        return self._app

    @property
    def store(self) -> Any:
        from .store import get_store

        return get_store(self.app)


pass_context = click.make_pass_decorator(Context, ensure=True)


@click.group(help="kunjung: offline-first household visits. Settings come from KUNJUNG_* variables.")
def cli() -> None:
    pass


@cli.command("init")
@pass_context
def init_command(ctx: Context) -> None:
    """Create or migrate the store and the secret key; safe to run again."""
    store = ctx.store
    click.echo(f"store ready at {_safe_url(ctx.app.config['DATABASE_URL'])} (schema v{store.schema_version()})")


@cli.command("backup")
@click.argument("destination", type=click.Path(dir_okay=False, writable=True))
@pass_context
def backup_command(ctx: Context, destination: str) -> None:
    """Write a consistent copy of the embedded store to DESTINATION while the server runs."""
    ctx.store.backup(destination)
    size = Path(destination).stat().st_size
    click.echo(f"backup written to {destination} ({size:,} bytes)")


@cli.command("restore")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def restore_command(ctx: Context, source: str, yes: bool) -> None:
    """Replace the embedded store's content with the backup at SOURCE. Stop the server first."""
    store = ctx.store
    if not hasattr(store, "restore_from"):
        raise click.ClickException("restore is for the embedded store; use mongorestore for MongoDB")
    if not yes:
        click.confirm(f"Replace everything in {_safe_url(ctx.app.config['DATABASE_URL'])} with {source}?",
                      abort=True)
    store.restore_from(source)
    store.ensure_schema()
    click.echo(f"restored from {source} (schema v{store.schema_version()})")


@cli.command("create-user")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "supervisor", "officer"]), required=True)
@click.option("--village", "villages", multiple=True,
              help="A village code (32.04.05.2001), or for a supervisor a kecamatan (32.04.05). Repeatable.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@pass_context
def create_user_command(ctx: Context, username: str, role: str, villages: tuple[str, ...],
                        password_stdin: bool) -> None:
    """Create a user; the password is prompted for (never an argument, never echoed)."""
    from .errors import ApiError
    from .users import create_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with ctx.app.app_context():
        try:
            create_user(username.strip().lower(), password, role, list(villages), actor="cli", address="cli")
        except ApiError as exc:
            details = "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.errors.items())
            raise click.ClickException(f"{exc.message} {details}".strip()) from None
    click.echo(f"created {role} {username.strip().lower()}" + (f" for {', '.join(villages)}" if villages else ""))


def _safe_url(url: str) -> str:
    """The URL without a password, for printing."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="kunjung", standalone_mode=True)
    except (ConfigError, StorageError) as exc:
        click.echo(f"kunjung: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
