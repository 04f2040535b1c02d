"""The ``kunjung`` command line: set-up, data care and imports an admin runs on the server."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from flask import Flask

from sync import DocumentFormatError, Record

from . import config as config_module
from . import create_app
from .audit import audit
from .blobs import blob_store, blobs_beside, restore_blobs
from .blobs.attachments import collect_garbage
from .blobs.disk import DiskBlobStore
from .cli_language import install_cli_language
from .config import ConfigError
from .cursors import renew_store_epoch
from .errors import ApiError
from .forms_registry import import_form, load_library
from .household_import import CHUNK as REGISTER_CHUNK
from .household_import import RegisterError, import_households, read_register
from .households import rebuild_household, write_household
from .i18n import N_, _, translate_errors, translate_known
from .privacy.erasure import erase_household, erase_person, require_central
from .privacy.people import checked_number, number_hash, person_export
from .privacy.retention import apply_retention, plan_retention
from .relay.cli import relay_group
from .security.passwords import minimum_length, passwords
from .security.scope import Scope
from .storage import StorageError, Store, Writer
from .store import get_store
from .users import create_user
from .villages import CHUNK as VILLAGES_CHUNK
from .villages import GeoJsonError, import_villages, read_geojson_file


class Context:
    """Builds the application once, on first use, so ``--help`` needs no store."""

    def __init__(self) -> None:
        self._app: Flask | None = None

    @property
    def app(self) -> Flask:
        if self._app is None:
            self._app = create_app()
        return self._app

    @property
    def store(self) -> Store:
        return get_store(self.app)


@contextlib.contextmanager
def owner_only() -> Iterator[None]:
    """Files made inside are readable by their owner only (backups hold personal data)."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


pass_context = click.make_pass_decorator(Context, ensure=True)


# click's own refusals (a missing option, "Usage:") in the shell's language, like kunjung's
install_cli_language()


@click.group(help=N_("kunjung: offline-first household visits. Settings come from KUNJUNG_* variables."))
def cli() -> None:
    pass


@cli.command("init", help=N_("Create or migrate the store and the secret key; safe to run again."))
@pass_context
def init_command(ctx: Context) -> None:
    store = ctx.store
    click.echo(_("store ready at %(url)s (schema v%(schema)s)", url=_safe_url(ctx.app.config["DATABASE_URL"]),
                 schema=store.schema_version()))


@cli.command("backup", help=N_("Write a consistent copy of the embedded store to DESTINATION (mode 0600) while the "
                               "server runs."))
@click.argument("destination", type=click.Path(dir_okay=False, writable=True))
@click.option("--force", is_flag=True, help=N_("Replace DESTINATION if it exists."))
@pass_context
def backup_command(ctx: Context, destination: str, force: bool) -> None:
    target = Path(destination)
    if target.exists() and not force:
        raise click.ClickException(_("%(path)s exists already; give --force to replace it", path=destination))
    with owner_only():
        ctx.store.backup(destination)
        # After the store: every file the copy names was stored before the visit was marked as holding it.
        copied = blob_store(ctx.app).copy_to(blobs_beside(destination))
    target.chmod(0o600)
    click.echo(_("backup written to %(path)s (%(size)s bytes); %(copied)s new attachment file(s) copied to "
                 "%(blobs)s", path=destination, size=format(target.stat().st_size, ","), copied=copied,
                 blobs=blobs_beside(destination)))


@cli.command("rotate-key", help=N_("Make a new server secret; the old one keeps verifying for the refresh-token "
                                   "lifetime.\n\nRestart the server afterwards: it reads the secret file when it "
                                   "starts."))
def rotate_key_command() -> None:
    try:
        settings = config_module.resolve_locations(config_module.from_environment())
        _new, retired = config_module.rotate_secret(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    days = settings["REFRESH_TOKEN_DAYS"]
    click.echo(_("new secret written to %(path)s; the old one verifies tokens and cursors for %(days)s more days "
                 "(%(kept)s retired secret(s) kept). Restart the server to use it.",
                 path=settings["SECRET_KEY_FILE"], days=days, kept=len(retired)))


@cli.command("restore", help=N_("Replace the embedded store's content with the backup at SOURCE. Stop the server "
                                "first."))
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("--yes", is_flag=True, help=N_("Do not ask for confirmation."))
@pass_context
def restore_command(ctx: Context, source: str, yes: bool) -> None:
    store = ctx.store
    if not hasattr(store, "restore_from"):
        raise click.ClickException(_("restore is for the embedded store; use mongorestore for MongoDB"))
    if not yes:
        click.confirm(_("Replace everything in %(url)s with %(path)s?", url=_safe_url(ctx.app.config["DATABASE_URL"]),
                        path=source),
                      abort=True)

    store.restore_from(source)
    store.ensure_schema()
    if Path(blobs_beside(source)).is_dir():
        restored = restore_blobs(DiskBlobStore(blobs_beside(source)), blob_store(ctx.app))
        click.echo(_("%(count)s attachment file(s) restored from %(path)s", count=restored, path=blobs_beside(source)))
    renew_store_epoch(store)  # cursors given out before the restore name another history
    click.echo(_("restored from %(path)s (schema v%(schema)s)", path=source, schema=store.schema_version()))


@cli.command("create-user", help=N_("Create a user; the password is prompted for (never an argument, never echoed)."))
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "supervisor", "officer"]), required=True)
@click.option("--village", "villages", multiple=True,
              help=N_("A village code (32.04.05.2001), or for a supervisor a kecamatan (32.04.05). Repeatable."))
@click.option("--password-stdin", is_flag=True, help=N_("Read the password from the first line of stdin."))
@pass_context
def create_user_command(ctx: Context, username: str, role: str, villages: tuple[str, ...],
                        password_stdin: bool) -> None:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(_("Password (at least %(count)s characters, not a common one)",
                                  count=minimum_length(role)),
                                hide_input=True, confirmation_prompt=True)
    with ctx.app.app_context():
        try:
            create_user(ctx.store, passwords(ctx.app), username.strip().lower(), password, role, list(villages),
                        actor="cli", address="cli")
        except ApiError as exc:
            details = "; ".join(f"{k}: {', '.join(v)}" for k, v in translate_errors(exc.errors).items())
            raise click.ClickException(f"{translate_known(exc.message)} {details}".strip()) from None
    name = username.strip().lower()
    click.echo(_("created %(role)s %(username)s for %(villages)s", role=role, username=name,
                 villages=", ".join(villages)) if villages else _("created %(role)s %(username)s", role=role,
                                                                   username=name))


@cli.command("import-villages", help=N_("Load village boundaries from a GeoJSON FeatureCollection; exits 1 if any "
                                        "feature is refused."))
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--code-field", default="code", show_default=True, help=N_("Feature property with the Kemendagri code."))
@click.option("--name-field", default="name", show_default=True, help=N_("Feature property with the village name."))
@pass_context
def import_villages_command(ctx: Context, file: str, code_field: str, name_field: str) -> None:
    try:
        features = read_geojson_file(file)
    except GeoJsonError as exc:
        raise click.ClickException(exc.message) from None

    def progress(done: int, total: int) -> None:
        if total > VILLAGES_CHUNK:  # a file of one chunk is done before progress would help
            click.echo("  " + _("%(done)s/%(total)s features (%(percent)s%%)",
                                done=done, total=total, percent=100 * done // total), err=True)

    with ctx.app.app_context():
        report = import_villages(ctx.store, features, code_field=code_field, name_field=name_field,
                                 progress=progress, actor="cli", address="cli")
    for line in report.summary_lines():
        click.echo(line)
    if report.counts["refused"]:
        sys.exit(1)


@cli.command("import-households", help=N_("Load a household register (.csv or .xlsx, such as a DTSEN extract with its"
                                          " desil column) as households to verify; exits 1 if any row is refused."))
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--village-field", default=None,
              help=N_("Column holding the village code, when it is not named kode desa / village_code."))
@pass_context
def import_households_command(ctx: Context, file: str, village_field: str | None) -> None:

    def progress(done: int, total: int | None) -> None:
        if done and (total is None or total > REGISTER_CHUNK):  # a file of one chunk is done before progress would help
            if total:
                line = _("%(done)s/%(total)s rows (%(percent)s%%)", done=done, total=total,
                         percent=100 * done // total)
            else:  # a register read as it streams: its length is not known yet
                line = _("%(done)s rows so far", done=done)
            click.echo("  " + line, err=True)

    with ctx.app.app_context():
        try:
            register = read_register(file, village_field)
            report = import_households(ctx.store, register, actor="cli", progress=progress, address="cli")
        except RegisterError as exc:
            click.echo(f"kunjung: {translate_known(exc.message)}", err=True)
            for where, messages in translate_errors(exc.errors).items():
                for message in messages:
                    click.echo(f"  {where}: {message}", err=True)
            sys.exit(1)
    for line in report.summary_lines():
        click.echo(line)
    if report.rejected:
        sys.exit(1)


@cli.command("import-form", help=N_("Import FILE (.xlsx, .xls XLSForm or .json definition) as a draft, or publish it;"
                                    " problems exit 1."))
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--publish", "publish_it", is_flag=True, help=N_("Publish the version once imported."))
@click.option("--assign-all", is_flag=True, help=N_("Assign the form to every village."))
@click.option("--village", "villages", multiple=True,
              help=N_("Assign the form to this village (32.04.05.2001) or kecamatan (32.04.05). Repeatable."))
@pass_context
def import_form_command(ctx: Context, file: str, publish_it: bool, assign_all: bool,
                        villages: tuple[str, ...]) -> None:
    if assign_all and villages:
        raise click.UsageError(_("give --assign-all or --village, not both"))
    with ctx.app.app_context():
        try:
            result = import_form(ctx.store, file, publish_it=publish_it, assign_all=assign_all,
                                 villages=villages, actor="cli", address="cli")
        except ApiError as exc:
            click.echo(f"kunjung: {translate_known(exc.message)}", err=True)
            for where, messages in translate_errors(exc.errors).items():
                for message in messages:
                    click.echo(f"  {where}: {message}", err=True)
            sys.exit(1)
    summary = result["summary"]
    for where, messages in (summary.get("warnings") or {}).items():
        for message in messages:
            click.echo(_("warning: %(where)s: %(message)s", where=where, message=message), err=True)
    click.echo(_("%(done)s: form %(form)s version %(version)s hash %(hash)s (%(state)s)",
                 done=", ".join(result["done"]), form=summary["form_id"], version=summary["version"],
                 hash=summary["hash"], state=summary["state"]))
    if result["assignment"]:
        where = _("all villages") if result["assignment"]["all"] else ", ".join(result["assignment"]["villages"])
        click.echo(_("assigned to %(where)s", where=where))
    if result["unassigned"]:
        click.echo(_("warning: form %(form)s is published but assigned to no village: officers will not see it; "
                     "assign it with --assign-all or --village", form=summary["form_id"]), err=True)


@cli.command("collect-qr", help=N_("Make an ODK Collect credential for a user's phone and its set-up QR code (PNG and"
                                   " SVG).\n\nThe token inside is shown only now; making another for the same phone "
                                   "replaces it, and revoking the device stops it. The URL is KUNJUNG_PUBLIC_URL: the"
                                   " address phones reach the server at."))
@click.argument("username")
@click.option("--device", required=True, help=N_("The phone's device name (hp-ani-02): one credential per phone."))
@click.option("--json", "as_json", is_flag=True,
              help=N_("Print Collect's settings JSON instead of writing the images."))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".", show_default=True,
              help=N_("Folder for the PNG and SVG of the QR code."))
@pass_context
def collect_qr_command(ctx: Context, username: str, device: str, as_json: bool, out_dir: str) -> None:
    import json

    from .app_credentials import collect_settings, issue_credential, qr_images, settings_payload
    from .security.scope import Scope

    public = ctx.app.config.get("PUBLIC_URL")
    if not public:
        public = f"http://{os.environ.get('KUNJUNG_HOST', '127.0.0.1')}:{os.environ.get('KUNJUNG_PORT', '8000')}"
        click.echo(_("KUNJUNG_PUBLIC_URL is not set: the QR code points at %(url)s, which phones may not reach",
                     url=public), err=True)
    with ctx.app.app_context():
        try:
            token = issue_credential(ctx.store, username.strip().lower(), device, actor="cli",
                                     actor_scope=Scope("admin", ()), address="cli")
        except ApiError as exc:
            details = "; ".join(f"{k}: {', '.join(v)}" for k, v in translate_errors(exc.errors).items())
            raise click.ClickException(f"{translate_known(exc.message)} {details}".strip()) from None
    settings = collect_settings(public, token, username.strip().lower(), device)
    if as_json:
        click.echo(json.dumps(settings, indent=2))
        return
    png, svg = qr_images(settings_payload(settings))
    stem = Path(out_dir) / f"collect-{username.strip().lower()}-{device}"
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with owner_only():
        stem.with_suffix(".png").write_bytes(png)
        stem.with_suffix(".svg").write_text(svg, encoding="utf-8")
    click.echo(_("server URL (shown once): %(url)s", url=settings["general"]["server_url"]))
    click.echo(_("scan in ODK Collect (Add project > Scan QR code): %(png)s, %(svg)s", png=str(stem) + ".png",
                 svg=str(stem) + ".svg"))


@cli.command("collect-backlog", help=N_("Take in the ODK Collect offline updates held longer than DAYS for the "
                                        "earlier submission of their branch, without it (each visit flagged "
                                        "collect_forced), as ODK Central does; the server also does it hourly."))
@click.option("--days", type=click.IntRange(min=0), default=None,
              help=N_("Age of the held updates to take in (default KUNJUNG_COLLECT_BACKLOG_DAYS, 5)."))
@pass_context
def collect_backlog_command(ctx: Context, days: int | None) -> None:
    from datetime import timedelta

    from .blobs.attachments import MediaLimits
    from .collect import force_held
    from .syncing import push_service

    days = ctx.app.config["COLLECT_BACKLOG_DAYS"] if days is None else days
    with ctx.app.app_context():
        outcomes = force_held(ctx.store, push_service(), older_than=timedelta(days=days), blobs=blob_store(),
                              limits=MediaLimits.from_config(ctx.app.config))
    for outcome in outcomes:
        click.echo(_("%(instance)s (held since %(since)s for %(waited)s): %(status)s %(message)s",
                     instance=outcome.held["instance_id"], since=outcome.held["held_at"], waited=outcome.held["id"],
                     status=outcome.status, message=translate_known(outcome.message)))
    click.echo(_("%(count)s held submission(s) taken in without the earlier one of their branch",
                 count=sum(1 for outcome in outcomes if outcome.status < 300)))


@cli.command("load-library", help=N_("Publish the shipped forms not yet in the store (a new form is assigned to every"
                                     " village)."))
@pass_context
def load_library_command(ctx: Context) -> None:
    with ctx.app.app_context():
        outcomes = load_library(ctx.store, actor="cli", address="cli")
    failed = False
    for outcome in outcomes:
        if outcome.published:
            click.echo(_("published %(form)s %(version)s hash %(hash)s", form=outcome.form_id,
                         version=outcome.version, hash=outcome.hash))
        else:
            failed = failed or outcome.reason != "already published"
            click.echo(_("skipped %(form)s %(version)s (%(reason)s)", form=outcome.form_id, version=outcome.version,
                         reason=translate_known(outcome.reason)))
    if failed:
        sys.exit(1)


@cli.command("rebuild-households", help=N_("Fold every household again from its events and report any difference from"
                                           " the stored state."))
@click.option("--fix", is_flag=True, help=N_("Rewrite households that differ from the fold of their events."))
@pass_context
def rebuild_households_command(ctx: Context, fix: bool) -> None:
    store = ctx.store
    total = store.count("households")
    checked = differ = fixed = 0
    for doc in store.iterate("households", order_by="id"):
        checked += 1
        if checked % 1000 == 0:
            click.echo(_("... %(checked)s of %(total)s checked", checked=format(checked, ","),
                         total=format(total, ",")), err=True)
        rebuilt = rebuild_household(store, doc["id"])
        try:
            stored = Record.from_document(doc["record"])
        except DocumentFormatError:
            difference = _("stored in an older record format")  # a start-up upgrades these too
        else:
            if rebuilt == stored:
                continue
            paths = sorted(p for p in set(rebuilt.fields) | set(stored.fields)
                           if rebuilt.fields.get(p) != stored.fields.get(p))
            difference = _("differs in %(paths)s", paths=", ".join(paths) or "village/creation")
        differ += 1
        click.echo(f"{doc['id']} ({doc['village']}): {difference}")
        if fix:
            store.unit_of_work(lambda tx, hid=doc["id"], record=rebuilt: _rewrite_household(tx, hid, record))
            fixed += 1
    click.echo(_("%(checked)s households checked, %(differ)s differ, %(fixed)s fixed", checked=checked, differ=differ,
                 fixed=fixed) if fix else _("%(checked)s households checked, %(differ)s differ", checked=checked,
                                             differ=differ))
    if differ and not fix:
        sys.exit(1)


@cli.command("gc-attachments", help=N_("Remove attachment files (and thumbnails) that no visit names, uploads "
                                       "left unfinished, and what a crash left behind."))
@click.option("--grace-hours", type=click.FloatRange(min=0), default=24.0, show_default=True,
              help=N_("Keep files stored, and uploads sent to, more recently than this (an upload may be finishing "
                      "its visit)."))
@click.option("--dry-run", is_flag=True, help=N_("Only say what would be removed."))
@pass_context
def gc_attachments_command(ctx: Context, grace_hours: float, dry_run: bool) -> None:
    from .api.uploads import upload_service_for

    service = upload_service_for(ctx.app)
    result = collect_garbage(ctx.store, service.blobs, grace_seconds=grace_hours * 3600, dry_run=dry_run,
                             discard_upload=service.discard)
    for sha256 in result.blobs:
        click.echo(_("would remove %(sha256)s", sha256=sha256) if dry_run else _("removed %(sha256)s", sha256=sha256))
    figures = {"files": len(result.blobs), "bytes": f"{result.bytes:,}", "uploads": len(result.uploads),
               "young": result.kept_young, "hours": f"{grace_hours:g}"}
    click.echo(_("would remove %(files)s file(s), %(bytes)s bytes, and %(uploads)s unfinished upload(s); kept "
                 "%(young)s unnamed file(s) younger than %(hours)s h", **figures) if dry_run else
               _("removed %(files)s file(s), %(bytes)s bytes, and %(uploads)s unfinished upload(s); kept "
                 "%(young)s unnamed file(s) younger than %(hours)s h", **figures))
    leftovers = {"partials": len(result.partials), "chunks": len(result.form_file_chunks)}
    if any(leftovers.values()):
        click.echo(_("would remove %(partials)s partial upload(s) no upload names and %(chunks)s form file chunk(s) "
                     "no form file names", **leftovers) if dry_run else
                   _("removed %(partials)s partial upload(s) no upload names and %(chunks)s form file chunk(s) no "
                     "form file names", **leftovers))


def _rewrite_household(tx: Writer, household_id: str, record: Record) -> None:
    current = tx.get("households", household_id)
    write_household(tx, record, current, current["seq"])


def _operator() -> str:
    """Who runs a command, for the audit log: the account on the server's machine."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _refused(exc: ApiError) -> None:
    click.echo(f"kunjung: {translate_known(exc.message)}"
               + "".join(f"\n  {k}: {'; '.join(v)}" for k, v in translate_errors(exc.errors).items()), err=True)
    sys.exit(1)


@cli.command("erase-household", help=N_("Erase a household's personal values everywhere kunjung keeps them (a "
                                        "tombstone syncs to devices)."))
@click.argument("household_id")
@click.option("--reason", required=True, help=N_("Why: the request this erasure answers (kept in the audit log)."))
@click.option("--yes", is_flag=True, help=N_("Do not ask for confirmation."))
@pass_context
def erase_household_command(ctx: Context, household_id: str, reason: str, yes: bool) -> None:
    with ctx.app.app_context():
        try:
            require_central()
            store = ctx.store
            doc = store.get("households", household_id)
            if doc is None:
                raise ApiError(404, "not_found", _("No household %(household)s.", household=household_id))
            if not yes:
                click.confirm(_("Erase every personal value of household %(household)s (%(village)s)?",
                                household=household_id, village=doc["village"]), abort=True)
            done = erase_household(store, household_id, actor=_operator(), reason=reason, address="cli")
        except ApiError as exc:
            _refused(exc)
    for summary in done["households"]:
        click.echo(_("erased household %(household)s: %(events)s events, %(visits)s visits, %(attachments)s "
                     "attachments scrubbed", household=summary["household_id"], events=summary["events"],
                     visits=summary["visits"], attachments=summary["attachments"]))


@cli.command("erase-person", help=N_("Erase one person by NIK: their roster row or head's fields in every household, "
                                     "and the answers of every visit mentioning the NIK."))
@click.argument("nik")
@click.option("--reason", required=True, help=N_("Why: the request this erasure answers (kept in the audit log)."))
@click.option("--yes", is_flag=True, help=N_("Do not ask for confirmation."))
@pass_context
def erase_person_command(ctx: Context, nik: str, reason: str, yes: bool) -> None:
    with ctx.app.app_context():
        try:
            require_central()
            nik = checked_number(nik, "nik")
            store = ctx.store
            held = person_export(store, Scope("admin"), nik)
            if not held["households"] and not held["visits"]:
                click.echo(_("kunjung holds nothing about this NIK; nothing erased"))
                return
            if not yes:
                click.confirm(_("Erase this person from %(households)s households and %(visits)s visits?",
                                households=len(held["households"]), visits=len(held["visits"])), abort=True)
            done = erase_person(store, nik, actor=_operator(), reason=reason, address="cli")
        except ApiError as exc:
            _refused(exc)
    for summary in done["households"]:
        click.echo(_("household %(household)s: erased %(fields)s; %(events)s events, %(visits)s visits scrubbed",
                     household=summary["household_id"], fields=", ".join(summary["erase"]) or _("answers"),
                     events=summary["events"], visits=summary["visits"]))


@cli.command("export-person", help=N_("Print, as JSON, everything kunjung holds about one person (a data-subject "
                                      "access request; recorded)."))
@click.argument("nik")
@pass_context
def export_person_command(ctx: Context, nik: str) -> None:
    with ctx.app.app_context():
        try:
            nik = checked_number(nik, "nik")
        except ApiError as exc:
            _refused(exc)
        store = ctx.store
        found = person_export(store, Scope("admin"), nik)
        audit(store, "person_exported", actor=_operator(), person=number_hash(nik), address="cli",
              details={"households": [h["household_id"] for h in found["households"]],
                       "visits": [v["visit_id"] for v in found["visits"]]})
    click.echo(json.dumps(found, ensure_ascii=False, indent=2))


@cli.command("apply-retention", help=N_("Remove raw bodies (and photos) of visits reviewed longer ago than "
                                        "KUNJUNG_RAW_BODY_RETENTION_DAYS and audit entries older than "
                                        "KUNJUNG_AUDIT_RETENTION_DAYS. Without --yes a dry run: what would go."))
@click.option("--yes", is_flag=True, help=N_("Remove what is past its keeping time; without it, only list it."))
@pass_context
def apply_retention_command(ctx: Context, yes: bool) -> None:
    with ctx.app.app_context():
        store = ctx.store
        plan = plan_retention(store, body_days=ctx.app.config["RAW_BODY_RETENTION_DAYS"],
                              audit_days=ctx.app.config["AUDIT_RETENTION_DAYS"])
        if not yes:
            click.echo(_("dry run: would remove the raw bodies of %(visits)s visits reviewed before %(body_cutoff)s, "
                         "%(attachments)s attachments, and %(entries)s audit entries from before %(audit_cutoff)s",
                         visits=len(plan.bodies), body_cutoff=plan.body_cutoff, attachments=plan.attachments,
                         entries=plan.audit_entries, audit_cutoff=plan.audit_cutoff))
            for visit_id in plan.bodies:
                click.echo(_("  visit %(visit)s", visit=visit_id))
            click.echo(_("run again with --yes to remove them"))
            return
        done = apply_retention(store, plan, actor=_operator())
    click.echo(_("removed the raw bodies of %(visits)s visits, %(attachments)s attachments and %(entries)s audit "
                 "entries", visits=len(done.bodies), attachments=done.attachments, entries=done.audit_entries))


def _safe_url(url: str) -> str:
    """The URL without a password, for printing."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


cli.add_command(relay_group)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="kunjung", standalone_mode=True)
    except (ConfigError, StorageError) as exc:
        click.echo(f"kunjung: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
