"""ODK Collect's side of kunjung: the forms it lists, the household entity list, and submissions taken in as visits."""

# A submission goes through the same PushService as a JSON push, as a visit event made
# from the XML: the same checks, flags, scope and review states. The receiving node stamps
# it (Collect keeps no HLC), so it is never refused for clock skew or a stale base, and its
# device is the app credential's, never the XML's deviceID. Its event id is the instanceID:
# a resend is rebuilt with the first one's stamp, so the push answers `duplicate` for the
# same XML and `id_reused` for another.

from __future__ import annotations

import base64
import csv
import hashlib
import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from forms.definition import Definition
from forms.xform import (
    HOUSEHOLD_LIST,
    MEMBER_LIST,
    Submission,
    SubmissionError,
    XForm,
    instance_id_of,
    member_stamp_property,
    member_value_property,
    parse_xml,
    read_submission,
    stamp_property,
    submission_form,
)
from sync.hlc import HybridClock

from .app_credentials import AppCaller
from .areas import scoped_areas, village_where
from .blobs.attachments import ATTACHMENTS, MediaLimits, attachment_id, mark_held
from .blobs.media import SNIFF_BYTES, fits, sniff
from .blobs.store import BlobStore
from .clock import stored_hlc, wall_ms
from .cursors import store_identity
from .forms_registry import FORMS, assigned_to, forms_for, published_definition, published_xform
from .households import household_change
from .i18n import N_, _
from .push import Caller, PushService, PushSettings
from .storage import Range, Store, Writer
from .timeutil import iso

log = logging.getLogger("kunjung.collect")
HOUSEHOLDS_FILE = f"{HOUSEHOLD_LIST}.csv"
MEMBERS_FILE = f"{MEMBER_LIST}.csv"
#: Files of a submission Collect split over several posts, until the last one (by user, device, instance).
PARTS = "collect_parts"
#: Offline entity updates waiting for the earlier submission of their branch (by the key they wait for).
HELD = "collect_held"
#: Branch positions taken in (household|branch|baseVersion, household|create): what held ones wait for.
BRANCHES = "collect_branches"
#: Collect is never refused for clock skew: the receiving node stamps its submissions.
NO_SKEW_BOUND_MS = 10**15
#: Days after which a held update is taken in without its predecessor (ODK Central's 5), unless
#: KUNJUNG_COLLECT_BACKLOG_DAYS says otherwise.
BACKLOG_DAYS = 5
#: How often a worker looks for such held updates, on the submissions it takes.
BACKLOG_CHECK_SECONDS = 3600.0
#: The visit flags of Collect's offline entities: taken in without its branch's earlier submission, and
#: made on a version of the household the server had moved past (ODK Central's "versions disagree").
FORCED_FLAG = "collect_forced"
BEHIND_FLAG = "collect_version_behind"
FORCED_MESSAGE = N_("Taken in without the earlier submission of its offline branch, which had not come after "
                    "%(days)s days; check the household.")
BEHIND_MESSAGE = N_("Made in ODK Collect on version %(base)s of the household, but the server had version "
                    "%(server)s by then; a field both changed is a conflict of its own.")


def held_clock() -> datetime:
    """Now, for how long updates have been held (a function, so that tests move it)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class CollectForm:
    form_id: str
    version: str
    name: str
    xform: XForm


def collect_forms(store: Store, caller: AppCaller, form_id: str | None = None) -> list[CollectForm]:
    """The published, unarchived forms assigned to the caller's villages, each with the XForm stored for it."""
    out = []
    for entry in forms_for(store, caller.scope):
        if form_id is not None and entry["form_id"] != form_id:
            continue
        definition = published_definition(store, entry["form_id"], entry["version"])
        built = published_xform(store, definition) if definition is not None else None
        if built is None:
            continue
        title = definition.title
        out.append(CollectForm(entry["form_id"], entry["version"],
                               title.get(definition.default_language) or title.get("id") or entry["form_id"],
                               built))
    return out


def collect_form(store: Store, caller: AppCaller, form_id: str, version: str) -> CollectForm | None:
    return next((form for form in collect_forms(store, caller, form_id) if form.version == version), None)


# -- the household entity list ------------------------------------------------------------------
def household_properties(forms: list[CollectForm]) -> list[str]:
    """The household fields any of the caller's forms saves, in a stable order: the entity list's columns."""
    names: dict[str, None] = {}
    for form in forms:
        names.update(dict.fromkeys(form.xform.saved.values()))
    return sorted(names)


def member_properties(forms: list[CollectForm]) -> list[str]:
    """The member fields any of the caller's forms saves from its roster: members.csv's columns."""
    names: dict[str, None] = {}
    for form in forms:
        names.update(dict.fromkeys(form.xform.members.values()))
    return sorted(names)


def _xform_text(value: Any) -> str:
    """A household value as an XForm answer (what Collect prefills the question with)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    if isinstance(value, dict) and "lat" in value:
        return " ".join(str(value.get(key, 0)) for key in ("lat", "lon", "altitude_m", "accuracy_m"))
    return str(value)


def field_stamps(state: dict[str, Any]) -> list[str]:
    """The stamps a write must name as its base to supersede what the field holds now."""
    if state.get("heads"):
        return sorted(head["stamp"] for head in state["heads"])
    if state.get("head_stamps"):
        return list(state["head_stamps"])
    return [state["stamp"]] if state.get("stamp") else []


def _households(store: Store, caller: AppCaller) -> Iterator[dict[str, Any]]:
    where = village_where(scoped_areas(caller.scope, None))
    yield from store.iterate("households", where)


def _csv_lines(rows: Iterable[list[str]]) -> Iterator[str]:
    """Each row as one CSV line, so a long list streams instead of being built whole."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def households_csv(store: Store, caller: AppCaller, properties: list[str]) -> Iterator[str]:
    """The caller's households as Collect's entity list, a line at a time: name (the household id),
    label, __version, then each saved field and the hidden stamps of its heads."""
    return _csv_lines(_household_rows(store, caller, properties))


def _household_rows(store: Store, caller: AppCaller, properties: list[str]) -> Iterator[list[str]]:
    header = ["name", "label", "__version"]
    for name in properties:
        header += [name, stamp_property(name)]
    yield header
    for doc in _households(store, caller):
        fields = household_change(doc)["fields"]
        label = _xform_text(fields.get("head_name", {}).get("value")) or doc["id"]
        row = [doc["id"], label, str(doc.get("seq") or 1)]
        for name in properties:
            state = fields.get(name) or {}
            row += [_xform_text(state.get("value")), " ".join(field_stamps(state))]
        yield row


_MD5_CACHE: OrderedDict[tuple[Any, ...], str] = OrderedDict()
_MD5_LOCK = threading.Lock()
_MD5_CACHE_SIZE = 1024


def _fingerprint(store: Store, caller: AppCaller, properties: list[str]) -> tuple[Any, ...]:
    """What the list depends on, cheaply: a household write raises its seq, and a household
    leaving the store changes the count."""
    where = village_where(scoped_areas(caller.scope, None))
    newest = store.find("households", where, order_by="-seq", limit=1)
    identity = store_identity(store)  # another store (or a restored one) never shares an entry
    return (identity.store_id, identity.epoch, caller.scope.codes, tuple(properties), newest[0]["seq"] if newest else 0,
            store.count("households", where))


def members_csv(store: Store, caller: AppCaller, properties: list[str]) -> Iterator[str]:
    """The members of the caller's households, a line at a time: name (the member's id), label, __version,
    household, then each member field's value (`kmval__`) and the stamps of its heads (`kmstamp__`).
    Members come in a stable order per household, which the roster's rows follow."""
    return _csv_lines(_member_rows(store, caller, properties))


def _member_rows(store: Store, caller: AppCaller, properties: list[str]) -> Iterator[list[str]]:
    header = ["name", "label", "__version", "household"]
    for name in properties:
        header += [member_value_property(name), member_stamp_property(name)]
    yield header
    for doc in _households(store, caller):
        members: dict[str, dict[str, Any]] = {}
        for path, state in household_change(doc)["fields"].items():
            parts = path.split("/")
            if len(parts) == 3 and parts[0] == MEMBER_LIST:
                members.setdefault(parts[1], {})[parts[2]] = state
        for member_id in sorted(members):
            fields = members[member_id]
            label = _xform_text(fields.get("name", {}).get("value")) or member_id
            row = [member_id, label, str(doc.get("seq") or 1), doc["id"]]
            for name in properties:
                state = fields.get(name) or {}
                row += [_xform_text(state.get("value")), " ".join(field_stamps(state))]
            yield row


def list_md5(store: Store, caller: AppCaller, which: str, properties: list[str]) -> str:
    """The md5 of the caller's households.csv or members.csv, worked out again only when a household
    in scope changed."""
    key = (which, *_fingerprint(store, caller, properties))
    with _MD5_LOCK:
        if key in _MD5_CACHE:
            _MD5_CACHE.move_to_end(key)
            return _MD5_CACHE[key]
    digest = hashlib.md5()  # noqa: S324 - OpenRosa compares attachments by md5
    for text in LISTS[which](store, caller, properties):
        digest.update(text.encode("utf-8"))
    with _MD5_LOCK:
        _MD5_CACHE[key] = digest.hexdigest()
        while len(_MD5_CACHE) > _MD5_CACHE_SIZE:
            _MD5_CACHE.popitem(last=False)
    return digest.hexdigest()


LISTS = {HOUSEHOLDS_FILE: households_csv, MEMBERS_FILE: members_csv}


def integrity(store: Store, caller: AppCaller, ids: list[str]) -> list[tuple[str, bool]]:
    """For each id Collect holds: whether it is gone for the caller (removed, or out of its villages)."""
    out = []
    for household_id in ids:
        doc = store.get("households", household_id)
        out.append((household_id, doc is None or not caller.scope.covers(doc["village"])))
    return out


def member_integrity(store: Store, caller: AppCaller, ids: list[str]) -> list[tuple[str, bool]]:
    """For each member id Collect holds: whether it is gone for the caller (its household removed or out
    of the caller's villages, or the member no longer in it). Members have no index of their own, so
    the caller's households are read once, as members.csv reads them."""
    held: set[str] = set()
    wanted = set(ids)
    for doc in _households(store, caller):
        for path in household_change(doc)["fields"]:
            parts = path.split("/")
            if len(parts) == 3 and parts[0] == MEMBER_LIST and parts[1] in wanted:
                held.add(parts[1])
    return [(member_id, member_id not in held) for member_id in ids]


# -- submissions --------------------------------------------------------------------------------
@dataclass
class Outcome:
    status: int
    message: str
    result: dict[str, Any]


def _village(store: Store, caller: AppCaller, submission: Submission, boundaries: Any) -> str:
    """The village of the household the submission is about: its stored village, or for a new one the
    caller's single village, or the caller's village whose boundary holds the visit's point."""
    if submission.household_id:
        doc = store.get("households", submission.household_id)
        if doc is not None:
            return doc["village"]
    villages = [code for code in caller.user.get("villages") or [] if code.count(".") == 3]
    if len(villages) == 1:
        return villages[0]
    if submission.geotag and villages:
        inside = [code for code in villages
                  if boundaries.locate(code, submission.geotag["lat"], submission.geotag["lon"]) is None]
        if len(inside) == 1:
            return inside[0]
    raise SubmissionError(400, _("The village of a new household cannot be told from this submission."),
                          {"village": [_("record the house location inside one of your villages")]})


def _server_hlc(store: Store) -> str:
    return HybridClock(wall_ms, stored_hlc(store)).now()


def visit_event(submission: Submission, caller: AppCaller, village: str, hlc: str, received_at: str
                ) -> dict[str, Any]:
    """The JSON push event a submission stands for."""
    event: dict[str, Any] = {
        "id": submission.instance_id, "type": "visit", "device_id": caller.device_id, "hlc": hlc,
        "form_id": submission.form_id, "form_version": submission.version, "village": village,
        "household_id": submission.household_id, "answers": submission.answers,
    }
    if submission.started_at:
        event["started_at"] = submission.started_at
    if submission.ended_at:
        event["ended_at"] = submission.ended_at
    if submission.geotag:
        event["geotag"] = {**submission.geotag, "captured_at": submission.ended_at or received_at}
        event["geotag"].setdefault("accuracy_m", 0.0)
    if submission.deprecated_id:
        event["supersedes"] = submission.deprecated_id
    if submission.base:
        event["base"] = submission.base
    return event


# -- files of submissions ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Received:
    """A file that came with a submission post (or an earlier part of it), its bytes in the blob store."""

    filename: str
    sha256: str
    size: int
    media_type: str


def media_answers(definition: Definition, answers: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, file name) of every answered media question: `foto` or `members/<row id>/foto`."""
    found: list[tuple[str, str]] = []
    media = {question.name for question in definition.media_questions()}

    def walk(values: dict[str, Any], prefix: str) -> None:
        for name, value in values.items():
            if name in media and isinstance(value, str) and value:
                found.append((prefix + name, value))
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                for row in value:
                    if isinstance(row.get("_id"), str):
                        walk(row, f"{prefix}{name}/{row['_id']}/")

    walk(answers, "")
    return found


def describe_files(files: dict[str, bytes]) -> dict[str, Received]:
    """What the posted files are, before anything is stored."""
    return {filename: Received(filename, hashlib.sha256(data).hexdigest(), len(data), sniff(data[:SNIFF_BYTES]))
            for filename, data in files.items()}


def keep_files(blobs: BlobStore, files: dict[str, bytes], names: Iterable[str]) -> None:
    """The named posted files put in the blob store (content-addressed: a resent file is stored once)."""
    for name in names:
        if name in files:
            blobs.put_bytes(files[name])


def _stash_key(caller: AppCaller, instance_id: str) -> str:
    return f"{caller.user['id']}/{caller.device_id}/{instance_id}"


def stash_parts(store: Store, caller: AppCaller, instance_id: str, kept: dict[str, Received]) -> dict[str, Received]:
    """Files of a post that Collect split (`*isIncomplete*`), kept until the last part comes; all so far."""
    key = _stash_key(caller, instance_id)
    with store.transaction() as tx:
        doc = tx.get(PARTS, key) or {"id": key, "files": {}}
        files = {**doc["files"], **{name: received.__dict__ for name, received in kept.items()}}
        tx.put(PARTS, {"id": key, "files": files})
    return {name: Received(**entry) for name, entry in files.items()}


def _parts(store: Store, caller: AppCaller, instance_id: str) -> dict[str, Received]:
    doc = store.get(PARTS, _stash_key(caller, instance_id))
    return {name: Received(**entry) for name, entry in (doc or {}).get("files", {}).items()}


def _attachment_list(definition: Definition, answers: dict[str, Any], files: dict[str, Received]
                     ) -> list[dict[str, Any]]:
    return [{"path": path, "sha256": files[name].sha256, "size": files[name].size,
             "media_type": files[name].media_type, "filename": name}
            for path, name in media_answers(definition, answers) if name in files]


def _present(blobs: BlobStore | None, received: dict[str, Received]) -> dict[str, Received]:
    """The received files whose bytes are in the blob store (a stashed part's may have been collected)."""
    if blobs is None:
        return {}
    return {name: file for name, file in received.items() if blobs.exists(file.sha256)}


def hold_files(store: Store, visit_id: str, files: dict[str, Received], limits: MediaLimits) -> int:
    """Mark the visit's attachments whose bytes came (and fit their question) as held; how many now are."""
    def unit(tx: Writer) -> int:
        count = 0
        visit = tx.get("visits", visit_id)
        for entry in (visit or {}).get("attachments") or ():
            received = files.get(entry["filename"])
            if received is None or received.sha256 != entry["sha256"]:
                continue
            attachment = tx.get(ATTACHMENTS, attachment_id(visit_id, entry["path"]))
            if attachment is None or attachment.get("held"):
                continue
            if received.size > limits.of(attachment["kind"]) or not fits(
                    attachment["kind"], received.media_type, received.filename,
                    attachment.get("accept_types") or (), attachment.get("accept_extensions") or ()):
                continue  # stays flagged as missing: the supervisor sees the visit lacks a usable file
            mark_held(tx, attachment, received.media_type)
            count += 1
        return count

    return store.unit_of_work(unit)


def take_submission(store: Store, push: PushService, caller: AppCaller, xml: bytes,
                    files: dict[str, bytes] | None = None, *, incomplete: bool = False,
                    blobs: BlobStore | None = None, limits: MediaLimits | None = None,
                    forced: dict[str, Any] | None = None) -> Outcome:
    """A Collect submission taken in as a visit, or SubmissionError saying why not (nothing stored).

    Its files go to the blob store and the visit's attachments list names them. A post that Collect
    split (`incomplete`) keeps its files until the last part, which makes the visit. ``forced`` is the
    held document of an update taken in without waiting for its branch any longer (:func:`force_held`)."""
    root = parse_xml(xml)
    try:
        return _take(store, push, caller, root, xml, files, incomplete=incomplete, blobs=blobs, limits=limits,
                     forced=forced)
    except SubmissionError:
        if not incomplete:
            # the last post was refused: parts stashed before it go, their blobs left to garbage collection
            store.delete(PARTS, _stash_key(caller, instance_id_of(root)))
        raise


def _take(store: Store, push: PushService, caller: AppCaller, root: Any, xml: bytes,
          files: dict[str, bytes] | None, *, incomplete: bool, blobs: BlobStore | None,
          limits: MediaLimits | None, forced: dict[str, Any] | None = None) -> Outcome:
    form_id, version = submission_form(root)
    definition = _accepting_definition(store, caller, form_id, version)
    submission = read_submission(definition, root)
    if not submission.household_id:
        raise SubmissionError(400, _("The submission names no household."), {"household": [_("missing")]})
    village = _village(store, caller, submission, push.boundaries)
    files = (files or {}) if blobs is not None else {}
    # Only files that answer a media question of the submission are looked at: any other part is
    # ignored and nothing of it stored, as ODK Central ignores parts its binary fields do not name.
    wanted = {name for _, name in media_answers(definition, submission.answers)}
    received = describe_files({name: data for name, data in files.items() if name in wanted})
    if incomplete:
        # the part's files are kept now: the post that makes the visit will not carry them again
        if received:
            keep_files(blobs, files, received)  # type: ignore[arg-type]
            stash_parts(store, caller, submission.instance_id, received)
        return Outcome(201, "Bagian kiriman diterima / Part of the submission received.", {})
    received = {**_parts(store, caller, submission.instance_id), **received}
    stored = store.get("events", submission.instance_id)
    waits_for = _waits_for(store, submission) if stored is None and forced is None else None
    if waits_for is not None:
        return _hold(store, blobs, caller, submission, xml, files, received, waits_for)
    flags = _entity_flags(store, submission, forced) if stored is None else []
    # A resend carries the first one's stamp, so that the same XML is the same event body.
    hlc = stored["hlc"] if stored is not None else _server_hlc(store)
    now = wall_ms()
    received_at = iso(datetime.fromtimestamp(now / 1000, UTC))
    event = visit_event(submission, caller, village, hlc, received_at)
    if stored is not None:
        # A resend names the files the first one did, whichever of them come with it.
        if stored["body"].get("attachments"):
            event["attachments"] = stored["body"]["attachments"]
    else:
        attachments = _attachment_list(definition, submission.answers, received) if received else []
        if attachments:
            event["attachments"] = attachments
    if received:
        # The bytes go first: a visit is never stored naming a file the blob store lacks. If the
        # push then fails, the blobs are named by nothing and garbage collection takes them.
        keep_files(blobs, files, received)  # type: ignore[arg-type]
    results, _clock = push.push(Caller(caller.user["id"], caller.user["role"], caller.device_id, caller.scope), None,
                           [event], PushSettings(NO_SKEW_BOUND_MS,
                                                 extra_flags={submission.instance_id: flags} if flags else {}))
    result = results[0]
    if result["status"] in ("applied", "duplicate") and received and limits is not None:
        # Marking the files held is a unit of its own after the visit's: if it fails, Collect is
        # answered an error, keeps the form and sends it again, and the resend (a duplicate)
        # holds them. The stash of an earlier part goes only once its files are held.
        hold_files(store, submission.instance_id, _present(blobs, received), limits)
        store.delete(PARTS, _stash_key(caller, submission.instance_id))
    if result["status"] in ("applied", "duplicate") and (submission.entity is not None or submission.member_entities):
        _branch_step_taken(store, submission, push, blobs, limits)
    if result["status"] == "applied":
        flags = result.get("flags") or []
        note = f" ({len(flags)} flag{'s' if len(flags) != 1 else ''} for the supervisor)" if flags else ""
        return Outcome(201, f"Kunjungan diterima / Visit received{note}.", result)
    if result["status"] == "duplicate":
        return Outcome(201, "Kunjungan ini sudah diterima / This visit was already received.", result)
    code = result.get("code")
    status = {"id_reused": 409, "out_of_scope": 403}.get(code, 400)
    if code == "id_reused":
        message = _("Another submission was received with this instanceID.")
    else:
        message = result.get("message") or _("The submission was refused.")
    raise SubmissionError(status, message, result.get("errors"))


# -- offline entities: a branch's submissions taken in the order they were made -----------------------
# Collect numbers a household's offline updates on one phone as a branch (branchId, baseVersion,
# trunkVersion); the wire does not keep their order. As ODK Central does, a submission whose
# predecessor on its branch has not arrived is held, and taken in when that one is: the receiving
# node stamps each as it folds it, so the phone's later write always follows its earlier one.
# The merge base stays the hidden stamps: a branch begun on an old version meets the writes made
# since as a conflict, never a silent overwrite.
def _branch_entities(submission: Submission) -> list[tuple[str, Any]]:
    """(entity key, versions) of every entity the submission updates: its household, then each known member
    a roster row updates (keyed `members/<id>`, so a member's branch is ordered as a household's is)."""
    out: list[tuple[str, Any]] = []
    if submission.entity is not None and submission.household_id:
        out.append((submission.household_id, submission.entity))
    out += [(f"{MEMBER_LIST}/{member_id}", versions) for member_id, versions in submission.member_entities.items()]
    return out


def _member_exists(store: Store, household_id: str | None, member_id: str) -> bool:
    doc = store.get("households", household_id) if household_id else None
    prefix = f"{MEMBER_LIST}/{member_id}/"
    return doc is not None and any(path.startswith(prefix) for path in household_change(doc)["fields"])


def _waits_for(store: Store, submission: Submission) -> str | None:
    """The first branch step (of its household's, or of a member's) this submission must follow that has
    not been taken in yet, or None."""
    for entity_key, versions in _branch_entities(submission):
        key = versions.needs(entity_key)
        if key is None:
            continue
        if key.endswith("|create"):
            # made offline: its first update waits only until the household (or the member) exists
            if entity_key == submission.household_id:
                if store.get("households", entity_key) is None:
                    return key
            elif not _member_exists(store, submission.household_id, entity_key.split("/", 1)[1]):
                return key
        elif store.get(BRANCHES, key) is None:
            return key
    return None


def _hold(store: Store, blobs: BlobStore | None, caller: AppCaller, submission: Submission, xml: bytes,
          files: dict[str, bytes], received: dict[str, Received], key: str) -> Outcome:
    held = store.get(HELD, key)
    if held is not None and held["instance_id"] != submission.instance_id:
        raise SubmissionError(409, _("Another submission of this household's offline branch is already "
                                     "waiting for the same earlier one."))
    if blobs is not None and received:
        keep_files(blobs, files, received)
        stash_parts(store, caller, submission.instance_id, received)
    store.put(HELD, {"id": key, "instance_id": submission.instance_id, "household_id": submission.household_id,
                     "xml": base64.b64encode(xml).decode("ascii"), "user": caller.user["id"],
                     "device_id": caller.device_id, "held_at": iso(held_clock())})
    log.info("collect: %s held until %s is taken in", submission.instance_id, key)
    return Outcome(201, "Kiriman disimpan sampai kiriman sebelumnya tiba / Submission kept until the earlier "
                        "one of this household arrives.", {"status": "held", "waits_for": key})


def _branch_step_taken(store: Store, submission: Submission, push: PushService, blobs: BlobStore | None,
                       limits: MediaLimits | None) -> None:
    """Record the branch steps the submission was (its household's and its members'), and take in the ones
    held waiting for them."""
    household: dict[str, Any] | None = None
    for entity_key, versions in _branch_entities(submission):
        key = versions.provides(entity_key)
        if key is None:
            continue
        if not key.endswith("|create"):
            # the household's version once the step is in: what the branch's next step was made on (a create
            # is not recorded: the household itself says it arrived, and a new household's visit costs no write)
            household = household or store.get("households", submission.household_id or "")
            store.put(BRANCHES, {"id": key, "instance_id": submission.instance_id,
                                 "seq": household["seq"] if household is not None else None})
        _take_held(store, key, push, blobs, limits)


def _take_held(store: Store, key: str, push: PushService, blobs: BlobStore | None,
               limits: MediaLimits | None) -> None:
    held = store.get(HELD, key)
    if held is None:
        return
    user = store.get("users", held["user"])
    if user is None:
        store.delete(HELD, key)
        log.error("collect: held %s dropped, its user %s is gone", held["instance_id"], held["user"])
        return
    try:
        # a store failure here leaves it held: the resend of this one (a duplicate) tries again; one that
        # waits for another step still (a member's) is held again under that step
        take_submission(store, push, AppCaller(user, held["device_id"]), base64.b64decode(held["xml"]),
                        blobs=blobs, limits=limits)
        store.delete(HELD, key)
    except SubmissionError as refused:
        # the submission was accepted when held: it waits on, with the reason, for an administrator
        store.put(HELD, {**held, "refused": refused.message})
        log.error("collect: held %s refused when taken in: %s", held["instance_id"], refused.message)


def _entity_flags(store: Store, submission: Submission, forced: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The visit flags a Collect entity update earns before it is pushed: taken in without its branch's
    earlier submission (``forced``), and made on a version the server had moved past. The version the
    update was made on is its ``baseVersion`` for one made on a server version; for a later step of an
    offline branch, the version the branch's earlier step left (the phone's own writes are no news)."""
    flags: list[dict[str, Any]] = []
    if forced is not None:
        waited = held_clock() - datetime.fromisoformat(forced["held_at"].replace("Z", "+00:00"))
        flags.append({"code": FORCED_FLAG, "waited_for": forced["id"], "held_at": forced["held_at"],
                      "message": FORCED_MESSAGE % {"days": waited.days}})
    versions, household_id = submission.entity, submission.household_id
    if versions is None or not versions.update or versions.base_version is None or not household_id:
        return flags
    doc = store.get("households", household_id)
    if doc is None or not doc.get("seq"):
        return flags
    made_on: int | None = versions.base_version
    earlier = versions.needs(household_id)
    if earlier is not None and earlier.endswith("|create"):
        made_on = None  # made on the phone's own create: what version that left is not kept
    elif earlier is not None:
        step = store.get(BRANCHES, earlier)
        made_on = step.get("seq") if step is not None else versions.trunk_version
    if made_on is not None and doc["seq"] > made_on:
        flags.append({"code": BEHIND_FLAG, "base_version": made_on, "server_version": doc["seq"],
                      "message": BEHIND_MESSAGE % {"base": made_on, "server": doc["seq"]}})
    return flags


# -- the backlog: held updates whose earlier submission never came ----------------------------------
@dataclass
class ForcedOutcome:
    held: dict[str, Any]
    status: int
    message: str


def _branch_order(held: dict[str, Any]) -> tuple[str, str, int]:
    # "<household>|<branch>|<version waited for>" or "<household>|create": a branch's steps in its order
    parts = held["id"].split("|")
    version = int(parts[2]) if len(parts) == 3 and parts[2].isdigit() else -1
    return parts[0], parts[1] if len(parts) == 3 else "", version


def force_held(store: Store, push: PushService, *, older_than: timedelta, blobs: BlobStore | None = None,
               limits: MediaLimits | None = None) -> list[ForcedOutcome]:
    """Take in every update held longer than ``older_than`` without its branch's earlier submission, as
    ODK Central force-processes its backlog: in branch order, each visit flagged ``collect_forced`` so
    that a supervisor sees it; the held update it was itself waiting for follows it as usual. One the
    push refuses stays held with the reason, for an administrator."""
    cutoff = iso(held_clock() - older_than)
    out = []
    for found in sorted(store.find(HELD, {"held_at": Range(lt=cutoff)}), key=_branch_order):
        held = store.get(HELD, found["id"])
        if held is None or held["instance_id"] != found["instance_id"] or held.get("refused"):
            continue  # taken in after an earlier one of this run, or refused before
        user = store.get("users", held["user"])
        if user is None:
            store.delete(HELD, held["id"])
            log.error("collect: held %s dropped, its user %s is gone", held["instance_id"], held["user"])
            continue
        try:
            outcome = take_submission(store, push, AppCaller(user, held["device_id"]), base64.b64decode(held["xml"]),
                                      blobs=blobs, limits=limits, forced=held)
        except SubmissionError as refused:
            store.put(HELD, {**held, "refused": refused.message})
            log.error("collect: held %s refused when forced: %s", held["instance_id"], refused.message)
            out.append(ForcedOutcome(held, refused.status, refused.message))
            continue
        current = store.get(HELD, held["id"])
        if current is not None and current["instance_id"] == held["instance_id"]:
            store.delete(HELD, held["id"])
        log.warning("collect: held %s taken in without %s after waiting since %s", held["instance_id"],
                    held["id"], held["held_at"])
        out.append(ForcedOutcome(held, outcome.status, outcome.message))
    return out


_backlog_lock = threading.Lock()
_backlog_checked = [0.0]


def force_held_now_and_then(store: Store, push: PushService, *, days: float, blobs: BlobStore | None,
                            limits: MediaLimits | None) -> None:
    """The backlog's periodic run: at most every BACKLOG_CHECK_SECONDS per worker, on a submission it
    takes (an update can only be held by a submission, so the backlog needs no timer of its own)."""
    now = held_clock().timestamp()
    with _backlog_lock:
        if now - _backlog_checked[0] < BACKLOG_CHECK_SECONDS:
            return
        _backlog_checked[0] = now
    try:
        force_held(store, push, older_than=timedelta(days=days), blobs=blobs, limits=limits)
    except Exception:  # the submission that ran it was answered already; the next check tries again
        log.exception("collect: forcing held submissions failed")


def _accepting_definition(store: Store, caller: AppCaller, form_id: str, version: str) -> Definition:
    form = store.get(FORMS, form_id) if form_id else None
    if form is None or not form.get("published") or not assigned_to(form.get("assignment"), caller.scope):
        raise SubmissionError(404, _("No form %(form)r is open to you.", form=form_id))
    if form.get("archived"):
        raise SubmissionError(403, _("The form %(form)r is archived and takes no more submissions.",
                                               form=form_id))
    definition = published_definition(store, form_id, version)
    if definition is None:
        raise SubmissionError(404, _("Version %(version)r of form %(form)r is not published.",
                                               version=version, form=form_id))
    return definition

