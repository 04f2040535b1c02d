"""Form versions and their life on the server: drafts, publishing, assignment, archiving, the library, lookups.

Storage: ``forms`` holds one *tracked* document per form (id = form_id): its title, its
assignment, whether it is archived and its latest published version. Every publish, archive
and assignment change rewrites it, so each gets a new ``seq`` and reaches devices through the
sync pull (:func:`forms_changed_since`). Saving a draft does not touch it (devices never see
drafts). ``form_versions`` (untracked, id = ``"<form_id>@<version>"``) holds each version's
definition, its state (``draft`` or ``published``) and its content hash; a published version
never changes again, which is what lets :func:`published_definition` cache it.

Files that travel with a version (choice files, pulldata() tables, label media; which ones is
``forms.attachments.form_files``) are in ``form_files``, one document per file of a version with
its md5, sha256, size and media type, and their bytes in the blob store (``server/blobs``) under
their sha256, beside visits' attachments: the same file in many versions is stored once, and
``kunjung backup`` and ``kunjung gc-attachments`` see form files like any other blob. Stores
written before kept the bytes in ``form_file_chunks``; :func:`move_form_files_to_blobs` moves
them at start-up. A draft gets its files with the
XLSForm (one multipart request) or one by one; a draft missing any cannot be published, and a
published version's files never change either.

"Latest published version" means the one published most recently, not the highest version
string: version strings are the admin's own and need not sort.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from pyxform.errors import PyXFormError

from forms import Definition, DefinitionError, check_new_version, definition_hash, validate_definition
from forms.attachments import CsvLookup, FormFile, check_form_file, choice_columns
from forms.fieldtypes import check_file_name
from forms.household import HouseholdFields, household_field_catalog
from forms.identifiers import Area
from forms.library import library_forms
from forms.xform import XForm, kept_xform, xform_of
from forms.xlsform import MAX_FILE_BYTES, XLSFormError, translate_errors, xlsform_to_definition_with_rows

from . import jsonio
from .audit import record_audit
from .blobs.store import BlobNotFound, BlobStore, ChunkReader
from .errors import ApiError
from .i18n import _
from .security.scope import Scope
from .storage import StorageError, Store, WriteConflict, Writer
from .store import on_store_ready
from .timeutil import iso, now_utc

log = logging.getLogger("kunjung.forms")

FORMS = "forms"
VERSIONS = "form_versions"
FILES = "form_files"
#: The XForm of each published version as it was first built (id = "<form_id>@<version>"): Collect
#: compares forms by md5, so a version on phones must never change even when pyxform or forms/xform.py
#: would now build other bytes.
XFORMS = "form_xforms"
#: Where form files' bytes were kept before they moved to the blob store (read only to move them).
LEGACY_CHUNKS = "form_file_chunks"
#: Files one upload may carry beside the XLSForm.
MAX_FILES_PER_UPLOAD = 200
DRAFT = "draft"
PUBLISHED = "published"
# Versions appear in URLs and document ids; "." and ".." would be rewritten by URL normalisation.
SAFE_VERSION = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9._-]{1,32}$")
XLSFORM_SUFFIXES = (".xlsx", ".xls")
#: The levels a form is assigned at: villages, or every village of a kecamatan.
ASSIGNABLE_LEVELS = ("village", "kecamatan")
UNASSIGNED_WARNING = "assigned to no village: officers will not see it (PUT /forms/<form_id>/assignment)"


def version_id(form_id: str, version: str) -> str:
    return f"{form_id}@{version}"


def definition_url(form_id: str, version: str) -> str:
    return f"/api/v1/forms/{form_id}/versions/{version}"


def _now() -> str:
    return iso(now_utc())


# -- what an admin sends ------------------------------------------------------------------------
@dataclass(frozen=True)
class Submission:
    """A definition as sent: its JSON and, for an XLSForm, the sheet!row each JSON path came from;
    and the form's files sent with it (name -> bytes)."""

    data: Any
    rows: dict[str, str] | None = None
    warnings: dict[str, list[str]] = field(default_factory=dict)
    source: str = "json"
    files: dict[str, bytes] = field(default_factory=dict)

    def with_files(self, files: dict[str, bytes]) -> Submission:
        return Submission(self.data, self.rows, self.warnings, self.source, dict(files))

    def keyed(self, errors: dict[str, list[str]]) -> dict[str, list[str]]:
        """Errors keyed as the admin can find them: JSON paths, or sheet!row for an XLSForm."""
        return translate_errors(errors, self.rows) if self.rows is not None else errors


def from_json(data: Any) -> Submission:
    return Submission(data)


def from_upload(content: bytes, filename: str) -> Submission:
    """An uploaded file: an XLSForm workbook (the bytes decide .xlsx or .xls) or a .json definition."""
    if filename.lower().endswith(".json"):
        try:
            return Submission(jsonio.loads(content))
        except jsonio.BadJSON as exc:
            raise ApiError(422, "invalid_definition", _("The file is not a JSON definition."), {"file": [str(exc)]}) \
                from None
    try:
        converted = xlsform_to_definition_with_rows(content, filename)
    except XLSFormError as exc:
        raise ApiError(422, "invalid_definition", _("The XLSForm has problems; each is keyed by sheet!row."),
                       exc.errors) from None
    return Submission(converted.definition, dict(converted.rows), dict(converted.warnings), "xlsform")


def read_file(path: str) -> Submission:
    """A definition file on disk: ``.json``, ``.xlsx`` or ``.xls``."""
    if not path.lower().endswith((".json", *XLSFORM_SUFFIXES)):
        raise ApiError(422, "invalid_definition", _("Give a .json definition or an .xlsx/.xls XLSForm."),
                       {"file": [_("%(path)s: unknown file type", path=path)]})
    with open(path, "rb") as handle:
        content = handle.read(MAX_FILE_BYTES + 1)
    if len(content) > MAX_FILE_BYTES:
        raise ApiError(422, "invalid_definition", _("The file is too large for a form definition."),
                       {"file": [_("%(path)s is larger than %(limit)s bytes", path=path,
                                   limit=format(MAX_FILE_BYTES, ","))]})
    return from_upload(content, path)


def _merge(into: dict[str, list[str]], more: dict[str, list[str]]) -> dict[str, list[str]]:
    for path, messages in more.items():
        bucket = into.setdefault(path, [])
        bucket.extend(m for m in messages if m not in bucket)
    return into


def validate(submission: Submission) -> Definition:
    """The validated definition, or 422 with every problem keyed by path (or sheet!row)."""
    try:
        definition = validate_definition(submission.data)
    except DefinitionError as exc:
        raise _invalid(submission, exc.errors) from None
    if not SAFE_VERSION.match(definition.version):
        raise _invalid(submission, {"settings.version": [
            "must be 1-32 letters, digits, '.', '_' or '-' (and not '.' or '..'); it is part of URLs"]})
    return definition


def _invalid(submission: Submission, errors: dict[str, list[str]]) -> ApiError:
    where = "sheet!row" if submission.rows is not None else "path"
    return ApiError(422, "invalid_definition",
                    _("The form definition has problems; each is keyed by %(where)s.", where=where),
                    submission.keyed(errors))


def _warnings(submission: Submission, definition: Definition) -> dict[str, list[str]]:
    return _merge({k: list(v) for k, v in submission.warnings.items()}, submission.keyed(definition.warnings))


def type_guard(reader: Store | Writer, definition: Definition, submission: Submission) -> dict[str, list[str]]:
    """The type guard's verdict without writing: what the new version changes in fields published versions
    have (a type, a place in or out of a repeat), keyed as the submission is; empty when it is compatible."""
    problems: dict[str, list[str]] = {}
    for doc in reader.find(VERSIONS, {"form_id": definition.form_id, "state": PUBLISHED}):
        if doc["version"] != definition.version:
            _merge(problems, check_new_version(doc["definition"], definition))
    return submission.keyed(problems) if problems else {}


def _check_against_published(tx: Writer, definition: Definition, submission: Submission) -> None:
    """A new version may not change the type (or repeat) of a field any published version has."""
    problems = type_guard(tx, definition, submission)
    if problems:
        raise ApiError(422, "incompatible_version",
                       _("This version changes fields that published versions have; answers already collected "
                         "would no longer fit."), problems)


# -- documents ---------------------------------------------------------------------------------------
def _new_form(definition: Definition, actor: str | None, at: str) -> dict[str, Any]:
    return {"id": definition.form_id, "archived": False, "published": False, "title": dict(definition.title),
            "latest_version": None, "latest_hash": None,
            "assignment": {"all": False, "villages": []},
            # Every village the form was ever assigned to: who must hear when it is taken away.
            "assigned_ever": {"all": False, "villages": []},
            "created_at": at, "created_ns": time.time_ns(), "created_by": actor, "updated_at": at}


def _new_version(definition: Definition, submission: Submission, actor: str | None, at: str) -> dict[str, Any]:
    return {"id": version_id(definition.form_id, definition.version), "form_id": definition.form_id,
            "version": definition.version, "state": DRAFT, "hash": definition_hash(definition.data),
            "definition": definition.data, "source": submission.source, "rows": submission.rows,
            "created_at": at, "created_by": actor, "updated_at": at, "updated_by": actor,
            "published_at": None, "published_by": None}


def version_summary(doc: dict[str, Any], warnings: dict[str, list[str]] | None = None,
                    files: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    summary = {"form_id": doc["form_id"], "version": doc["version"], "state": doc["state"], "hash": doc["hash"],
               "url": definition_url(doc["form_id"], doc["version"]), "created_at": doc.get("created_at"),
               "created_by": doc.get("created_by"), "updated_at": doc.get("updated_at"),
               "published_at": doc.get("published_at"), "published_by": doc.get("published_by")}
    if warnings:
        summary["warnings"] = warnings
    if files is not None:
        summary["files"] = files
    return summary


def _assignment_of(form: dict[str, Any]) -> dict[str, Any]:
    assignment = form.get("assignment") or {}
    return {"all": bool(assignment.get("all")), "villages": list(assignment.get("villages") or [])}


def device_entry(form: dict[str, Any]) -> dict[str, Any]:
    """What a device sees of a form: its latest published version."""
    return {"form_id": form["id"], "version": form["latest_version"], "title": form["title"],
            "hash": form["latest_hash"], "url": definition_url(form["id"], form["latest_version"])}


def admin_entry(form: dict[str, Any], versions: list[dict[str, Any]]) -> dict[str, Any]:
    published = form.get("latest_version") is not None
    title = form["title"]
    if not published and versions:
        title = versions[-1]["definition"]["settings"]["title"]
    return {"form_id": form["id"], "title": title,
            "version": form.get("latest_version"), "hash": form.get("latest_hash"),
            "url": definition_url(form["id"], form["latest_version"]) if published else None,
            "archived": bool(form.get("archived")), "assignment": _assignment_of(form),
            "created_at": form.get("created_at"), "updated_at": form.get("updated_at"),
            "versions": [version_summary(v) for v in versions]}


# -- scope -------------------------------------------------------------------------------------------
def _overlaps(code: str, area: str) -> bool:
    """A village or kecamatan code and a scope area share at least one village."""
    try:
        return Area(code).overlaps(Area(area))
    except ValueError:  # stored codes are checked on the way in; a malformed one reaches nobody
        return False


def assigned_to(assignment: dict[str, Any] | None, scope: Scope) -> bool:
    """Whether a form with this assignment reaches some village of the scope (admins: every form)."""
    if scope.is_all:
        return True
    if not assignment or not scope.codes:
        return False
    if assignment.get("all"):
        return True
    return any(_overlaps(code, area) for code in assignment.get("villages") or () for area in scope.codes)


def assignment_in_scope(assignment: dict[str, Any], scope: Scope) -> dict[str, Any]:
    """The part of an assignment a caller may see: the entries touching their villages."""
    if scope.is_all or assignment.get("all"):
        return {"all": bool(assignment.get("all")), "villages": list(assignment.get("villages") or [])}
    return {"all": False, "villages": [code for code in assignment.get("villages") or ()
                                       if any(_overlaps(code, area) for area in scope.codes)]}


# -- admin operations --------------------------------------------------------------------------------
def create_draft(store: Store, submission: Submission, *, actor: str | None,
                 address: str | None = None) -> dict[str, Any]:
    """A new draft version (the form is created with it if new): 409 if that version exists.

    Files sent with it are checked (each one the form names, readable as what it is for) before
    anything is written, and stored with the draft."""
    definition = validate(submission)
    prepared = prepare_files(definition, submission.files)
    at = _now()
    doc = _new_version(definition, submission, actor, at)
    with store.transaction() as tx:
        existing = tx.get(VERSIONS, doc["id"])
        if existing is not None:
            raise _existing_error(existing)
        _check_against_published(tx, definition, submission)
        if not tx.insert(VERSIONS, doc):
            raise ApiError(409, "version_exists", _("Version %(version)s of %(form)s exists.",
                                                             version=definition.version, form=definition.form_id))
        if tx.get(FORMS, definition.form_id) is None:
            tx.insert(FORMS, _new_form(definition, actor, at))
        _write_files(tx, definition, prepared, actor, at)
        files = _file_entries(tx, definition)
    return version_summary(doc, _warnings(submission, definition), files)


def _existing_error(existing: dict[str, Any]) -> ApiError:
    if existing["state"] == PUBLISHED:
        return ApiError(409, "published_immutable",
                        _("Version %(version)s of %(form)s is published and cannot change; make a new version.",
                          version=existing["version"], form=existing["form_id"]))
    return ApiError(409, "version_exists",
                    _("Version %(version)s of %(form)s exists as a draft; replace it with PUT %(url)s.",
                      version=existing["version"], form=existing["form_id"],
                      url=definition_url(existing["form_id"], existing["version"])))


def require_draft(store: Store, form_id: str, version: str) -> dict[str, Any]:
    """The draft, or 404 (unknown) / 409 ``published_immutable``."""
    doc = store.get(VERSIONS, version_id(form_id, version))
    if doc is None:
        raise ApiError(404, "not_found", _("No version %(version)r of form %(form)r.", version=version, form=form_id))
    if doc["state"] == PUBLISHED:
        raise _existing_error(doc)
    return doc


def replace_draft(store: Store, form_id: str, version: str, submission: Submission, *, actor: str | None,
                  address: str | None = None) -> dict[str, Any]:
    """Replace a draft's definition; the definition must name the same form_id and version."""
    require_draft(store, form_id, version)
    definition = validate(submission)
    mismatch: dict[str, list[str]] = {}
    if definition.form_id != form_id:
        mismatch["settings.form_id"] = [f"must be {form_id!r}, the form this draft belongs to"]
    if definition.version != version:
        mismatch["settings.version"] = [f"must be {version!r}, the draft being replaced (POST a new version)"]
    if mismatch:
        raise _invalid(submission, mismatch)
    prepared = prepare_files(definition, submission.files)
    with store.transaction() as tx:
        existing = tx.get(VERSIONS, version_id(form_id, version))
        if existing is None:
            raise ApiError(404, "not_found",
                           _("No version %(version)r of form %(form)r.", version=version, form=form_id))
        if existing["state"] == PUBLISHED:
            raise _existing_error(existing)
        _check_against_published(tx, definition, submission)
        at = _now()
        fresh = _new_version(definition, submission, actor, at)
        doc = tx.put(VERSIONS, {**fresh, "created_at": existing["created_at"],
                                "created_by": existing["created_by"]})
        # Files the new definition no longer names go; the others stay with the draft.
        needed = definition.form_files()
        for kept in tx.find(FILES, {"form_id": form_id, "version": version}, order_by="id"):
            if kept["name"] not in needed:
                tx.delete(FILES, kept["id"])
        _write_files(tx, definition, prepared, actor, at)
        files = _file_entries(tx, definition)
    return version_summary(doc, _warnings(submission, definition), files)


def publish(store: Store, form_id: str, version: str, *, actor: str | None,
            address: str | None = None) -> dict[str, Any]:
    """Publish a draft: from now on it is immutable and devices assigned the form get it.

    Publishing a version that is already published changes nothing (a retried request)."""
    with store.transaction() as tx:
        doc = tx.get(VERSIONS, version_id(form_id, version))
        if doc is None:
            raise ApiError(404, "not_found",
                           _("No version %(version)r of form %(form)r.", version=version, form=form_id))
        if doc["state"] == PUBLISHED:
            return _published(doc, tx.get(FORMS, form_id))
        submission = Submission(doc["definition"], doc.get("rows"))
        # The language may have grown stricter since the draft was saved: check again.
        definition = validate(submission)
        _check_against_published(tx, definition, submission)
        _require_files(tx, definition)
        at = _now()
        doc = tx.put(VERSIONS, {**doc, "state": PUBLISHED, "hash": definition_hash(definition.data),
                                "published_at": at, "published_by": actor})
        form = tx.get(FORMS, form_id) or _new_form(definition, actor, at)
        form = tx.put(FORMS, {**form, "published": True, "latest_version": version, "latest_hash": doc["hash"],
                              "title": dict(definition.title), "updated_at": at},
                      expect_seq=form.get("seq"))
        record_audit(tx, "form_published", actor=actor, target=doc["id"], details={"hash": doc["hash"]},
                     address=address)
    # Built once, now: a crash before it leaves the first read to store it.
    keep_xform(store, form_id, version)
    return _published(doc, form)


def keep_xform(store: Store, form_id: str, version: str) -> None:
    """Build and store a just-published version's XForm (nothing for one Collect cannot be given)."""
    definition = published_definition(store, form_id, version)
    if definition is not None:
        published_xform(store, definition)


def published_xform(store: Store, definition: Definition) -> XForm | None:
    """The XForm Collect is served for a published version: the one stored when it was published, or,
    for a version published before XForms were stored, built now and stored by the first read (the
    first writer wins, so every worker serves the same bytes). None when pyxform cannot build it.
    Read from the store each time (by id, small): a hall's copy may be replaced by upstream's."""
    key_id = version_id(definition.form_id, definition.version)
    doc = store.get(XFORMS, key_id)
    if doc is None:
        try:
            built = xform_of(definition)
        except (PyXFormError, ValueError) as problem:
            # A definition pyxform cannot build stays on kunjung's own client; Collect does not list it.
            log.error("no XForm for %s: %s", key_id, problem)
            return None
        store.insert(XFORMS, {"id": key_id, "xml": built.xml.decode("utf-8"), "md5": built.md5,
                              "hash": definition.hash})
        doc = store.get(XFORMS, key_id)  # another worker's, if it was first
    return kept_xform(definition, doc["xml"].encode("utf-8"), doc["md5"])


def is_assigned(assignment: dict[str, Any] | None) -> bool:
    """Whether an assignment reaches any village at all."""
    return bool(assignment) and (bool(assignment.get("all")) or bool(assignment.get("villages")))


def _published(doc: dict[str, Any], form: dict[str, Any] | None) -> dict[str, Any]:
    """A published version's summary, saying whether any officer will see it."""
    assigned = is_assigned((form or {}).get("assignment"))
    summary = {**version_summary(doc, None if assigned else {"assignment": [UNASSIGNED_WARNING]}),
               "assigned": assigned}
    return summary


def set_archived(store: Store, form_id: str, archived: bool, *, actor: str | None,
                 address: str | None = None) -> dict[str, Any]:
    """Archive (hide from devices; its versions still validate late visits) or unarchive a form."""
    with store.transaction() as tx:
        form = _require_form(tx, form_id)
        if bool(form.get("archived")) != archived:
            form = tx.put(FORMS, {**form, "archived": archived, "updated_at": _now()}, expect_seq=form["seq"])
            record_audit(tx, "form_archived" if archived else "form_unarchived", actor=actor, target=form_id,
                         address=address)
        versions = tx.find(VERSIONS, {"form_id": form_id}, order_by="id")
    return admin_entry(form, _by_creation(versions))


def assignment_problems(villages: Any) -> list[str]:
    if not isinstance(villages, list) or not all(isinstance(code, str) for code in villages):
        return ["must be a list of Kemendagri codes"]
    return [f"{code!r} is neither a village code (32.04.05.2001) nor a kecamatan code (32.04.05)"
            for code in villages if not Area.is_code(code, levels=ASSIGNABLE_LEVELS)]


def set_assignment(store: Store, form_id: str, *, all_villages: bool, villages: Iterable[str] = (),
                   actor: str | None, address: str | None = None) -> dict[str, Any]:
    """Assign a form to every village, or to villages and kecamatan; replaces the previous assignment."""
    villages = list(villages)
    if all_villages and villages:
        raise ApiError(422, "invalid", _("Give either all or villages."),
                       {"villages": [_("must be empty when all is true")]})
    problems = assignment_problems(villages)
    if problems:
        raise ApiError(422, "invalid", _("The assignment names codes that are not villages or kecamatan."),
                       {"villages": problems})
    assignment = {"all": bool(all_villages), "villages": sorted(set(villages))}
    with store.transaction() as tx:
        form = _require_form(tx, form_id)
        previous = _assignment_of(form)
        if previous != assignment:
            ever = form.get("assigned_ever") or {}
            form = tx.put(FORMS, {
                **form, "assignment": assignment, "updated_at": _now(),
                "assigned_ever": {"all": bool(ever.get("all")) or assignment["all"],
                                  "villages": sorted({*(ever.get("villages") or ()), *assignment["villages"]})},
            }, expect_seq=form["seq"])
            record_audit(tx, "form_assigned", actor=actor, target=form_id,
                         details={"assignment": assignment, "previous": previous}, address=address)
    return {"form_id": form_id, **assignment}


def _require_form(tx: Writer, form_id: str) -> dict[str, Any]:
    form = tx.get(FORMS, form_id)
    if form is None:
        raise ApiError(404, "not_found", _("No form %(form)r.", form=form_id))
    return form


# -- reading -----------------------------------------------------------------------------------------
def _by_creation(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(docs, key=lambda d: (d.get("created_at") or "", d["id"]))


def _form_order(form: dict[str, Any]) -> tuple[int, str]:
    return form.get("created_ns") or 0, form["id"]


def forms_for(store: Store, scope: Scope) -> list[dict[str, Any]]:
    """The device list: published, non-archived forms assigned to the scope, oldest form first."""
    forms = [form for form in store.iterate(FORMS, {"published": True, "archived": False})
             if assigned_to(form.get("assignment"), scope)]
    return [device_entry(form) for form in sorted(forms, key=_form_order)]


def all_forms(store: Store) -> list[dict[str, Any]]:
    """Every form with every version (drafts and archived too), for admins."""
    versions: dict[str, list[dict[str, Any]]] = {}
    for doc in store.iterate(VERSIONS):
        versions.setdefault(doc["form_id"], []).append(doc)
    forms = sorted(store.iterate(FORMS), key=_form_order)
    return [admin_entry(form, _by_creation(versions.get(form["id"], []))) for form in forms]


def one_form(store: Store, form_id: str) -> dict[str, Any]:
    form = _require_form(store, form_id)
    return admin_entry(form, _by_creation(store.find(VERSIONS, {"form_id": form_id})))


def readable_version(store: Store, form_id: str, version: str, scope: Scope) -> dict[str, Any]:
    """A version's document if the caller may read it: admins any; others a published version of a form
    assigned to them (archived too: a device may still hold visits for it). 404 otherwise."""
    missing = ApiError(404, "not_found", _("No version %(version)r of form %(form)r.", version=version, form=form_id))
    doc = store.get(VERSIONS, version_id(form_id, version))
    if doc is None:
        raise missing
    if scope.is_all:
        return doc
    form = store.get(FORMS, form_id)
    if doc["state"] != PUBLISHED or form is None or not assigned_to(form.get("assignment"), scope):
        raise missing
    return doc


# -- files that travel with a version -----------------------------------------------------------------
def file_id(form_id: str, version: str, name: str) -> str:
    return f"{version_id(form_id, version)}/{name}"


def file_url(form_id: str, version: str, name: str) -> str:
    return f"{definition_url(form_id, version)}/files/{name}"


@dataclass(frozen=True)
class PreparedFile:
    """A checked upload: what the form needs it for, its bytes and their digests."""

    needed: FormFile
    content: bytes
    md5: str
    sha256: str


def _select_columns(definition: Definition, name: str) -> tuple[str, str]:
    """The value and label columns a choice file must have (a select's `value`/`label` parameters)."""
    value, label = choice_columns(name)
    for ref in definition.iter_fields():
        if ref.field.get("list_file") == name:
            parameters = ref.field.get("parameters") or {}
            return str(parameters.get("value", value)), str(parameters.get("label", label))
    return value, label


def prepare_files(definition: Definition, files: dict[str, bytes]) -> list[PreparedFile]:
    """Every upload checked against what the definition needs; 422 keyed by file name otherwise."""
    needed = definition.form_files()
    problems: dict[str, list[str]] = {}
    prepared = []
    if len(files) > MAX_FILES_PER_UPLOAD:
        raise ApiError(422, "invalid_form_file", _("At most %(limit)s files per request.", limit=MAX_FILES_PER_UPLOAD),
                       {"files": [_("%(count)s files sent", count=len(files))]})
    for name, content in files.items():
        problem = check_file_name(name)
        if problem:
            problems[name[:255]] = [problem]
            continue
        want = needed.get(name)
        if want is None:
            named = ", ".join(needed) or _("none")
            problems[name] = [_("the form does not use this file (it uses: %(named)s)", named=named)]
            continue
        value, label = _select_columns(definition, name)
        found = check_form_file(name, content, want.purpose, value_column=value, label_column=label)
        if found:
            problems[name] = found
            continue
        prepared.append(PreparedFile(want, content, hashlib.md5(content, usedforsecurity=False).hexdigest(),
                                     hashlib.sha256(content).hexdigest()))
    if problems:
        raise ApiError(422, "invalid_form_file", _("Files sent with the form have problems; each is keyed by "
                                                   "its name."), problems)
    # The bytes go in before the document that names them: a blob whose document never gets
    # written is unnamed, and gc-attachments collects it after its grace period.
    blobs = _blobs()
    for upload in prepared:
        blobs.put_bytes(upload.content)
    return prepared


def _blobs() -> BlobStore:
    from .blobs import blob_store

    return blob_store()


def _write_files(tx: Writer, definition: Definition, prepared: list[PreparedFile], actor: str | None,
                 at: str) -> None:
    for upload in prepared:
        name = upload.needed.name
        tx.put(FILES, {"id": file_id(definition.form_id, definition.version, name), "form_id": definition.form_id,
                       "version": definition.version, "name": name, "purpose": upload.needed.purpose,
                       "media_type": upload.needed.media_type, "size": len(upload.content), "md5": upload.md5,
                       "sha256": upload.sha256, "uploaded_at": at, "uploaded_by": actor})


def _stored_files(reader: Store | Writer, form_id: str, version: str) -> dict[str, dict[str, Any]]:
    return {doc["name"]: doc for doc in reader.find(FILES, {"form_id": form_id, "version": version}, order_by="id")}


def _file_entry(form_id: str, version: str, needed: FormFile, doc: dict[str, Any] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": needed.name, "purpose": needed.purpose, "media_type": needed.media_type,
                             "present": doc is not None, "url": file_url(form_id, version, needed.name)}
    if doc is not None:
        entry.update(size=doc["size"], md5=doc["md5"], uploaded_at=doc.get("uploaded_at"))
    return entry


def _file_entries(reader: Store | Writer, definition: Definition) -> list[dict[str, Any]]:
    stored = _stored_files(reader, definition.form_id, definition.version)
    return [_file_entry(definition.form_id, definition.version, needed, stored.get(name))
            for name, needed in definition.form_files().items()]


def _require_files(tx: Writer, definition: Definition) -> None:
    stored = _stored_files(tx, definition.form_id, definition.version)
    missing = {name: needed for name, needed in definition.form_files().items() if name not in stored}
    if missing:
        raise ApiError(422, "form_files_missing",
                       _("The draft cannot be published: %(count)s of its files is not uploaded (%(names)s).",
                         count=1, names=", ".join(missing)) if len(missing) == 1 else
                       _("The draft cannot be published: %(count)s of its files are not uploaded (%(names)s).",
                         count=len(missing), names=", ".join(missing)),
                       {name: [_("not uploaded; the form needs it (%(purpose)s: %(paths)s)", purpose=needed.purpose,
                                 paths=", ".join(needed.paths))]
                        for name, needed in missing.items()})


def _version_definition(doc: dict[str, Any]) -> Definition:
    return validate(Submission(doc["definition"], doc.get("rows")))


def version_files(store: Store, form_id: str, version: str, scope: Scope) -> list[dict[str, Any]]:
    """The files of a version the caller may read (as :func:`readable_version`): every file the
    definition needs, with ``present``, and for a stored one its ``size`` and ``md5``."""
    doc = readable_version(store, form_id, version, scope)
    return _file_entries(store, _version_definition(doc))


def upload_file(store: Store, form_id: str, version: str, name: str, content: bytes, *,
                actor: str | None, address: str | None = None) -> dict[str, Any]:
    """Add or replace one file of a draft: 404 for a version that does not exist, 409 once published,
    422 for a file the form does not use or that does not read as what it is for."""
    doc = require_draft(store, form_id, version)
    definition = _version_definition(doc)
    prepared = prepare_files(definition, {name: content})
    with store.transaction() as tx:
        current = tx.get(VERSIONS, doc["id"])
        if current is None or current["state"] != DRAFT or current["hash"] != doc["hash"]:
            raise ApiError(409, "draft_changed",
                           _("The draft changed or was published meanwhile; send the file again."))
        at = _now()
        _write_files(tx, definition, prepared, actor, at)
        tx.put(VERSIONS, {**current, "updated_at": at, "updated_by": actor})
        record_audit(tx, "form_file_uploaded", actor=actor, target=file_id(form_id, version, name),
                     details={"md5": prepared[0].md5, "size": len(content)}, address=address)
    return _file_entry(form_id, version, prepared[0].needed, {"size": len(content), "md5": prepared[0].md5,
                                                               "uploaded_at": at})


def delete_file(store: Store, form_id: str, version: str, name: str, *, actor: str | None,
                address: str | None = None) -> None:
    """Remove a file from a draft (404 when the draft has no such file, 409 once published)."""
    require_draft(store, form_id, version)
    with store.transaction() as tx:
        current = tx.get(VERSIONS, version_id(form_id, version))
        if current is None or current["state"] != DRAFT:
            raise ApiError(409, "published_immutable", _("Version %(version)s of %(form)s is published; its files "
                                                         "cannot change.", version=version, form=form_id))
        if not tx.delete(FILES, file_id(form_id, version, name)):
            raise ApiError(404, "not_found", _("Version %(version)s of %(form)s has no file %(name)r.",
                                               version=version, form=form_id, name=name))
        record_audit(tx, "form_file_deleted", actor=actor, target=file_id(form_id, version, name), address=address)


def readable_file(store: Store, form_id: str, version: str, name: str, scope: Scope) -> dict[str, Any]:
    """A stored file's document if the caller may read its version; 404 otherwise."""
    readable_version(store, form_id, version, scope)
    doc = store.get(FILES, file_id(form_id, version, name)) if check_file_name(name) is None else None
    if doc is None:
        raise ApiError(404, "not_found", _("Version %(version)s of %(form)s has no file %(name)r.",
                                               version=version, form=form_id, name=name))
    return doc


def file_chunks(store: Store, doc: dict[str, Any], blobs: BlobStore | None = None) -> Iterator[bytes]:
    """A stored file's bytes, one piece at a time. The blob store is found now, in the request:
    the pieces are read while the response streams, after its context is gone."""
    if "chunks" in doc:  # written before the move to the blob store, read before start-up moved it
        return _legacy_chunks(store, doc)
    return _blob_chunks(blobs or _blobs(), doc)


def _blob_chunks(blobs: BlobStore, doc: dict[str, Any]) -> Iterator[bytes]:
    try:
        yield from blobs.chunks(doc["sha256"])
    except BlobNotFound:
        raise StorageError(f"form file {doc['id']} lost its bytes ({doc['sha256']})") from None


def _legacy_chunks(store: Store | Writer, doc: dict[str, Any]) -> Iterator[bytes]:
    for index in range(doc["chunks"]):
        chunk = store.get(LEGACY_CHUNKS, f"{doc['sha256']}:{index}")
        if chunk is None:
            raise StorageError(f"form file {doc['id']} lost chunk {index}")
        yield base64.b64decode(chunk["data"])


def move_form_files_to_blobs(store: Store, blobs: Callable[[], BlobStore]) -> int:
    """Start-up: move the bytes of form files an older server kept in ``form_file_chunks`` into the
    blob store; returns how many files moved. Each file is checked against its sha256 before its
    document stops naming chunks, and the chunks go only once no document names them, so a crash
    midway leaves every file readable and the next start-up finishes the move."""
    legacy = [doc for doc in store.find(FILES, {}) if "chunks" in doc]
    if not legacy:
        return 0
    target = blobs()  # opened only when there is something to move
    moved = 0
    for doc in legacy:
        target.put(ChunkReader(_legacy_chunks(store, doc)), doc["sha256"])
        with store.transaction() as tx:
            current = tx.get(FILES, doc["id"])
            if current is not None and "chunks" in current:
                tx.put(FILES, {key: value for key, value in current.items() if key != "chunks"})
        moved += 1
    for chunk_id in sorted({f"{doc['sha256']}:{index}" for doc in legacy for index in range(doc["chunks"])}):
        store.delete(LEGACY_CHUNKS, chunk_id)
    log.info("moved %s form file(s) from form_file_chunks to the blob store", moved)
    return moved


def sweep_legacy_chunks(store: Store, *, grace_seconds: float, dry_run: bool = False,
                        clock: Callable[[], float] = time.time) -> list[str]:
    """Remove the ``form_file_chunks`` no form file names (an older server that crashed while taking
    a file, or a file dropped before its document was written) once they have been seen unnamed for
    ``grace_seconds``: the chunks carry no time of their own, so the first sweep marks each unnamed
    one (``orphan_since``) and a sweep after the grace period removes it. A chunk named again (an
    older server of a rolling upgrade finishing its file) loses its mark. Returns the ids removed
    (or that would be, on a dry run)."""
    named = {f"{doc['sha256']}:{index}" for doc in store.iterate(FILES) if "chunks" in doc
             for index in range(doc["chunks"])}
    now = clock()
    removed = []
    for chunk in store.iterate(LEGACY_CHUNKS):
        since = chunk.get("orphan_since")
        if chunk["id"] in named:
            if since is not None and not dry_run:
                store.put(LEGACY_CHUNKS, {key: value for key, value in chunk.items() if key != "orphan_since"})
            continue
        if (since is not None and now - since >= grace_seconds) or grace_seconds <= 0:
            removed.append(chunk["id"])
            if not dry_run:
                store.delete(LEGACY_CHUNKS, chunk["id"])
        elif since is None and not dry_run:
            store.put(LEGACY_CHUNKS, {**chunk, "orphan_since": now})
    return removed


def move_form_files_on_start(app: Flask) -> None:
    """Register the move of form files into the blob store (call before prepare_store)."""
    def hook(store: Store) -> None:
        from .blobs import blob_store

        move_form_files_to_blobs(store, lambda: blob_store(app, store))

    on_store_ready(app, hook)


def lookup_for(store: Store, form_id: str, version: str, definition: Definition) -> CsvLookup | None:
    """pulldata() over a version's attached CSV files, each read the first time a lookup needs it."""
    sources = [name for name, needed in definition.form_files().items()
               if "lookup" in needed.purposes and name.endswith(".csv")]
    if not sources:
        return None
    stored = _stored_files(store, form_id, version)
    blobs = _blobs()  # a cached definition's lookups may run where no app is current

    def loader(name: str):
        return lambda: b"".join(file_chunks(store, stored[name], blobs))

    return CsvLookup({name: loader(name) for name in sources if name in stored})


# -- lookups for sync --------------------------------------------------------------------------------
_CACHE_SIZE = 256
_cache: OrderedDict[tuple[str, str, str, int], Definition] = OrderedDict()
_cache_lock = threading.Lock()
_seen: OrderedDict[tuple[str, str, int], tuple[weakref.ref[Any], Definition]] = OrderedDict()


def published_definition(store: Store, form_id: str, version: str) -> Definition | None:
    """The validated definition of a published version (archived forms included), or None for an
    unknown version or a draft. Cached by (form_id, version, hash): published versions never change."""
    if not isinstance(form_id, str) or not isinstance(version, str):
        return None
    # A version once published never changes, so one found for this very store object needs no read of
    # its document again (half a millisecond of JSON per event); the weak reference makes sure a new
    # store that happens to get a dead one's id is never taken for it.
    fast = (form_id, version, id(store))
    with _cache_lock:
        seen = _seen.get(fast)
        if seen is not None and seen[0]() is store:
            _seen.move_to_end(fast)
            return seen[1]
    doc = store.get(VERSIONS, version_id(form_id, version))
    if doc is None or doc.get("state") != PUBLISHED:
        return None
    # The store is in the key too: a cached definition's pulldata() reads that store's files.
    key = (form_id, version, doc["hash"], id(store))
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return cached
    try:
        definition = validate_definition(doc["definition"])
    except DefinitionError as exc:
        # Published under an older, laxer language: it cannot validate answers any more.
        log.error("published form %s no longer validates: %s", doc["id"], exc)
        return None
    definition.attach_lookup(lookup_for(store, form_id, version, definition))
    with _cache_lock:
        _cache[key] = definition
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
        _remember(fast, store, definition)
    return definition


def _remember(fast: tuple[str, str, int], store: Store, definition: Definition) -> None:
    try:
        _seen[fast] = (weakref.ref(store), definition)
    except TypeError:  # a store that cannot be weakly referenced is read each time
        return
    while len(_seen) > _CACHE_SIZE:
        _seen.popitem(last=False)


def published_definitions_for(store: Store, village: str) -> list[Definition]:
    """Every published version (archived forms too) of every form ever assigned to the village's area."""
    reach = Scope("officer", (village,))
    definitions = []
    for form in sorted(store.iterate(FORMS, {"published": True}), key=_form_order):
        if not (assigned_to(form.get("assignment"), reach) or assigned_to(form.get("assigned_ever"), reach)):
            continue
        for doc in _by_creation(store.find(VERSIONS, {"form_id": form["id"], "state": PUBLISHED})):
            definition = published_definition(store, doc["form_id"], doc["version"])
            if definition is not None:
                definitions.append(definition)
    return definitions


def household_fields_for(store: Store, village: str) -> HouseholdFields:
    """The household fields a household_edit in the village may write (forms.household), from the
    published versions of the forms that reach the village."""
    return household_field_catalog(published_definitions_for(store, village))


def forms_changed_since(store: Store, seq: int, scope: Scope, *, upto: int | None = None,
                        limit: int | None = None) -> list[dict[str, Any]]:
    """Pull changes for forms whose publishing, archiving or assignment changed with ``seq < s <= upto``.

    One entry per changed form, each with its ``seq``, in ``seq`` order; the assignment is folded
    into the form change. A published form assigned to the caller's villages (admins: every one):
    ``{"type": "form", "seq", "form_id", "version", "title", "hash", "url", "archived",
    "assignment": {"all", "villages"}}`` (its latest published version; ``villages`` lists the entries
    touching the caller's villages). A form no longer assigned to the caller but once assigned to
    their villages: ``{"type": "assignment", "seq", "form_id", "all": false, "villages": []}``, which
    says to drop it. Drafts never appear. ``upto`` defaults to the store's visible sequence; ``limit``
    bounds how many form documents are read (page on from the last entry's ``seq``).
    """
    return [{**change, "seq": at} for at, change in _changes(store, seq, scope, upto, limit)]


def form_pull_changes(store: Store, since: int, upto: int, scope: Scope) -> list[tuple[int, dict[str, Any]]]:
    """:func:`forms_changed_since` as ``(seq, change)`` pairs without the ``seq`` key, for the sync pull."""
    return _changes(store, since, scope, upto, None)


def _changes(store: Store, since: int, scope: Scope, upto: int | None,
             limit: int | None) -> list[tuple[int, dict[str, Any]]]:
    upto = store.visible_seq() if upto is None else upto
    out: list[tuple[int, dict[str, Any]]] = []
    read = 0
    while limit is None or read < limit:
        batch_size = 500 if limit is None else min(500, limit - read)
        batch = store.changes(FORMS, since, upto=upto, limit=batch_size)
        for form in batch:
            change = _pull_change(form, scope)
            if change is not None:
                out.append((form["seq"], change))
        read += len(batch)
        if len(batch) < batch_size:
            break
        since = batch[-1]["seq"]
    return out


def _pull_change(form: dict[str, Any], scope: Scope) -> dict[str, Any] | None:
    # One entry per form document: a pull that pages by seq must never split a change in two.
    if not form.get("published"):
        return None
    assignment = _assignment_of(form)
    if assigned_to(assignment, scope):
        return {"type": "form", **device_entry(form), "archived": bool(form.get("archived")),
                "assignment": assignment_in_scope(assignment, scope)}
    if assigned_to(form.get("assigned_ever"), scope):
        return {"type": "assignment", "form_id": form["id"], "all": False, "villages": []}
    return None


# -- the shipped library -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LibraryOutcome:
    form_id: str
    version: str
    published: bool
    reason: str
    hash: str | None = None


def load_library(store: Store, *, actor: str | None = "system", address: str | None = "startup",
                 definitions: list[dict[str, Any]] | None = None) -> list[LibraryOutcome]:
    """Publish every shipped form not already there; a new form is assigned to every village.

    A version already published with the same content is skipped, as is one present with other
    content (a draft or a different published definition); a new version of a form kept from an
    earlier library is published if it keeps its fields' types, and keeps the form's assignment.
    Inserts are if-absent by id, so two processes loading at once publish each form once.
    """
    if definitions is None:
        definitions = library_forms()
    outcomes = []
    for data in definitions:
        settings = data.get("settings") if isinstance(data, dict) else None
        form_id = str((settings or {}).get("form_id", "?"))
        version = str((settings or {}).get("version", "?"))
        try:
            definition = validate(Submission(data))
        except ApiError as exc:
            problems = "; ".join(f"{path}: {', '.join(messages)}" for path, messages in exc.errors.items())
            outcomes.append(LibraryOutcome(form_id, version, False, f"invalid ({problems})"))
            continue
        if definition.form_files():
            # The library is definitions only: a form that needs files would be published without them.
            needed = ", ".join(definition.form_files())
            outcomes.append(LibraryOutcome(form_id, version, False, f"needs files the library cannot ship: {needed}"))
            continue
        for attempt in range(3):
            try:
                outcomes.append(_load_one(store, definition, actor, address))
                break
            except WriteConflict:
                if attempt == 2:
                    raise
    return outcomes


def _load_one(store: Store, definition: Definition, actor: str | None, address: str | None) -> LibraryOutcome:
    form_id, version = definition.form_id, definition.version
    submission = Submission(definition.data, source="library")
    at = _now()
    doc = {**_new_version(definition, submission, actor, at), "state": PUBLISHED, "published_at": at,
           "published_by": actor}
    with store.transaction() as tx:
        existing = tx.get(VERSIONS, doc["id"])
        if existing is not None:
            same = existing["state"] == PUBLISHED and existing["hash"] == doc["hash"]
            reason = "already published" if same else f"version exists as a {existing['state']} with other content"
            return LibraryOutcome(form_id, version, False, reason, existing["hash"])
        form = tx.get(FORMS, form_id)
        if form is None:
            form = {**_new_form(definition, actor, at), "assignment": {"all": True, "villages": []},
                    "assigned_ever": {"all": True, "villages": []}}
        else:
            try:
                _check_against_published(tx, definition, submission)
            except ApiError as exc:
                problems = "; ".join(f"{path}: {', '.join(m)}" for path, m in exc.errors.items())
                return LibraryOutcome(form_id, version, False, f"incompatible with published versions ({problems})",
                                      doc["hash"])
        if not tx.insert(VERSIONS, doc):
            return LibraryOutcome(form_id, version, False, "already published", doc["hash"])
        tx.put(FORMS, {**form, "published": True, "latest_version": version, "latest_hash": doc["hash"],
                       "title": dict(definition.title), "updated_at": at}, expect_seq=form.get("seq"))
        record_audit(tx, "form_published", actor=actor, target=doc["id"],
                     details={"hash": doc["hash"], "library": True}, address=address)
    keep_xform(store, form_id, version)
    return LibraryOutcome(form_id, version, True, "published", doc["hash"])


def library_upgrades(store: Store) -> list[dict[str, Any]]:
    """The shipped definitions whose form this store has from an earlier library, at another version:
    each is published as a new version at start-up (the earlier one stays, for visits made with it).
    A form whose latest version an admin published is the admin's: the library leaves it alone."""
    upgrades = []
    for data in library_forms():
        form = store.get(FORMS, data["settings"]["form_id"])
        if form is None or not form.get("latest_version") or form["latest_version"] == data["settings"]["version"]:
            continue
        latest = store.get(VERSIONS, version_id(form["id"], form["latest_version"]))
        if latest is not None and latest.get("source") == "library":
            upgrades.append(data)
    return upgrades


def seed_library(store: Store) -> None:
    """First start: a store with no forms gets the shipped library; later starts publish the newer
    versions of shipped forms the store has (:func:`library_upgrades`). Never blocks start-up."""
    definitions = library_upgrades(store) if store.count(FORMS) > 0 else None
    if definitions == []:
        return
    try:
        outcomes = load_library(store, actor="system", address="startup", definitions=definitions)
    except StorageError:
        raise  # the store is down: start-up retries on the next request
    except Exception:
        log.exception("could not load the shipped forms; run `kunjung load-library` to retry")
        return
    for outcome in outcomes:
        level = logging.INFO if outcome.published or outcome.reason == "already published" else logging.WARNING
        log.log(level, "library form %s %s: %s", outcome.form_id, outcome.version, outcome.reason)


def seed_library_on_first_start(app: Flask) -> None:
    """Register the first-start seeding when LOAD_LIBRARY_FORMS is set (call before prepare_store)."""
    if app.config.get("LOAD_LIBRARY_FORMS"):
        on_store_ready(app, seed_library)


# -- the command line ----------------------------------------------------------------------------------
def import_form(store: Store, path: str, *, publish_it: bool = False, assign_all: bool = False,
                villages: Iterable[str] = (), actor: str | None = "cli",
                address: str | None = "cli") -> dict[str, Any]:
    """``kunjung import-form``: a file becomes a draft (an existing draft of that version is replaced),
    is published if asked, and is assigned if asked. Returns the version summary, what was done and
    the assignment, and ``unassigned`` when the form is published but assigned to no village (no
    officer sees it); every problem is an ApiError keyed by path or sheet!row, raised before any write."""
    villages = list(villages)
    problems = assignment_problems(villages)
    if problems:
        raise ApiError(422, "invalid", _("The villages are not Kemendagri codes."), {"--village": problems})
    submission = read_file(path)
    definition = validate(submission)
    existing = store.get(VERSIONS, version_id(definition.form_id, definition.version))
    if existing is None:
        summary, done = create_draft(store, submission, actor=actor, address=address), ["draft created"]
    elif existing["state"] == DRAFT:
        summary = replace_draft(store, definition.form_id, definition.version, submission, actor=actor,
                                address=address)
        done = ["draft replaced"]
    elif existing["hash"] == definition_hash(definition.data):
        summary, done = version_summary(existing), ["already published"]
    else:
        raise _existing_error(existing)
    if publish_it and summary["state"] == DRAFT:
        published = publish(store, definition.form_id, definition.version, actor=actor, address=address)
        summary = {**published, "warnings": summary.get("warnings")}
        done.append("published")
    assignment = None
    if assign_all or villages:
        assignment = set_assignment(store, definition.form_id, all_villages=assign_all, villages=villages,
                                    actor=actor, address=address)
        done.append("assigned")
    form = store.get(FORMS, definition.form_id) or {}
    assigned = is_assigned(form.get("assignment"))
    if summary["state"] == PUBLISHED:
        summary = {**summary, "assigned": assigned}
    return {"summary": summary, "done": done, "assignment": assignment,
            "unassigned": summary["state"] == PUBLISHED and not assigned}
