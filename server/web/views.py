"""The pages: each reads through the same services and scope as the API handler that answers the same question."""

from __future__ import annotations

import base64
import functools
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Response, current_app, g, jsonify, redirect, render_template, request, stream_with_context, url_for

from forms.identifiers import Area

from .. import forms_registry as registry
from ..api.forms import attached_files
from ..app_credentials import collect_settings, issue_credential, qr_images, settings_payload
from ..areas import scoped_areas, village_where
from ..audit import audit, audit_entries, client_address
from ..blobs import blob_store
from ..blobs.attachments import readable_attachment, record_download, thumbnail
from ..conflicts import list_conflicts, resolve_conflict
from ..devices import revoke_device
from ..errors import ApiError
from ..exports import (
    LABEL_MODES,
    Tally,
    VisitFilter,
    csv_zip,
    filename_stamp,
    geojson,
    list_records,
    open_record,
    parse_bound,
    recorded,
    xlsx,
)
from ..household_import import RegisterError, import_households, read_upload
from ..households import HOUSEHOLDS, household_history, household_view, scoped_household
from ..i18n import N_, gettext, translate_errors, translate_known
from ..ratelimit import LoginLimits, admit_login, forget_expired, login_succeeded
from ..reporting import counted, device_figures, officer_figures, review_queue, stream_visits, village_coverage, zone_of
from ..security.passwords import passwords
from ..security.scope import Scope, scope_of
from ..security.tokens import end_login
from ..store import get_store
from ..users import ROLES, create_user, get_user, list_users, update_user
from ..villages import get_village, list_villages
from ..visits import REVIEW_STATES, get_visit, list_visits, review_visit
from . import blp, editor
from . import session as web_session
from .i18n import COOKIE as LANGUAGE_COOKIE
from .i18n import LANGUAGES, label, page_language

# Words the templates translate from stored codes (roles, review states, flags, event types, form
# states): marked here so that scripts/messages catalogues them.
CODE_WORDS = (N_("admin"), N_("supervisor"), N_("officer"), N_("visit"), N_("household_edit"), N_("resolution"),
              N_("import"), N_("review"), N_("draft"), N_("published"), N_("outside_village"), N_("no_boundary"),
              N_("no_geotag"), N_("supersedes_unrequested"), N_("constraint_failed"), N_("expression_error"),
              N_("required_missing"), N_("unknown_choice"), N_("question"), N_("order"), N_("choices"),
              N_("title"), N_("added"), N_("changed"), N_("removed"), N_("reordered"), N_("lookup"), N_("media"),
              N_("collect_forced"), N_("collect_version_behind"))
MAP_PAGE = 2000  # visit points per map request: the map fetches pages until it has them all
SEARCH_SCAN = 20000  # households read at most for one name search
QUEUE_PAGE = 50


# -- helpers --------------------------------------------------------------------------------------
def user() -> dict[str, Any]:
    return g.web_user


def scope() -> Scope:
    return scope_of(g.web_user)


def roles(*allowed: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The page is for these roles; an officer is told to use their phone, others get 403."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            role = g.web_user["role"]
            if role == "officer":
                return render_template("officer.html"), 403
            if role not in allowed:
                return refused(403, "forbidden")
            return view(*args, **kwargs)

        return guarded

    return decorator


def refused(status: int, reason: str) -> tuple[str, int]:
    return render_template("refused.html", status=status, reason=reason), status


@blp.errorhandler(ApiError)
def _api_error(error: ApiError) -> Any:
    # the engines' sentences in a refusal are English; the page says them in its language
    return render_template("refused.html", status=error.status, reason=error.code,
                           message=translate_known(error.message), errors=translate_errors(error.errors)), error.status


def new_event_id() -> str:
    return uuid.uuid4().hex


def text_arg(name: str, limit: int = 64) -> str | None:
    value = (request.args.get(name) or "").strip()
    return value[:limit] or None


def area_arg(name: str = "village") -> str | None:
    value = text_arg(name, 32)
    return value if value and Area.is_code(value) else None


@blp.app_template_filter("localtime")
def localtime(value: Any, village: str | None = None) -> str:
    """An ISO instant in the village's time zone (WIB, WITA or WIT), minutes shown."""
    if not value or not isinstance(value, str):
        return "—"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is None:
        return value
    zone = zone_of(village)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M ") + str(zone.tzname(None))


@blp.app_template_filter("label")
def _label(value: Any) -> str:
    return label(value)


@blp.app_template_filter("shown")
def shown(value: Any) -> str:
    """Any stored value as text for a page (lists joined; Jinja escapes it)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, list):
        return ", ".join(shown(v) for v in value)
    if isinstance(value, dict):
        if "lat" in value and "lon" in value:
            return f"{value['lat']}, {value['lon']}"
        return ", ".join(f"{k}: {shown(v)}" for k, v in value.items())
    return str(value)


@blp.app_context_processor
def _globals() -> dict[str, Any]:
    return {"csrf_token": web_session.csrf_token, "web_user": getattr(g, "web_user", None),
            "languages": LANGUAGES, "page_language": page_language(), "hall_node": _hall_node}


def _hall_node() -> bool:
    """Whether this server is a village hall (the menu then links its status page); asked by the menu."""
    from ..relay.node import is_hall
    from ..storage import StoreUnavailable

    try:
        return is_hall(get_store())
    except StoreUnavailable:  # the page says the store is down; the menu need not
        return False


def village_names(store: Any, caller: Scope) -> dict[str, str]:
    return {v["code"]: v["name"] for v in list_villages(store, caller, limit=5000)}


# -- sign-in ----------------------------------------------------------------------------------------
@blp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    next_url = request.values.get("next") or ""
    if not next_url.startswith("/web/") or next_url.startswith("//"):
        next_url = url_for("web.dashboard")
    if request.method == "GET":
        if g.web_user is not None:
            return redirect(next_url)
        return render_template("login.html", next_url=next_url)
    store = get_store()
    username = (request.form.get("username") or "").strip().lower()[:64]
    password = (request.form.get("password") or "")[:1024]
    address = client_address()
    hasher = passwords()
    try:
        # The same limits and audit entries as POST /api/v1/auth/login.
        admission = admit_login(store, LoginLimits.from_config(current_app.config), username=username,
                                address=address, known_device=None)
    except ApiError as refused_error:
        return render_template("login.html", next_url=next_url, error="rate_limited",
                               retry=refused_error.headers.get("Retry-After") if refused_error.headers else None), 429
    found = store.get("users", username) if username else None
    if found is None or not hasher.verify(found["password_hash"], password):
        if found is None:
            hasher.verify(None, password)
        audit(store, "login_failed", actor=username, address=address, details={"device_id": None, "web": True})
        forget_expired(store)
        return render_template("login.html", next_url=next_url, error="invalid_credentials"), 401
    login_succeeded(store, admission)
    if found.get("disabled"):
        audit(store, "login_refused_disabled", actor=username, address=address)
        return render_template("login.html", next_url=next_url, error="account_disabled"), 403
    login_id = web_session.start_web_login(store, found, address)
    audit(store, "login_succeeded", actor=username, address=address, details={"device_id": None, "web": True})
    response = redirect(next_url if found["role"] != "officer" else url_for("web.dashboard"))
    web_session.set_session_cookie(response, login_id, found)
    return response


@blp.route("/logout", methods=["POST"])
def logout() -> Any:
    store = get_store()
    end_login(store, g.web_login, "logout")
    audit(store, "logout", actor=user()["id"], address=client_address(), details={"web": True})
    response = redirect(url_for("web.login"))
    web_session.clear_session_cookie(response)
    return response


@blp.route("/language", methods=["POST"])
def language() -> Any:
    chosen = request.form.get("language")
    back = request.form.get("back") or ""
    if not back.startswith("/web/") or back.startswith("//"):
        back = url_for("web.dashboard")
    response = redirect(back)
    if chosen in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, chosen, max_age=365 * 86400, samesite="Lax", httponly=True,
                            secure=web_session.secure_cookies(), path="/")
    return response


# -- dashboard ------------------------------------------------------------------------------------
def review_counts(store: Any, caller: Scope, area: str | None) -> dict[str, Counter]:
    """Per village: visits flagged, pending review and approved, a revision counted once (as the figures
    count it), from one pass over the visits in scope."""
    counts: dict[str, Counter] = {}
    for found in stream_visits(store, scoped_areas(caller, area)):
        if not counted(found):
            continue
        tally = counts.setdefault(found["village"], Counter())
        tally[found.get("review_state") or "pending"] += 1
        if found.get("flagged"):
            tally["flagged"] += 1
    return counts


def dashboard_figures(store: Any, caller: Scope, area: str | None, stale_days: int) -> dict[str, Any]:
    """What the dashboard shows: the coverage, officer and device reports the API serves, plus review counts."""
    coverage = village_coverage(store, caller, area=area, days=7)
    counts = review_counts(store, caller, area)
    rows = [{**village, "flagged": counts.get(village["village"], Counter())["flagged"],
             "pending": counts.get(village["village"], Counter())["pending"],
             "approved": counts.get(village["village"], Counter())["approved"]} for village in coverage["villages"]]
    return {"coverage": coverage, "villages": rows,
            "officers": officer_figures(store, caller, area=area, days=7)["officers"],
            "devices": device_figures(store, caller, area=area, stale_days=stale_days)}


@blp.route("/")
@roles("supervisor", "admin")
def dashboard() -> Any:
    store = get_store()
    try:
        stale = max(1, min(366, int(request.args.get("stale_days") or current_app.config["WEB_STALE_DAYS"])))
    except ValueError:
        stale = current_app.config["WEB_STALE_DAYS"]
    figures = dashboard_figures(store, scope(), area_arg(), stale)
    return render_template("dashboard.html", stale_days=stale, **figures)


# -- review queue and visits ---------------------------------------------------------------------
@blp.route("/queue")
@roles("supervisor", "admin")
def queue() -> Any:
    store = get_store()
    kind = text_arg("kind")
    kind = kind if kind in ("conflict", "visit") else None
    review = text_arg("review") or "pending"
    review = review if review in ("pending", "any", *REVIEW_STATES) else "pending"
    after = None
    if text_arg("after_kind") in ("conflict", "visit") and text_arg("after_id", 128):
        after = (text_arg("after_kind"), text_arg("after_id", 128))
    filters = {"kind": kind, "village": area_arg(), "flag": text_arg("flag"), "officer": text_arg("officer"),
               "form_id": text_arg("form_id"), "review": review}
    found = review_queue(store, scope(), kind=kind, area=filters["village"], flag=filters["flag"],
                         officer=filters["officer"], form_id=filters["form_id"], review=review, after=after,
                         limit=QUEUE_PAGE)
    template = "queue_rows.html" if request.headers.get("HX-Request") else "queue.html"
    return render_template(template, found=found, filters=filters, names=village_names(store, scope()),
                           review_states=REVIEW_STATES)


def answer_rows(definition: Any, answers: dict[str, Any]) -> list[dict[str, Any]]:
    """The visit's answers under the form's questions, in form order, choices by their labels."""
    if definition is None:
        return [{"kind": "answer", "label": name, "name": name, "value": value} for name, value in answers.items()]
    choices = definition.choices

    def choice_label(field: dict[str, Any], value: Any) -> Any:
        listed = {c["name"]: c["label"] for c in choices.get(field.get("list") or "", [])}
        if isinstance(value, list):
            return [label(listed.get(v, v)) for v in value]
        return label(listed[value]) if isinstance(value, str) and value in listed else value

    rows = []
    for ref in definition.iter_fields():
        field = ref.field
        if ref.repeats:
            continue
        if field["type"] == "group":
            rows.append({"kind": "group", "label": label(field.get("label")) or field["name"]})
            continue
        if field["type"] == "repeat":
            members = answers.get(field["name"]) or []
            children = [r for r in definition.iter_fields() if r.repeat == field["name"] and r.type != "group"]
            rows.append({"kind": "repeat", "label": label(field.get("label")) or field["name"],
                         "columns": [label(c.field.get("label")) or c.name for c in children],
                         "rows": [[shown(choice_label(c.field, m.get(c.name))) for c in children]
                                  for m in members if isinstance(m, dict)]})
            continue
        if field["name"] not in answers:
            continue
        rows.append({"kind": "answer", "label": label(field.get("label")) or field["name"], "name": field["name"],
                     "value": choice_label(field, answers[field["name"]])})
    return rows


@blp.route("/visits/<visit_id>")
@roles("supervisor", "admin")
def visit(visit_id: str) -> Any:
    store = get_store()
    found = get_visit(store, user(), scope(), visit_id[:128])
    definition = registry.published_definition(store, found["form_id"], found["form_version"])
    village = get_village(store, scope(), found["village"])
    history = []
    household = store.get(HOUSEHOLDS, found["household_id"])
    if household is not None and scope().covers(household["village"]):
        history = list(household_history(store, found["household_id"]))
    return render_template("visit.html", visit=found, rows=answer_rows(definition, found.get("answers") or {}),
                           title=label(definition.title) if definition else found["form_id"],
                           village=village, history=history, review_states=REVIEW_STATES,
                           tile_url=current_app.config["WEB_TILE_URL"])


def _file_filename(doc: dict[str, Any]) -> str:
    name = doc["path"].rsplit("/", 1)[-1]
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:100] or "file"


@blp.route("/visits/<visit_id>/files/<path:path>")
@roles("supervisor", "admin")
def visit_file(visit_id: str, path: str) -> Any:
    """A visit's file (or ``?thumbnail=1`` its small copy), as the API's attachment download serves it: scope
    checked, every read in the audit log."""
    store = get_store()
    doc = readable_attachment(store, user(), scope(), visit_id[:128], path[:500])
    blobs = blob_store()
    if request.args.get("thumbnail"):
        digest = thumbnail(store, blobs, doc)
        record_download(store, user()["id"], doc, "thumbnail")
        return Response(blobs.read(digest), mimetype="image/jpeg",
                        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"})
    record_download(store, user()["id"], doc, "file")
    return Response(stream_with_context(blobs.chunks(doc["sha256"])),
                    mimetype=doc.get("stored_type") or doc.get("media_type") or "application/octet-stream",
                    headers={"Content-Length": str(doc["size"]), "Cache-Control": "private, no-store",
                             "Content-Disposition": f'attachment; filename="{_file_filename(doc)}"',
                             # a file of a visit is data, never a page of this origin
                             "Content-Security-Policy": "default-src 'none'; sandbox"})


@blp.route("/visits/<visit_id>/boundary.json")
@roles("supervisor", "admin")
def visit_boundary(visit_id: str) -> Any:
    store = get_store()
    found = get_visit(store, user(), scope(), visit_id[:128])
    village = get_village(store, scope(), found["village"])
    return jsonify({"boundary": (village or {}).get("boundary"), "geotag": found.get("geotag")})


@blp.route("/visits/<visit_id>/review", methods=["POST"])
@roles("supervisor", "admin")
def review(visit_id: str) -> Any:
    state = request.form.get("state")
    comment = (request.form.get("comment") or "").strip()[:2000] or None
    if state not in REVIEW_STATES:
        return refused(422, "invalid")
    event = request.form.get("event_id") or new_event_id()
    review_visit(get_store(), user()["id"], scope(), visit_id[:128], event[:64], state, comment)
    return redirect(url_for("web.visit", visit_id=visit_id, reviewed=state))


# -- conflicts ------------------------------------------------------------------------------------
@blp.route("/conflicts")
@roles("supervisor", "admin")
def conflicts() -> Any:
    store = get_store()
    after = text_arg("after", 128)
    found = list_conflicts(store, scope(), area=area_arg(), after=after, limit=QUEUE_PAGE + 1)
    households = {}
    for conflict in found[:QUEUE_PAGE]:
        doc = store.get(HOUSEHOLDS, conflict["household_id"])
        if doc is not None:
            households[conflict["household_id"]] = household_view(doc)["fields"]
    return render_template("conflicts.html", conflicts=found[:QUEUE_PAGE], households=households,
                           more=found[QUEUE_PAGE - 1]["id"] if len(found) > QUEUE_PAGE else None,
                           names=village_names(store, scope()))


def typed_value(text: str, like: Any) -> Any:
    """A value typed in the page, read as the kind of value the competing heads hold."""
    text = text.strip()
    if isinstance(like, bool):
        return text.lower() in ("1", "true", "ya", "yes")
    if isinstance(like, int):
        try:
            return int(text)
        except ValueError:
            pass
    if isinstance(like, float):
        try:
            return float(text)
        except ValueError:
            pass
    if isinstance(like, list):
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


@blp.route("/conflicts/<conflict_id>/resolve", methods=["POST"])
@roles("supervisor", "admin")
def resolve(conflict_id: str) -> Any:
    store = get_store()
    conflict = store.get("conflicts", conflict_id[:128])
    if conflict is None or not scope().covers(conflict["village"]):
        raise ApiError(404, "not_found", gettext("No such conflict."))
    heads = conflict.get("heads") or []
    choice = request.form.get("choice", "")
    if choice == "typed":
        value = typed_value(request.form.get("typed", "")[:10000], heads[0]["value"] if heads else "")
    else:
        picked = [h for h in heads if h["stamp"] == choice]
        if not picked:
            return refused(422, "invalid")
        value = picked[0]["value"]
    resolve_conflict(store, user()["id"], scope(), conflict["id"], request.form.get("event_id") or new_event_id(),
                     value, [h["stamp"] for h in heads])
    return redirect(url_for("web.conflicts", resolved=conflict["id"]))


# -- households -----------------------------------------------------------------------------------
def matches(fields: dict[str, Any], needle: str) -> bool:
    for key in ("head_name", "nama", "head_nik", "nik", "no_kk", "address"):
        state = fields.get(key)
        value = state.get("value") if isinstance(state, dict) else None
        if isinstance(value, str) and needle in value.lower():
            return True
    return False


@blp.route("/households")
@roles("supervisor", "admin")
def households() -> Any:
    store = get_store()
    needle = (text_arg("q", 100) or "").lower()
    area = area_arg()
    where = village_where(scoped_areas(scope(), area))
    found: list[dict[str, Any]] = []
    scanned = 0
    after = text_arg("after", 128)
    while len(found) < QUEUE_PAGE + 1 and scanned < SEARCH_SCAN:
        page = store.find(HOUSEHOLDS, where, after=after, limit=500)
        for doc in page:
            view = household_view(doc)
            if not needle or matches(view["fields"], needle):
                found.append(view)
        scanned += len(page)
        if len(page) < 500:
            break
        after = page[-1]["id"]
    return render_template("households.html", households=found[:QUEUE_PAGE], q=needle, village=area,
                           more=found[QUEUE_PAGE - 1]["id"] if len(found) > QUEUE_PAGE else None,
                           names=village_names(store, scope()), truncated=scanned >= SEARCH_SCAN)


@blp.route("/households/<household_id>")
@roles("supervisor", "admin")
def household(household_id: str) -> Any:
    store = get_store()
    doc = scoped_household(store, scope(), household_id[:128])
    return render_template("household.html", household=household_view(doc),
                           history=list(household_history(store, doc["id"])))


# -- map ------------------------------------------------------------------------------------------
@blp.route("/map")
@roles("supervisor", "admin")
def map_page() -> Any:
    store = get_store()
    return render_template("map.html", tile_url=current_app.config["WEB_TILE_URL"],
                           names=village_names(store, scope()), village=area_arg(), review=text_arg("review"),
                           flag=text_arg("flag"))


@blp.route("/map/villages.json")
@roles("supervisor", "admin")
def map_villages() -> Any:
    store = get_store()
    features = []
    for doc in store.find("villages", scope().where("id"), limit=5000):
        if doc.get("boundary"):
            features.append({"type": "Feature", "geometry": doc["boundary"],
                             "properties": {"code": doc["code"], "name": doc["name"]}})
    return jsonify({"type": "FeatureCollection", "features": features})


def map_points(store: Any, caller_user: dict[str, Any], caller: Scope, *, area: str | None, review: str | None,
               flag: str | None, after: str | None, limit: int | None = None) -> dict[str, Any]:
    """One page of visit points for the map, by id (the /api/v1/visits listing, trimmed to what a point needs)."""
    limit = limit or MAP_PAGE
    found = list_visits(store, caller_user, caller, area=area, review=review, flag=flag, after=after,
                        limit=limit + 1)
    points = []
    for visit_doc in found[:limit]:
        geotag = visit_doc.get("geotag") or {}
        if not isinstance(geotag.get("lat"), int | float) or not isinstance(geotag.get("lon"), int | float):
            continue
        points.append([visit_doc["id"], round(geotag["lat"], 6), round(geotag["lon"], 6),
                       visit_doc.get("review_state"), visit_doc.get("flag_codes") or []])
    return {"points": points, "next": found[limit - 1]["id"] if len(found) > limit else None}


@blp.route("/map/visits.json")
@roles("supervisor", "admin")
def map_visits() -> Any:
    review = text_arg("review")
    review = review if review in ("pending", *REVIEW_STATES) else None
    return jsonify(map_points(get_store(), user(), scope(), area=area_arg(), review=review, flag=text_arg("flag"),
                              after=text_arg("after", 128)))


# -- forms (admin) --------------------------------------------------------------------------------
@blp.route("/forms")
@roles("admin")
def forms() -> Any:
    store = get_store()
    return render_template("forms.html", forms=registry.all_forms(store))


def sheet_rows(errors: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """An upload's errors as (sheet, row, message), in sheet and row order; keys the XLSForm reader
    names ``survey!4`` carry their sheet and row, others (a JSON path, the file) have no row."""
    rows = []
    for where, messages in errors.items():
        sheet, _, row = where.partition("!")
        for message in messages:
            rows.append((sheet if row else where, row, message))

    def order(item: tuple[str, str, str]) -> tuple[str, int]:
        return item[0], int(item[1]) if item[1].isdigit() else 0

    return sorted(rows, key=order)


@blp.route("/forms/upload", methods=["POST"])
@roles("admin")
def form_upload() -> Any:
    store = get_store()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        missing = [("file", "", gettext("Choose an XLSForm (.xlsx) or a JSON definition."))]
        return render_template("forms.html", forms=registry.all_forms(store), upload_errors=missing), 422
    try:
        # the XLSForm with its files (choice CSVs, lookups, media), read as the API's multipart upload reads them
        submission = registry.from_upload(upload.read(), upload.filename).with_files(attached_files(request.files))
        made = registry.create_draft(store, submission, actor=user()["id"], address=client_address())
    except ApiError as error:
        return render_template("forms.html", forms=registry.all_forms(store),
                               upload_errors=sheet_rows(translate_errors(error.errors) or
                                                        {"file": [translate_known(error.message)]}),
                               upload_message=translate_known(error.message), upload_name=upload.filename), error.status
    return redirect(url_for("web.form", form_id=made["form_id"], uploaded=made["version"]))


@blp.route("/forms/<form_id>")
@roles("admin")
def form(form_id: str) -> Any:
    store = get_store()
    entry = registry.one_form(store, form_id[:64])
    # each draft's files, so that one missing some says which before publishing refuses it
    files = {v["version"]: registry.version_files(store, entry["form_id"], v["version"], scope())
             for v in entry["versions"] if v["state"] == "draft"}
    return render_template("form.html", form=entry, names=village_names(store, scope()), files=files)


@blp.route("/forms/<form_id>/versions/<version>/publish", methods=["POST"])
@roles("admin")
def form_publish(form_id: str, version: str) -> Any:
    registry.publish(get_store(), form_id[:64], version[:64], actor=user()["id"], address=client_address())
    return redirect(url_for("web.form", form_id=form_id, published=version))


@blp.route("/forms/<form_id>/archive", methods=["POST"])
@roles("admin")
def form_archive(form_id: str) -> Any:
    archived = request.form.get("archived") != "0"
    registry.set_archived(get_store(), form_id[:64], archived, actor=user()["id"], address=client_address())
    return redirect(url_for("web.form", form_id=form_id))


@blp.route("/forms/<form_id>/assignment", methods=["POST"])
@roles("admin")
def form_assignment(form_id: str) -> Any:
    everywhere = request.form.get("all") == "1"
    villages = [v for v in request.form.getlist("villages") if v]
    villages += [v.strip() for v in (request.form.get("more_villages") or "").replace(",", " ").split() if v.strip()]
    registry.set_assignment(get_store(), form_id[:64], all_villages=everywhere, villages=villages[:1000],
                            actor=user()["id"], address=client_address())
    return redirect(url_for("web.form", form_id=form_id, assigned=1))


# -- the form editor (admin) ----------------------------------------------------------------------
def _version_doc(store: Any, form_id: str, version: str) -> dict[str, Any]:
    doc = store.get("form_versions", registry.version_id(form_id[:64], version[:64]))
    if doc is None:
        raise ApiError(404, "not_found", gettext("No such form version."))
    return doc


def _published_definition(store: Any, form_id: str) -> dict[str, Any] | None:
    form_doc = store.get("forms", form_id)
    if not form_doc or not form_doc.get("latest_version"):
        return None
    return store.get("form_versions", registry.version_id(form_id, form_doc["latest_version"]))["definition"]


@blp.route("/forms/<form_id>/versions/<version>/edit")
@roles("admin")
def form_editor(form_id: str, version: str) -> Any:
    """A draft started from a version: a published one gets the next version name, a draft keeps its own."""
    store = get_store()
    doc = _version_doc(store, form_id, version)
    tables = editor.definition_rows(doc["definition"])
    if doc["state"] == "published":
        tables["settings"]["version"] = editor.next_version(doc["version"])
    return render_editor(store, form_id, tables, base=doc["version"])


def render_editor(store: Any, form_id: str, tables: dict[str, Any], *, base: str, errors: dict[str, Any] | None = None,
                  checked: dict[str, Any] | None = None, status: int = 200, saved: str | None = None) -> Any:
    published = _published_definition(store, form_id)
    return render_template("editor.html", form_id=form_id, tables=tables, base=base,
                           errors=errors or {"survey": {}, "choices": {}, "other": []}, checked=checked,
                           survey_columns=editor.SURVEY_COLUMNS, choice_columns=editor.CHOICE_COLUMNS,
                           published_version=(published or {}).get("settings", {}).get("version"),
                           saved=saved), status


def _check_tables(tables: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    """The tables through the XLSForm importer and the definition checks the API runs: (submission, errors)."""
    try:
        submission = registry.from_upload(editor.xlsx_bytes(tables), "editor.xlsx")
        registry.validate(submission)
    except ApiError as error:
        return None, editor.row_errors(error.errors or {"form": [error.message]})
    return submission, None


def _edit_operation(tables: dict[str, Any], operation: str) -> None:
    """Add, remove or move a row of the survey or choices table (``add-survey:3`` adds after row 3)."""
    verb, _, where = operation.partition(":")
    action, _, table_name = verb.partition("-")
    if table_name not in ("survey", "choices"):
        return
    rows = tables[table_name]
    columns = editor.SURVEY_COLUMNS if table_name == "survey" else editor.CHOICE_COLUMNS
    index = int(where) if where.isdigit() else len(rows) - 1
    if action == "add" and len(rows) < editor.MAX_ROWS:
        new_row = editor.blank(columns)
        if table_name == "survey":
            new_row["type"] = "text"
        elif rows and 0 <= index < len(rows):
            new_row["list_name"] = rows[index]["list_name"]
        rows.insert(min(index + 1, len(rows)), new_row)
    elif action == "remove" and 0 <= index < len(rows):
        rows.pop(index)
    elif action == "up" and 0 < index < len(rows):
        rows[index - 1], rows[index] = rows[index], rows[index - 1]
    elif action == "down" and 0 <= index < len(rows) - 1:
        rows[index + 1], rows[index] = rows[index], rows[index + 1]


def _live_check(store: Any, form_id: str, tables: dict[str, Any]) -> dict[str, Any]:
    """What the editor shows as the admin types: the errors the API's upload would report, at their rows; the
    difference to the published version; and the type guard's verdict (which saving would enforce)."""
    submission, errors = _check_tables(tables)
    if errors:
        return {"errors": errors, "changes": None, "guard": None}
    definition = registry.validate(submission)
    guard = registry.type_guard(store, definition, submission)
    return {"errors": {"survey": {}, "choices": {}, "other": []}, "warnings": submission.warnings,
            "changes": editor.difference(_published_definition(store, form_id), definition.data),
            "guard": {"ok": not guard, "problems": editor.row_errors(guard)}}


@blp.route("/forms/<form_id>/editor/check", methods=["POST"])
@roles("admin")
def form_editor_check(form_id: str) -> Any:
    """The editor's as-you-type check (htmx): the live panel, and each question's errors swapped in beside it."""
    form_id = form_id[:64]
    tables = _posted_tables(form_id)
    return render_template("editor_live.html", tables=tables, live=_live_check(get_store(), form_id, tables))


def _posted_tables(form_id: str) -> dict[str, Any]:
    """The editor's posted rows, as the sheets of this form, whatever form id was posted."""
    tables = editor.rows_from_form(request.form)
    tables["settings"]["form_id"] = form_id
    return tables


@blp.route("/forms/<form_id>/editor", methods=["POST"])
@roles("admin")
def form_editor_post(form_id: str) -> Any:
    store = get_store()
    form_id = form_id[:64]
    tables = _posted_tables(form_id)
    base = (request.form.get("base") or "")[:64]
    action = request.form.get("action") or "check"
    if action not in ("check", "save", "download"):
        _edit_operation(tables, action)
        return render_editor(store, form_id, tables, base=base)
    submission, errors = _check_tables(tables)
    if errors:
        return render_editor(store, form_id, tables, base=base, errors=errors, status=422)
    if action == "download":
        filename = f"{form_id}-{tables['settings']['version'] or 'draft'}.xlsx"
        return Response(editor.xlsx_bytes(tables), mimetype=XLSX_TYPE,
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    definition = registry.validate(submission)
    checked = {"definition": definition.data, "warnings": submission.warnings,
               "changes": editor.difference(_published_definition(store, form_id), definition.data)}
    if action == "check":
        return render_editor(store, form_id, tables, base=base, checked=checked)
    existing = store.get("form_versions", registry.version_id(form_id, definition.version))
    try:
        if existing is not None and existing["state"] == "draft":
            registry.replace_draft(store, form_id, definition.version, submission, actor=user()["id"],
                                   address=client_address())
        else:
            registry.create_draft(store, submission, actor=user()["id"], address=client_address())
    except ApiError as error:  # the published-version guard (a type change of a saved field, say) and the like
        return render_editor(store, form_id, tables, base=base, checked=checked,
                             errors=editor.row_errors(error.errors or {"form": [error.message]}), status=error.status)
    return redirect(url_for("web.form", form_id=form_id, uploaded=definition.version))


@blp.route("/forms/<form_id>/versions/<version>/xlsform")
@roles("admin")
def form_xlsform(form_id: str, version: str) -> Any:
    """A version's definition as an XLSForm workbook."""
    doc = _version_doc(get_store(), form_id, version)
    return Response(editor.xlsx_bytes(editor.definition_rows(doc["definition"])), mimetype=XLSX_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="{doc["form_id"]}-{doc["version"]}.xlsx"'})


# -- users and devices (admin) --------------------------------------------------------------------
def supervised(caller: Scope, target: dict[str, Any]) -> bool:
    """An officer every one of whose villages lies in the caller's scope (as app credentials require)."""
    villages = target.get("villages") or []
    return target["role"] == "officer" and bool(villages) and all(caller.covers(v) for v in villages)


@blp.route("/users")
@roles("admin", "supervisor")
def users() -> Any:
    """Admins: every user and device, with every action. Supervisors: their officers and devices, and the ODK
    Collect set-up code (the API lets them do that and no more)."""
    store = get_store()
    everyone = list_users(store)
    admin = user()["role"] == "admin"
    if not admin:
        everyone = [u for u in everyone if supervised(scope(), u)]
    shown = {u["id"] for u in everyone}
    devices: dict[str, list[dict[str, Any]]] = {}
    # Every device, by user: the query the device figures use (list_devices reads one user's).
    for device in store.find("devices", {}, order_by="username", limit=20000):
        if device["username"] in shown:
            devices.setdefault(device["username"], []).append(device)
    return render_template("users.html", users=everyone, devices=devices, roles=ROLES, admin=admin,
                           created=text_arg("created"), changed=text_arg("changed"))


def _user_form_errors(error: ApiError) -> dict[str, list[str]]:
    return translate_errors(error.errors) or {"_": [translate_known(error.message)]}


@blp.route("/users", methods=["POST"])
@roles("admin")
def user_create() -> Any:
    store = get_store()
    villages = [v.strip() for v in (request.form.get("villages") or "").replace(",", " ").split() if v.strip()]
    try:
        create_user(store, passwords(), (request.form.get("username") or "").strip().lower(),
                    request.form.get("password") or "", request.form.get("role") or "", villages,
                    actor=user()["id"], address=client_address())
    except ApiError as error:
        everyone = list_users(store)
        return render_template("users.html", users=everyone, devices={}, roles=ROLES, admin=True,
                               create_errors=_user_form_errors(error), given=request.form), error.status
    return redirect(url_for("web.users", created=request.form.get("username", "").strip().lower()))


@blp.route("/users/<username>", methods=["POST"])
@roles("admin")
def user_change(username: str) -> Any:
    store = get_store()
    target = get_user(store, username[:64])
    action = request.form.get("action")
    changes: dict[str, Any] = {}
    if action == "disable":
        changes["disabled"] = True
    elif action == "enable":
        changes["disabled"] = False
    elif action == "password":
        changes["password"] = request.form.get("password") or ""
    elif action == "villages":
        changes["villages"] = [v.strip() for v in (request.form.get("villages") or "").replace(",", " ").split()
                               if v.strip()]
    else:
        return refused(422, "invalid")
    try:
        update_user(store, passwords(), target["id"], changes, actor=user()["id"], address=client_address())
    except ApiError as error:
        return render_template("users.html", users=list_users(store), devices={}, roles=ROLES, admin=True,
                               change_errors={target["id"]: _user_form_errors(error)}), error.status
    return redirect(url_for("web.users", changed=target["id"]))


@blp.route("/users/<username>/collect", methods=["POST"])
@roles("admin", "supervisor")
def collect_setup(username: str) -> Any:
    """An ODK Collect credential for the user's phone and the QR code Collect scans (POST
    /api/v1/users/<username>/collect-credentials does the same); the token is shown only now."""
    store = get_store()
    target = get_user(store, username[:64])
    device = (request.form.get("device") or "").strip()[:128]
    try:
        token = issue_credential(store, target["id"], device, actor=user()["id"], actor_scope=scope(),
                                 address=client_address())
    except ApiError as error:
        return render_template("users.html", users=[target], devices={}, roles=ROLES,
                               admin=user()["role"] == "admin",
                               change_errors={target["id"]: _user_form_errors(error)}), error.status
    settings = collect_settings(current_app.config.get("PUBLIC_URL") or request.host_url.rstrip("/"), token,
                                target["id"], device)
    png, _ = qr_images(settings_payload(settings))
    return render_template("collect.html", username=target["id"], device=device,
                           server_url=settings["general"]["server_url"],
                           qr=base64.b64encode(png).decode()), 201


@blp.route("/users/<username>/devices/<device_id>/revoke", methods=["POST"])
@roles("admin")
def device_revoke(username: str, device_id: str) -> Any:
    store = get_store()
    target = get_user(store, username[:64])
    revoke_device(store, target["id"], device_id[:64], actor=user()["id"], address=client_address())
    return redirect(url_for("web.users", changed=target["id"]))


# -- registers (admin) ----------------------------------------------------------------------------
@blp.route("/registers", methods=["GET", "POST"])
@roles("admin")
def registers() -> Any:
    if request.method == "GET":
        return render_template("registers.html")
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return render_template("registers.html", error=gettext("Choose a register file (.csv or .xlsx).")), 422
    try:
        register = read_upload(upload.read(), upload.filename, text_arg("village_field") or
                               (request.form.get("village_field") or None))
        report = import_households(get_store(), register, actor=user()["id"], address=client_address())
    except RegisterError as error:
        return render_template("registers.html", error=translate_known(error.message),
                               errors=translate_errors(error.errors)), 422
    return render_template("registers.html", report=report.as_dict())


# -- exports --------------------------------------------------------------------------------------
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
EXPORT_FORMATS = {"csv_zip": (csv_zip, "application/zip", "csv.zip"),
                  "xlsx": (None, XLSX_TYPE, "xlsx"),
                  "geojson": (geojson, "application/geo+json", "geojson")}


@blp.route("/exports")
@roles("supervisor", "admin")
def exports() -> Any:
    store = get_store()
    return render_template("exports.html", forms=registry.forms_for(store, scope()),
                           names=village_names(store, scope()), review_states=REVIEW_STATES, labels=LABEL_MODES,
                           formats=list(EXPORT_FORMATS))


@blp.route("/exports/download", methods=["POST"])
@roles("supervisor", "admin")
def export_download() -> Any:
    """The export the API's /exports/visits.* streams, recorded the same way."""
    store = get_store()
    form = request.form
    kind = form.get("format")
    if kind not in EXPORT_FORMATS:
        return refused(422, "invalid")
    review = form.get("review") or None
    labels = form.get("labels") or "codes"
    try:
        filters = VisitFilter(form_id=(form.get("form_id") or None), area=(form.get("village") or None),
                              officer=(form.get("officer") or "").strip() or None,
                              review=review if review in ("pending", *REVIEW_STATES) else None,
                              start=parse_bound(form["from"], "from") if form.get("from") else None,
                              end=parse_bound(form["to"], "to") if form.get("to") else None,
                              labels=labels if labels in LABEL_MODES else "codes")
    except ApiError:
        raise
    except ValueError:
        return refused(422, "invalid")
    if filters.area is not None and not Area.is_code(filters.area):
        return refused(422, "invalid")
    areas = scoped_areas(scope(), filters.area)
    writer, mimetype, suffix = EXPORT_FORMATS[kind]
    actor = user()
    if writer is None:
        writer = functools.partial(xlsx, actor=actor["id"])
    record = open_record(store, actor=actor["id"], role=actor["role"], export_format=kind,
                         filters=filters.as_dict(), address=client_address())
    tally = Tally()
    body = stream_with_context(recorded(store, record, writer(store, areas, filters, tally), tally))
    return Response(body, mimetype=mimetype, headers={
        "Content-Disposition": f'attachment; filename="kunjung-visits-{filename_stamp()}.{suffix}"',
        "X-Export-Id": record["id"]})


# -- audit (admin) --------------------------------------------------------------------------------
@blp.route("/audit")
@roles("admin")
def audit_log() -> Any:
    before = text_arg("before", 40)
    action = text_arg("action")
    store = get_store()
    entries = audit_entries(store, action=action, before=before, limit=101)
    return render_template("audit.html", entries=entries[:100], action=action,
                           more=entries[99]["at"] if len(entries) > 100 else None,
                           exports=list_records(store, limit=50))


# -- a village hall's link to upstream (supervisors, admins; only on a hall node) ----------------------------
@blp.route("/hall")
@roles("supervisor", "admin")
def hall_page() -> Any:
    from ..relay.node import RelayError, hall_status

    try:
        status = hall_status(get_store())
    except RelayError:
        return refused(404, "not_a_hall")
    # Stored in English; said here in the reader's language.
    for key in ("clock_refusal",):
        if status[key]:
            status[key] = translate_known(status[key])
    for entry in [status["last_error"], *status["refused"], *status["files_refused"]]:
        if entry and entry.get("message"):
            entry["message"] = translate_known(entry["message"])
    return render_template("hall.html", status=status)
