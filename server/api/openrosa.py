"""The OpenRosa API that stock ODK Collect speaks, under token URLs /key/<token>/…: forms, entity lists, submissions."""

# Every answer here is XML, errors too (an OpenRosaResponse message), with the
# X-OpenRosa-Version and Date headers Collect expects. The paths follow ODK Central's
# (formList, a form's XML and manifest, attachments, dataset integrity, submission), so
# Collect needs nothing but the server URL its QR code gives.

from __future__ import annotations

import functools
from collections.abc import Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from forms.attachments import media_type_of
from forms.fieldtypes import check_file_name
from forms.xform import SubmissionError

from ..app_credentials import KEY_PREFIX, AppCaller, credential_holder
from ..audit import client_address
from ..blobs import blob_store
from ..blobs.attachments import MediaLimits
from ..collect import (
    HOUSEHOLDS_FILE,
    LISTS,
    MEMBERS_FILE,
    collect_form,
    collect_forms,
    force_held_now_and_then,
    household_properties,
    integrity,
    list_md5,
    member_integrity,
    member_properties,
    take_submission,
)
from ..errors import ApiError
from ..forms_registry import file_chunks, readable_file, version_files
from ..i18n import _, current_language, translate_errors, translate_known
from ..ratelimit import LoginLimits, admit_token, token_failed
from ..storage import StorageError, StoreUnavailable, WriteConflict
from ..store import get_store
from ..syncing import push_service

blp = Blueprint("openrosa", __name__, url_prefix=KEY_PREFIX.rstrip("/") + "/<token>")
#: Everything under it answers in OpenRosa's shape, the refusals of the body guard and routing too.
PATH_PREFIX = KEY_PREFIX

OPENROSA_VERSION = "1.0"
#: The largest submission post Collect is told to send (it splits media over several posts above it).
ACCEPT_CONTENT_LENGTH = 10 * 2**20
XML_FIELD = "xml_submission_file"
INCOMPLETE_FIELD = "*isIncomplete*"
RESPONSE_NS = "http://openrosa.org/http/response"


def _headers(response: Response) -> Response:
    response.headers["X-OpenRosa-Version"] = OPENROSA_VERSION
    response.headers["X-OpenRosa-Accept-Content-Length"] = str(ACCEPT_CONTENT_LENGTH)
    response.headers["Date"] = formatdate(usegmt=True)
    response.headers["Content-Language"] = current_language()
    return response


def xml_response(body: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(body, status=status, mimetype="text/xml", headers=headers)
    response.charset = "utf-8"
    return _headers(response)


def message(text: str, status: int, nature: str = "") -> Response:
    nature_attr = f" nature={quoteattr(nature)}" if nature else ""
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<OpenRosaResponse xmlns="{RESPONSE_NS}" items="0">'
            f"<message{nature_attr}>{escape(text)}</message></OpenRosaResponse>")
    return xml_response(body, status)


def refusal(status: int, text: str, errors: dict[str, list[str]] | None, headers: dict[str, str]) -> Response:
    """A refusal made outside these views (body guard, routing, rate limits) as an OpenRosaResponse message."""
    response = message(_error_text(text, errors), status, "error")
    for key, value in headers.items():
        response.headers[key] = value
    return response


def _error_text(text: str, errors: dict[str, list[str]] | None) -> str:
    # the engines (forms/xform.py) write English; their catalogued sentences are said in the asked language
    text = translate_known(text)
    if not errors:
        return text
    details = "; ".join(f"{path}: {', '.join(items)}" for path, items in list(translate_errors(errors).items())[:20])
    return f"{text} {details}"


@blp.errorhandler(SubmissionError)
def _submission_error(error: SubmissionError) -> Response:
    return message(_error_text(error.message, error.errors), error.status, "error")


@blp.errorhandler(ApiError)
def _api_error(error: ApiError) -> Response:
    response = message(_error_text(error.message, error.errors), error.status, "error")
    for key, value in error.headers.items():  # Retry-After of a 429
        response.headers[key] = value
    return response


@blp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    text = translate_known(error.description) if error.description else _("Request failed.")
    return message(text, error.code or 500, "error")


@blp.errorhandler(StorageError)
def _storage_error(error: StorageError) -> Response:
    if isinstance(error, StoreUnavailable):
        response = message(_("The data store is not answering; try again shortly."), 503, "error")
        response.headers["Retry-After"] = "5"
        return response
    if isinstance(error, WriteConflict):
        return message(_("The server was busy with the same records; send again."), 409, "error")
    current_app.logger.error("storage error", exc_info=error)
    return message(_("Something went wrong on the server."), 500, "error")


def _caller() -> AppCaller:
    return g.kunjung_app_caller


def collect_endpoint(*, openrosa: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The token must name a working credential (401 otherwise, at once: every request re-reads
    it; an address whose tokens keep failing is answered 429 for the rest of the window); an
    OpenRosa request must say X-OpenRosa-Version: 1.0, as Collect always does."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def guarded(token: str, **kwargs: Any) -> Any:
            store, limits, address = get_store(), LoginLimits.from_config(current_app.config), client_address()
            admit_token(store, limits, address=address)  # 429 for an address guessing tokens
            caller = credential_holder(store, token)
            if caller is None:
                token_failed(store, limits, address=address)
                return message(_("This app credential does not work (unknown, revoked or replaced); "
                                 "scan a new set-up QR code."), 401, "error")
            if openrosa and request.method != "HEAD" and request.headers.get("X-OpenRosa-Version") != "1.0":
                return message(_("Send the header X-OpenRosa-Version: 1.0."), 400, "error")
            g.kunjung_app_caller = caller
            g.kunjung_user = caller.user  # so the user's language setting counts when Collect names none
            g.kunjung_device = caller.device_id
            return view(token, **kwargs)

        return guarded

    return decorator


def _base_url(token: str) -> str:
    public = current_app.config.get("PUBLIC_URL") or request.host_url.rstrip("/")
    return f"{public}{KEY_PREFIX}{token}"


def _form_path(token: str, form_id: str, version: str) -> str:
    return f"{_base_url(token)}/forms/{quote(form_id, safe='')}/versions/{quote(version, safe='')}"


@blp.route("/formList", methods=["GET"])
@collect_endpoint(openrosa=True)
def form_list(token: str) -> Response:
    form_id = request.args.get("formID")
    store = get_store()
    forms = collect_forms(store, _caller(), form_id)
    items = []
    for form in forms:
        base = _form_path(token, form.form_id, form.version)
        manifest = f"<manifestUrl>{escape(base)}/manifest</manifestUrl>"  # households.csv at least
        items.append(f"<xform><formID>{escape(form.form_id)}</formID><name>{escape(form.name)}</name>"
                     f"<version>{escape(form.version)}</version><hash>md5:{form.xform.md5}</hash>"
                     f"<downloadUrl>{escape(base)}/form.xml</downloadUrl>{manifest}</xform>")
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<xforms xmlns="http://openrosa.org/xforms/xformsList">'
            + "".join(items) + "</xforms>")
    return xml_response(body)


def _form_or_404(form_id: str, version: str):
    form = collect_form(get_store(), _caller(), form_id, version)
    if form is None:
        raise ApiError(404, "not_found", _("No version %(version)r of form %(form)r is open to you.",
                                                      version=version, form=form_id))
    return form


@blp.route("/forms/<form_id>/versions/<version>/form.xml", methods=["GET"])
@collect_endpoint(openrosa=False)
def form_xml(token: str, form_id: str, version: str) -> Response:
    form = _form_or_404(form_id, version)
    return _maybe_unchanged(form.xform.md5, lambda: form.xform.xml)


def _maybe_unchanged(md5: str, body: Callable[[], Any], mimetype: str = "text/xml") -> Response:
    etag = f'"{md5}"'
    if etag in request.headers.get("If-None-Match", ""):
        return _headers(Response(status=304, headers={"ETag": etag}))
    response = Response(body(), mimetype=mimetype, headers={"ETag": etag})
    if mimetype.startswith("text/"):
        response.charset = "utf-8"
    return _headers(response)


@blp.route("/forms/<form_id>/versions/<version>/manifest", methods=["GET"])
@collect_endpoint(openrosa=True)
def manifest(token: str, form_id: str, version: str) -> Response:
    form = _form_or_404(form_id, version)
    files = []
    # the version's own files (choice lists, pulldata() tables, label media), as the forms API serves them
    for entry in version_files(get_store(), form_id, version, _caller().scope):
        if entry.get("present") and entry["name"] not in LISTS:
            files.append(f"<mediaFile><filename>{escape(entry['name'])}</filename><hash>md5:{entry['md5']}</hash>"
                         f"<downloadUrl>{escape(_form_path(token, form_id, version))}/attachments/"
                         f"{quote(entry['name'], safe='')}</downloadUrl></mediaFile>")
    # every form picks its household from households.csv
    store = get_store()
    forms = collect_forms(store, _caller())
    md5 = list_md5(store, _caller(), HOUSEHOLDS_FILE, household_properties(forms))
    files.append(
        f'<mediaFile type="entityList"><filename>{HOUSEHOLDS_FILE}</filename><hash>md5:{md5}</hash>'
        f"<downloadUrl>{escape(_form_path(token, form_id, version))}/attachments/{HOUSEHOLDS_FILE}"
        f"</downloadUrl><integrityUrl>{escape(_base_url(token))}/datasets/households/integrity"
        f"</integrityUrl></mediaFile>")
    if form.xform.members:
        # members prefill the roster, and each roster row saves its member as an entity of this list
        md5 = list_md5(store, _caller(), MEMBERS_FILE, member_properties(forms))
        files.append(f'<mediaFile type="entityList"><filename>{MEMBERS_FILE}</filename><hash>md5:{md5}</hash>'
                     f"<downloadUrl>{escape(_form_path(token, form_id, version))}/attachments/{MEMBERS_FILE}"
                     f"</downloadUrl><integrityUrl>{escape(_base_url(token))}/datasets/members/integrity"
                     "</integrityUrl></mediaFile>")
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<manifest xmlns="http://openrosa.org/xforms/xformsManifest">'
            + "".join(files) + "</manifest>")
    return xml_response(body)


@blp.route("/forms/<form_id>/versions/<version>/attachments/<name>", methods=["GET"])
@collect_endpoint(openrosa=False)
def attachment(token: str, form_id: str, version: str, name: str) -> Response:
    form = _form_or_404(form_id, version)
    if name not in LISTS:
        doc = readable_file(get_store(), form_id, version, name, _caller().scope)
        return _maybe_unchanged(doc["md5"], lambda: b"".join(file_chunks(get_store(), doc)),
                                media_type_of(name))
    if name == MEMBERS_FILE and not form.xform.members:
        raise ApiError(404, "not_found", _("The form has no attachment %(name)r.", name=name))
    store = get_store()
    forms = collect_forms(store, _caller())
    properties = household_properties(forms) if name == HOUSEHOLDS_FILE else member_properties(forms)
    md5 = list_md5(store, _caller(), name, properties)
    etag = f'"{md5}"'
    if etag in request.headers.get("If-None-Match", ""):
        return _headers(Response(status=304, headers={"ETag": etag}))
    caller = _caller()
    response = Response(LISTS[name](store, caller, properties), mimetype="text/csv", headers={"ETag": etag})
    response.charset = "utf-8"
    return _headers(response)


@blp.route("/datasets/households/integrity", methods=["GET"])
@collect_endpoint(openrosa=True)
def households_integrity(token: str) -> Response:
    return _integrity_answer(integrity)


def _integrity_answer(check: Callable[..., Any]) -> Response:
    """Which of the entities Collect names (``?id=a,b``) are gone, by ``check(store, caller, ids)``."""
    ids = [part for part in request.args.get("id", "").split(",") if part][:10_000]
    entries = "".join(f'<entity id={quoteattr(entity_id)}><deleted>{"true" if gone else "false"}</deleted>'
                      "</entity>" for entity_id, gone in check(get_store(), _caller(), ids))
    return xml_response(f'<?xml version="1.0" encoding="UTF-8"?>\n<data><entities>{entries}</entities></data>')


@blp.route("/datasets/members/integrity", methods=["GET"])
@collect_endpoint(openrosa=True)
def members_integrity(token: str) -> Response:
    return _integrity_answer(member_integrity)


@blp.route("/submission", methods=["HEAD", "GET"])
@collect_endpoint(openrosa=True)
def submission_probe(token: str) -> Response:
    return _headers(Response(status=204))


@blp.route("/submission", methods=["POST"])
@collect_endpoint(openrosa=True)
def submission(token: str) -> Response:
    if not (request.mimetype or "").startswith("multipart/"):
        raise SubmissionError(415, _("Send the submission as multipart/form-data with xml_submission_file."))
    upload = request.files.get(XML_FIELD)
    if upload is None:
        raise SubmissionError(400, _("The post has no %(field)s.", field=XML_FIELD), {XML_FIELD: [_("missing")]})
    xml = upload.read()
    files = {}
    # A part is a submission's file by its field name, which Collect sets to the name the answer
    # holds (its file name may be the phone's own path): ODK Central matches parts the same way.
    for field_name, part in request.files.items(multi=True):
        if field_name != XML_FIELD and check_file_name(field_name) is None:
            files[field_name] = part.read()
    incomplete = (request.form.get(INCOMPLETE_FIELD) or "").lower() in ("yes", "true", "1")
    limits = MediaLimits.from_config(current_app.config)
    outcome = take_submission(get_store(), push_service(), _caller(), xml, files, incomplete=incomplete,
                              blobs=blob_store(), limits=limits)
    response = message(outcome.message, outcome.status)
    # updates held too long for their branch's earlier submission are taken in now and then
    force_held_now_and_then(get_store(), push_service(), days=current_app.config["COLLECT_BACKLOG_DAYS"],
                            blobs=blob_store(), limits=limits)
    return response


@blp.route("/<path:rest>", methods=["GET", "POST", "HEAD", "PUT", "DELETE"])
@collect_endpoint(openrosa=False)
def unknown(token: str, rest: str) -> Response:
    return message(_("No such OpenRosa resource."), 404, "error")
