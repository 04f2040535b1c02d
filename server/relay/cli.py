"""The ``kunjung relay`` commands: hall credentials on the central server, and a hall's link to it."""

from __future__ import annotations

import json

import click
from flask import Flask

from ..errors import ApiError
from ..i18n import N_, gettext, translate_known
from ..store import get_store
from .halls import create_hall, list_halls, public_hall, revoke_hall, set_hall_villages
from .node import RelayError, hall_node, hall_status, init_hall


def _app() -> Flask:
    from .. import create_app

    return create_app()


def _bound(app: Flask) -> int:
    return app.config["CLOCK_SKEW_SECONDS"] * 1000


def _fail(error: ApiError | RelayError) -> click.ClickException:
    details = "; ".join(f"{k}: {', '.join(v)}" for k, v in getattr(error, "errors", {}).items())
    return click.ClickException(f"{translate_known(error.message)} {details}".strip())


@click.group("relay", help=N_("Village-hall nodes: credentials on the central server, and a hall's exchange with it."))
def relay_group() -> None:
    pass


@relay_group.command("credential", help=N_("On the central server: make a hall credential and print it once (it "
                                           "is stored hashed)."))
@click.option("--name", required=True, help=N_("The hall's name, e.g. balai-sukamaju."))
@click.option("--village", "villages", multiple=True, required=True, help=N_("A village code the hall serves. "
                                                                             "Repeatable."))
def credential_command(name: str, villages: tuple[str, ...]) -> None:
    app = _app()
    with app.app_context():
        try:
            hall, token = create_hall(get_store(app), name.strip().lower(), list(villages), actor="cli",
                                      address="cli")
        except ApiError as error:
            raise _fail(error) from None
    click.echo(gettext("hall %(hall)s for %(villages)s", hall=hall["id"], villages=", ".join(hall["villages"])))
    click.echo(gettext("credential (shown once; give it to `kunjung relay init` on the hall laptop):"))
    click.echo(token)


@relay_group.command("revoke", help=N_("On the central server: cut a hall off (a stolen laptop); its "
                                       "credential stops working at once."))
@click.argument("name")
def revoke_command(name: str) -> None:
    app = _app()
    with app.app_context():
        try:
            revoke_hall(get_store(app), name.strip().lower(), actor="cli", address="cli")
        except ApiError as error:
            raise _fail(error) from None
    click.echo(gettext("revoked hall %(name)s", name=name.strip().lower()))


@relay_group.command("villages", help=N_("On the central server: give a hall other villages; it drops a lost one "
                                         "once its work for it has gone up."))
@click.argument("name")
@click.option("--village", "villages", multiple=True, required=True, help=N_("A village code the hall serves. "
                                                                             "Repeatable."))
def villages_command(name: str, villages: tuple[str, ...]) -> None:
    app = _app()
    with app.app_context():
        try:
            hall = set_hall_villages(get_store(app), name.strip().lower(), list(villages), actor="cli", address="cli")
        except ApiError as error:
            raise _fail(error) from None
    click.echo(gettext("hall %(hall)s for %(villages)s", hall=hall["id"], villages=", ".join(hall["villages"])))


@relay_group.command("halls", help=N_("On the central server: every hall and when it last made contact."))
def halls_command() -> None:
    app = _app()
    with app.app_context():
        for hall in list_halls(get_store(app)):
            shown = public_hall(hall)
            click.echo("\t".join([shown["name"], gettext("revoked") if shown["revoked"] else gettext("active"),
                                  gettext("last contact %(at)s", at=shown["last_contact_at"] or gettext("never")),
                                  ",".join(shown["villages"])]))


@relay_group.command("init", help=N_("On the hall laptop: become a hall of UPSTREAM, then take forms, "
                                     "villages, users and events."))
@click.option("--upstream", required=True, help=N_("The central server, https://host[:port]."))
@click.option("--credential", required=True, help=N_("The hall credential the central admin made."))
def init_command(upstream: str, credential: str) -> None:
    app = _app()
    with app.app_context():
        try:
            outcome = init_hall(get_store(app), upstream, credential, skew_bound_ms=_bound(app))
        except (RelayError, ValueError) as error:
            raise click.ClickException(translate_known(getattr(error, "message", str(error)))) from None
    click.echo(gettext("this node is hall %(hall)s of %(upstream)s", hall=outcome["hall"], upstream=upstream))
    click.echo(json.dumps(outcome["round"]))


@relay_group.command("sync", help=N_("On the hall laptop: one round with upstream (up, then down); resumable if cut."))
def sync_command() -> None:
    app = _app()
    with app.app_context():
        try:
            report = hall_node(get_store(app), skew_bound_ms=_bound(app)).round()
        except RelayError as error:
            raise click.ClickException(f"{error.code}: {translate_known(error.message)}") from None
    click.echo(json.dumps(report.as_dict()))


@relay_group.command("status", help=N_("On the hall laptop: last contact, what waits to go up, events "
                                       "upstream refused and why."))
@click.option("--json", "as_json", is_flag=True, help=N_("Print the status as JSON."))
def status_command(as_json: bool) -> None:
    app = _app()
    with app.app_context():
        try:
            status = hall_status(get_store(app))
        except RelayError as error:
            raise click.ClickException(translate_known(error.message)) from None
    if as_json:
        click.echo(json.dumps(status))
        return
    click.echo(gettext("hall %(hall)s of %(upstream)s (%(villages)s)", hall=status["hall"], upstream=status["upstream"],
                           villages=", ".join(status["villages"])))
    click.echo(gettext("last contact: %(contact)s; last try: %(attempt)s",
                       contact=status["last_contact_at"] or gettext("never"), attempt=status["last_attempt_at"]))
    if status["last_error"]:
        click.echo(gettext("last error: %(code)s: %(message)s", code=status["last_error"]["code"],
                           message=translate_known(status["last_error"]["message"])))
    if status["clock_refusal"]:
        click.echo(gettext("refusing phone pushes: %(reason)s", reason=translate_known(status["clock_refusal"])))
    click.echo(gettext("waiting to go up: %(count)s", count=status["waiting_up"]))
    click.echo(gettext("files waiting to go up: %(up)s; to come down: %(down)s", up=status["files_waiting_up"],
                       down=status["files_waiting_down"]))
    for entry in status["keeping"]:
        click.echo(translate_known(entry["message"]))
    for entry in status["dropped"][-5:]:
        click.echo(gettext("dropped village %(village)s at %(at)s", village=entry["village"], at=entry["at"]))
    click.echo(gettext("refused events: %(count)s", count=len(status["refused"])))
    for entry in status["refused"][-20:]:
        click.echo(f"  {entry['direction']} {entry['id']}: {entry['code']}: {entry['message']}")
    if status["files_refused"]:
        click.echo(gettext("refused files: %(count)s", count=len(status["files_refused"])))
    for entry in status["files_refused"][-20:]:
        click.echo(f"  {entry['direction']} {entry['visit_id']}/{entry['path']}: {entry['code']}: "
                   f"{translate_known(entry['message'] or '')}")
