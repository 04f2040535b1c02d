"""Exports of visits (CSV in a ZIP, XLSX, GeoJSON), of household history and of the village meeting's list of
DTSEN proposals, streamed, and their record."""

# Exports carry personal data (NIK, health, disability), so each one is written to the
# ``exports`` collection before its first byte leaves, and completed with its row count at
# the end (or marked aborted when the client goes away).
#
# Memory stays flat however many visits match: visits are read a batch at a time
# (reporting.stream_visits), rows are written as they come, and whatever must be written
# later (repeat rows of a CSV ZIP, the sheets of a workbook) waits in temporary files, not in
# memory. The only per-export state is the column layout of each form version.

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

from forms.fieldtypes import Cells, FieldType, scalar_cells
from forms.household import DECILE
from sync import Record
from sync.values import canonical_json

from .areas import area_condition, in_areas
from .errors import ApiError
from .forms_registry import published_definition
from .households import household_history
from .reporting import (
    PROPOSAL_FORM,
    proposal_villages,
    stream_visits,
    village_proposals,
    visit_date,
    visit_moment,
)
from .storage import Store
from .timeutil import iso, now_utc

EXPORTS = "exports"
LABEL_MODES = ("codes", "id", "en")
CHUNK_BYTES = 64 * 1024
# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection");
# tab and carriage return too, since some spreadsheets strip them before looking.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_CHARS = frozenset(FORMULA_START)
# openpyxl refuses the C0 control characters other than tab, newline and carriage return.
_XLSX_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SHEET_UNSAFE = re.compile(r"[\[\]:*?/\\]")
# Data rows per sheet: Excel opens at most 1,048,576 rows, the header included.
XLSX_MAX_ROWS = 1_048_575

VISIT_COLUMNS = ("visit_id", "form_id", "form_version", "household_id", "village", "officer", "device_id",
                 "started_at", "ended_at", "received_at", "visit_date", "geotag_lat", "geotag_lon",
                 "geotag_accuracy_m", "review_state", "flags", "supersedes", "superseded_by")
REPEAT_COLUMNS = ("visit_id", "parent_row_id", "row_id")
GEOJSON_PROPERTIES = ("visit_id", "form_id", "form_version", "household_id", "village", "officer", "device_id",
                      "started_at", "ended_at", "received_at", "visit_date", "accuracy_m", "review_state", "flagged",
                      "flag_codes", "flags")
#: Names no answer column takes, in any table of any format, so that each answer has one name everywhere.
METADATA_NAMES = frozenset({*VISIT_COLUMNS, *REPEAT_COLUMNS, *GEOJSON_PROPERTIES, "_id"})
ANSWER_PREFIX = "answer_"


def neutralise(value: Any) -> Any:
    """A cell value a spreadsheet shows as written: text that would run as a formula gets a leading
    apostrophe; numbers stay numbers (a negative latitude is data, not a formula)."""
    if value.__class__ is str and value[:1] in _FORMULA_CHARS:
        return "'" + value
    return value


def _csv_cell(value: Any) -> Any:
    # Called for every cell of every row: the common cases are tested first and cheaply.
    cls = value.__class__
    if cls is str:
        return "'" + value if value[:1] in _FORMULA_CHARS else value
    if value is None:
        return ""
    if cls is bool:
        return "true" if value else "false"
    return value


def _xlsx_cell(value: Any) -> Any:
    if value.__class__ is str:
        return neutralise(_XLSX_ILLEGAL.sub("", value))
    return value


# -- filters ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VisitFilter:
    """Which visits an export holds. ``start``/``end`` are inclusive: a date is a whole day in each
    visit's own village time zone, a date-time an instant."""

    form_id: str | None = None
    area: str | None = None
    officer: str | None = None
    review: str | None = None
    start: date | datetime | None = None
    end: date | datetime | None = None
    labels: str = "codes"

    def as_dict(self) -> dict[str, Any]:
        out = {"form_id": self.form_id, "village": self.area, "officer": self.officer, "review": self.review,
               "from": self.start.isoformat() if self.start else None,
               "to": self.end.isoformat() if self.end else None, "labels": self.labels}
        return {key: value for key, value in out.items() if value is not None}

    def indexed(self) -> dict[str, Any]:
        where: dict[str, Any] = {}
        if self.officer:
            where["officer"] = self.officer
        if self.review:
            where["review_state"] = self.review
        return where

    def in_time(self, visit: Mapping[str, Any]) -> bool:
        # Visit times are the device's own strings with any offset: they cannot be compared in
        # the store. At scale, a normalised UTC visit time indexed beside received_at would let
        # this range be pushed down.
        if self.start is None and self.end is None:
            return True
        for bound, later in ((self.start, False), (self.end, True)):
            if bound is None:
                continue
            if isinstance(bound, datetime):
                moment = visit_moment(visit)
                if moment is None or (moment > bound if later else moment < bound):
                    return False
            else:
                day = visit_date(visit)
                if day is None or (day > bound if later else day < bound):
                    return False
        return True


def parse_bound(text: str, name: str) -> date | datetime:
    """A ``from``/``to`` value: a date (YYYY-MM-DD) or a date-time with an offset."""
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(422, "invalid", "The request has invalid fields.",
                       {name: ["must be a date (2026-11-22) or a date-time with an offset"]}) from None
    if moment.tzinfo is None:
        raise ApiError(422, "invalid", "The request has invalid fields.",
                       {name: ["a date-time needs an offset (Z or +07:00): villages are in three time zones"]})
    return moment


def matching_visits(store: Store, areas: list[str] | None, filters: VisitFilter) -> Iterator[dict[str, Any]]:
    """The visits an export of ``filters`` holds, by form version then arrival. ``areas`` come from
    ``reporting.scoped_areas``, called before the response starts so that 404 can still be answered."""
    for visit in stream_visits(store, areas, form_id=filters.form_id, where=filters.indexed()):
        if filters.in_time(visit):
            yield visit


# -- the export record ----------------------------------------------------------------------------
def open_record(store: Store, *, actor: str, role: str, export_format: str, filters: Mapping[str, Any],
                address: str | None) -> dict[str, Any]:
    doc = {"id": uuid.uuid4().hex, "at": iso(now_utc()), "actor": actor, "role": role, "format": export_format,
           "filters": dict(filters), "address": address, "status": "started", "rows": 0, "repeat_rows": 0,
           "finished_at": None}
    store.insert(EXPORTS, doc)
    return doc


def close_record(store: Store, record: dict[str, Any], status: str, rows: int, repeat_rows: int = 0) -> None:
    store.put(EXPORTS, {**record, "status": status, "rows": rows, "repeat_rows": repeat_rows,
                        "finished_at": iso(now_utc())})


def list_records(store: Store, *, actor: str | None = None, after: str | None = None,
                 limit: int = 100) -> list[dict[str, Any]]:
    """Exports, newest first; ``after`` is the id of the last export of the previous page."""
    where = {"actor": actor} if actor else {}
    position = None
    if after:
        last = store.get(EXPORTS, after)
        if last is None:
            raise ApiError(400, "invalid_cursor", "after must be the id of an export on the previous page.",
                           {"after": ["no such export"]})
        position = (last["at"], last["id"])
    return store.find(EXPORTS, where, order_by="-at", after=position, limit=limit)


@dataclass
class Tally:
    rows: int = 0
    repeat_rows: int = 0


def recorded(store: Store, record: dict[str, Any], chunks: Iterator[bytes], tally: Tally) -> Iterator[bytes]:
    """``chunks`` with the export record closed when they end, fail or the client leaves."""
    status = "failed"
    try:
        yield from chunks
        status = "completed"
    except GeneratorExit:
        status = "aborted"
        raise
    finally:
        close_record(store, record, status, tally.rows, tally.repeat_rows)


# -- columns of a form version ------------------------------------------------------------------------
def _text(label: Any, language: str, fallback: str, default_language: str) -> str:
    if isinstance(label, Mapping):
        return label.get(language) or label.get(default_language) or fallback
    return label if isinstance(label, str) and label else fallback


def _unique(columns: Callable[[str], list[str]], wanted: str, taken: set[str]) -> str:
    """``wanted``, or ``answer_``-prefixed as often as needed, so that none of its columns is taken."""
    base = wanted
    while any(column in taken for column in columns(base)):
        base = ANSWER_PREFIX + base
    taken.update(columns(base))
    return base


@dataclass(frozen=True)
class Column:
    """An answer's place in a table: the field, its type, its base name and its header cells."""

    ref: Any
    ftype: FieldType
    name: str  # the base name in every format: the field's name unless it meets a metadata name
    headers: tuple[str, ...]


@dataclass
class Layout:
    """How one form version becomes tables: the visit table and one per repeat, with headers
    from the labels (or field names for ``codes``) and choices as codes or labels.

    Each table's columns are planned once, since a large export renders every answer of every
    visit through them. No table repeats a column name: an answer whose column would meet a
    metadata column (of any format: CSV, XLSX or GeoJSON) or an earlier answer's is prefixed
    with ``answer_`` (the same name in every format), and with labels for headers a repeated
    label gets the field's name in brackets."""

    definition: Any
    labels: str
    tables: dict[str | None, list[Column]] = field(default_factory=dict)  # None: the visit table
    choice_text: dict[tuple[str, str], str] = field(default_factory=dict)
    cells: Cells = field(default_factory=Cells)
    _plans: dict[str | None, list[tuple[str, Any, Any, bool]]] = field(default_factory=dict)
    _children: dict[str | None, list[str]] = field(default_factory=dict)  # repeats directly inside a table

    def __post_init__(self) -> None:
        definition = self.definition
        scopes: list[str | None] = [None]
        for ref in definition.iter_fields():
            if ref.type == "repeat":
                scopes.append(ref.name)
                self._children.setdefault(ref.repeat, []).append(ref.name)
        for scope in scopes:
            self.tables[scope] = self._columns(scope)
        if self.labels != "codes":
            for list_name, choices in definition.choices.items():
                for choice in choices:
                    self.choice_text[(list_name, choice["name"])] = _text(
                        choice.get("label"), self.labels, choice["name"], definition.default_language)
            choice_text = self.choice_text
            self.cells = Cells(lambda list_name, code: choice_text.get((list_name, code), code))
        self._unbound = self.cells
        for scope, columns in self.tables.items():
            self._plans[scope] = [(c.ref.name, c.ftype.cells, c.ref.field, c.ftype.cells is scalar_cells)
                                  for c in columns]

    def _columns(self, scope: str | None) -> list[Column]:
        refs = [ref for ref in self.definition.answer_fields(scope) if ref.ftype.exported]
        names: set[str] = set(METADATA_NAMES)
        bases = [_unique(ref.ftype.column_names, ref.name, names) for ref in refs]
        if self.labels == "codes":
            return [Column(ref, ref.ftype, base, tuple(ref.ftype.column_names(base)))
                    for ref, base in zip(refs, bases, strict=True)]
        headers: set[str] = set(METADATA_NAMES)
        columns = []
        for ref, base in zip(refs, bases, strict=True):
            title = _text(ref.field.get("label"), self.labels, ref.name, self.definition.default_language)

            def labelled(text: str, ftype: FieldType = ref.ftype) -> list[str]:
                return ftype.column_names(text, labels=True)

            if any(header in headers for header in labelled(title)):
                title = f"{title} [{base}]"
            title = _unique(labelled, title, headers)
            columns.append(Column(ref, ref.ftype, base, tuple(labelled(title))))
        return columns

    def bind_media(self, media: Callable[[str, Mapping[str, Any]], Any] | None) -> None:
        """How the next visit's media answers are written (its files' places in the export), or as
        file names (None)."""
        self.cells = self._unbound if media is None else replace(self._unbound, media=media)

    @property
    def key(self) -> str:
        return f"{self.definition.form_id}-{self.definition.version}"

    @property
    def repeats(self) -> list[str]:
        return [scope for scope in self.tables if scope is not None]

    def _headers(self, scope: str | None) -> list[str]:
        return [header for column in self.tables[scope] for header in column.headers]

    def main_headers(self) -> list[str]:
        return [*VISIT_COLUMNS, *self._headers(None)]

    def repeat_headers(self, repeat: str) -> list[str]:
        return [*REPEAT_COLUMNS, *self._headers(repeat)]

    def _cells(self, table: str | None, answers: Mapping[str, Any]) -> list[Any]:
        out: list[Any] = []
        how = self.cells
        for name, cells, definition_field, plain in self._plans[table]:
            value = answers.get(name)
            if plain and value.__class__ not in (list, dict):
                out.append(value)
            else:
                out.extend(cells(value, definition_field, how))
        return out

    def properties(self, scope: str | None, answers: Mapping[str, Any]) -> dict[str, Any]:
        """A table's answers as GeoJSON properties, by the same names as the columns; repeats as lists of rows."""
        out: dict[str, Any] = {}
        for column in self.tables[scope]:
            if column.ref.name in answers:
                out[column.name] = column.ftype.property(answers[column.ref.name], column.ref.field, self.cells)
        for name in self._children.get(scope, ()):
            rows = answers.get(name)
            if name in answers:
                out[self._repeat_property(scope, name)] = [
                    {"_id": row.get("_id"), **self.properties(name, row)}
                    for row in (rows if isinstance(rows, list) else ()) if isinstance(row, Mapping)]
        return out

    def _repeat_property(self, scope: str | None, name: str) -> str:
        # A repeat is one property (its rows) beside the scope's answers: it may not take their names.
        taken = {column.name for column in self.tables[scope]} | set(METADATA_NAMES)
        return _unique(lambda base: [base], name, taken)

    def visit_row(self, visit: Mapping[str, Any]) -> list[Any]:
        geotag = visit.get("geotag") or {}
        day = visit_date(visit)
        meta = [visit["id"], visit["form_id"], visit["form_version"], visit["household_id"], visit["village"],
                visit["officer"], visit["device_id"], visit.get("started_at"), visit.get("ended_at"),
                visit.get("received_at"), day.isoformat() if day else None, geotag.get("lat"), geotag.get("lon"),
                geotag.get("accuracy_m"), visit.get("review_state"), " ".join(visit.get("flag_codes") or ()),
                visit.get("supersedes"), visit.get("superseded_by")]
        return meta + self._cells(None, visit.get("answers") or {})

    def repeat_rows(self, visit: Mapping[str, Any]) -> Iterator[tuple[str, list[Any]]]:
        """(repeat name, row) for every row of every repeat, nested ones under their parent row."""
        if self._children:
            yield from self._rows_in(visit["id"], None, None, visit.get("answers") or {})

    def _rows_in(self, visit_id: str, repeat: str | None, parent_row: str | None,
                 container: Mapping[str, Any]) -> Iterator[tuple[str, list[Any]]]:
        for name in self._children.get(repeat, ()):
            rows = container.get(name)
            for row in rows if isinstance(rows, list) else ():
                if not isinstance(row, Mapping):
                    continue
                yield name, [visit_id, parent_row, row.get("_id"), *self._cells(name, row)]
                if name in self._children:
                    yield from self._rows_in(visit_id, name, row.get("_id"), row)


class Layouts:
    """The layout of each form version met, made once per export."""

    def __init__(self, store: Store, labels: str):
        self.store = store
        self.labels = labels
        self._cache: dict[tuple[str, str], Layout | None] = {}

    def of(self, visit: Mapping[str, Any]) -> Layout | None:
        key = (visit["form_id"], visit["form_version"])
        if key not in self._cache:
            definition = published_definition(self.store, *key)
            self._cache[key] = None if definition is None else Layout(definition, self.labels)
        return self._cache[key]


# -- files of visits ----------------------------------------------------------------------------------
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class MediaLink(str):
    """A media cell of a workbook: its text, and the URL the cell links to."""

    url: str

    def __new__(cls, text: str, url: str) -> MediaLink:
        made = super().__new__(cls, text)
        made.url = url
        return made


@dataclass(frozen=True)
class MediaExport:
    """Where an export finds the files of visits, and the server's URL for the links to them."""

    blobs: Any  # server.blobs.BlobStore
    base_url: str  # e.g. https://kunjung.example/ (with its trailing slash)

    def url(self, visit_id: str, path: str) -> str:
        return f"{self.base_url.rstrip('/')}/api/v1/visits/{visit_id}/attachments/{path}"


def media_files(visit: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name in ``media/<visit id>/``, attachment) for each file of the visit the server holds; the name
    is the device's file name made safe, prefixed by its question path when two would meet."""
    out: list[tuple[str, dict[str, Any]]] = []
    taken: set[str] = set()
    for entry in visit.get("attachments") or ():
        if not entry.get("held"):
            continue
        name = _UNSAFE_NAME.sub("_", str(entry.get("filename") or "")).strip("._")[:120] or entry["sha256"][:16]
        if name in taken:
            name = _UNSAFE_NAME.sub("_", entry["path"]) + "-" + name
        taken.add(name)
        out.append((name, entry))
    return out


def _media_cell(visit: Mapping[str, Any], place: Callable[[str, dict[str, Any]], Any]
                ) -> Callable[[str, Mapping[str, Any]], Any] | None:
    """The ``Cells.media`` of one visit: a media answer (a file name) becomes ``place(name, attachment)``
    for a file the server holds, and stays the file name for one that has not arrived."""
    files = media_files(visit)
    if not files:
        return None
    by_answer = {(entry["path"].rsplit("/", 1)[-1], entry.get("filename")): (name, entry) for name, entry in files}

    def media(filename: str, definition_field: Mapping[str, Any]) -> Any:
        found = by_answer.get((definition_field.get("name"), filename))
        return filename if found is None else place(*found)

    return media


def _media_entries(archive: zipfile.ZipFile, pipe: _Pipe, blobs: Any, pending: list[tuple[str, str]]
                   ) -> Iterator[bytes]:
    """The files of the visits just written, each as ``media/<visit id>/<name>`` (stored: photos and
    recordings are compressed already), streamed from the blob store a piece at a time."""
    for name, sha256 in pending:
        info = zipfile.ZipInfo(name, date_time=datetime.now().timetuple()[:6])
        info.compress_type = zipfile.ZIP_STORED
        with archive.open(info, mode="w", force_zip64=True) as out:
            for piece in blobs.chunks(sha256):
                out.write(piece)
                if len(pipe.buffer) >= CHUNK_BYTES:
                    yield pipe.take()
    pending.clear()


# -- CSV in a ZIP ----------------------------------------------------------------------------------
class _Pipe(io.RawIOBase):
    """A write-only stream whose bytes the response takes away as they come; zipfile writes to
    it as to an unseekable file (sizes go in data descriptors after each entry)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.buffer += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


class _CsvEntry:
    """A CSV file inside the ZIP being written (UTF-8 with a BOM, so spreadsheets read it right)."""

    def __init__(self, archive: zipfile.ZipFile, name: str, headers: list[str]):
        self.raw = archive.open(name, mode="w", force_zip64=True)
        self.text = io.TextIOWrapper(self.raw, encoding="utf-8", newline="")
        self.text.write("\ufeff")
        self.writer = csv.writer(self.text)
        self.writer.writerow([_csv_cell(h) for h in headers])

    def write(self, row: list[Any]) -> None:
        self.writer.writerow([_csv_cell(v) for v in row])

    def close(self) -> None:
        self.text.close()


def csv_zip(store: Store, areas: list[str] | None, filters: VisitFilter, tally: Tally,
            media: MediaExport | None = None) -> Iterator[bytes]:
    """One CSV per form version (a row per visit) and one per repeat of it (a row per repeat row,
    joined by visit_id and row_id), as ODK Central lays them out; with ``media``, each file of a
    visit as ``media/<visit id>/<name>``, and the cell of its answer that relative path.

    The visit CSV streams straight into the ZIP; repeat rows of the same version wait in
    temporary files and follow it, then the version's files (a ZIP takes one entry at a time)."""
    pipe = _Pipe()
    layouts = Layouts(store, filters.labels)
    with zipfile.ZipFile(pipe, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:
        current: Layout | None = None
        entry: _CsvEntry | None = None
        spills: dict[str, Any] = {}
        pending: list[tuple[str, str]] = []  # (entry name, sha256) of files still to write

        def finish_version() -> Iterator[bytes]:
            if entry is not None:
                entry.close()
            for repeat, (spill, _) in spills.items():
                spill.seek(0)
                with archive.open(f"{current.key}-{repeat}.csv", mode="w", force_zip64=True) as out:
                    while block := spill.read(CHUNK_BYTES):
                        out.write(block.encode("utf-8"))
                        if len(pipe.buffer) >= CHUNK_BYTES:
                            yield pipe.take()
                spill.close()
            spills.clear()
            if media is not None:
                yield from _media_entries(archive, pipe, media.blobs, pending)

        for visit in matching_visits(store, areas, filters):
            layout = layouts.of(visit)
            if layout is None:
                continue
            if layout is not current:
                yield from finish_version()
                current = layout
                entry = _CsvEntry(archive, f"{layout.key}.csv", layout.main_headers())
                for repeat in layout.repeats:
                    spill = tempfile.TemporaryFile(mode="w+", encoding="utf-8", newline="")  # noqa: SIM115
                    spill.write("\ufeff")
                    spills[repeat] = (spill, csv.writer(spill))
                    spills[repeat][1].writerow([_csv_cell(h) for h in layout.repeat_headers(repeat)])
            if media is not None:
                files = media_files(visit)
                pending.extend((f"media/{visit['id']}/{name}", e["sha256"]) for name, e in files)
                layout.bind_media(_media_cell(visit, lambda name, _e, v=visit["id"]: f"media/{v}/{name}"))
            entry.write(layout.visit_row(visit))
            tally.rows += 1
            for repeat, row in layout.repeat_rows(visit):
                spills[repeat][1].writerow([_csv_cell(v) for v in row])
                tally.repeat_rows += 1
            if len(pipe.buffer) >= CHUNK_BYTES:
                yield pipe.take()
        yield from finish_version()
    yield pipe.take()


# -- XLSX -------------------------------------------------------------------------------------------
def _sheet_title(wanted: str, taken: set[str]) -> str:
    base = _SHEET_UNSAFE.sub("_", wanted)[:31]
    title, n = base, 2
    while title.lower() in taken:
        suffix = f"~{n}"
        title, n = base[:31 - len(suffix)] + suffix, n + 1
    taken.add(title.lower())
    return title


@dataclass
class _Part:
    title: str
    sheet: Any
    form_version: str
    repeat: str | None
    rows: int = 0


class _Sheets:
    """The sheets of a workbook by (form version, repeat); a table longer than a sheet can hold
    goes on in a continuation sheet (``name~2``) with the same header."""

    def __init__(self, workbook: Any):
        self.workbook = workbook
        self.taken: set[str] = set()
        self.current: dict[tuple[str, str | None], _Part] = {}
        self.parts: list[_Part] = []

    def create(self, title: str) -> Any:
        return self.workbook.create_sheet(_sheet_title(title, self.taken))

    def append(self, layout: Layout, repeat: str | None, row: list[Any]) -> None:
        key = (layout.key, repeat)
        part = self.current.get(key)
        if part is None or part.rows >= XLSX_MAX_ROWS:
            first = part is None
            part = self._open(layout, repeat)
            if first and repeat is None:
                for name in layout.repeats:  # a version's repeat sheets follow its visit sheet, rows or not
                    self._open(layout, name)
        part.sheet.append([_linked(part.sheet, v) if isinstance(v, MediaLink) else _xlsx_cell(v) for v in row])
        part.rows += 1

    def _open(self, layout: Layout, repeat: str | None) -> _Part:
        key = (layout.key, repeat)
        wanted = layout.key if repeat is None else f"{layout.key}-{repeat}"
        title = _sheet_title(wanted, self.taken)
        part = _Part(title, self.workbook.create_sheet(title), layout.key, repeat)
        headers = layout.main_headers() if repeat is None else layout.repeat_headers(repeat)
        part.sheet.append([_xlsx_cell(h) for h in headers])
        self.current[key] = part
        self.parts.append(part)
        return part


def _linked(sheet: Any, value: MediaLink) -> Any:
    cell = WriteOnlyCell(sheet, value=_xlsx_cell(str(value)))
    cell.hyperlink = value.url
    cell.style = "Hyperlink"
    return cell


def xlsx(store: Store, areas: list[str] | None, filters: VisitFilter, tally: Tally, *, actor: str,
         media: MediaExport | None = None) -> Iterator[bytes]:
    """One workbook: an index sheet, then a sheet per form version and one per repeat of it.

    openpyxl's write-only mode keeps each sheet in a temporary file as rows are appended, so
    sheets can be filled side by side; the saved workbook is a temporary file streamed out.
    Nothing can be sent before the workbook is complete (its directory comes last). With ``media``,
    the cell of a media answer links to the file's URL on this server."""
    sheets = _Sheets(Workbook(write_only=True))
    index = sheets.create("export")
    layouts = Layouts(store, filters.labels)
    for visit in matching_visits(store, areas, filters):
        layout = layouts.of(visit)
        if layout is None:
            continue
        if media is not None:
            layout.bind_media(_media_cell(visit, lambda name, e, v=visit["id"]: MediaLink(
                name, media.url(v, e["path"]))))
        sheets.append(layout, None, layout.visit_row(visit))
        tally.rows += 1
        for repeat, row in layout.repeat_rows(visit):
            sheets.append(layout, repeat, row)
            tally.repeat_rows += 1
    index.append(["exported_at", iso(now_utc())])
    index.append(["exported_by", actor])
    for name, value in filters.as_dict().items():
        index.append([f"filter_{name}", _xlsx_cell(value)])
    index.append([])
    index.append(["sheet", "form_version", "repeat", "rows"])
    for part in sheets.parts:
        index.append([part.title, part.form_version, part.repeat or "", part.rows])
    yield from _saved(sheets.workbook)


def _saved(workbook: Any) -> Iterator[bytes]:
    """A write-only workbook saved to a temporary file, streamed out and removed."""
    handle, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(handle)
    try:
        workbook.save(path)
        with open(path, "rb") as saved:
            while block := saved.read(CHUNK_BYTES):
                yield block
    finally:
        os.remove(path)


# -- GeoJSON ----------------------------------------------------------------------------------------
def _feature(layout: Layout, visit: Mapping[str, Any]) -> dict[str, Any]:
    geotag = visit.get("geotag") or {}
    day = visit_date(visit)
    properties: dict[str, Any] = {
        "visit_id": visit["id"], "form_id": visit["form_id"], "form_version": visit["form_version"],
        "household_id": visit["household_id"], "village": visit["village"], "officer": visit["officer"],
        "device_id": visit["device_id"], "started_at": visit.get("started_at"), "ended_at": visit.get("ended_at"),
        "received_at": visit.get("received_at"), "visit_date": day.isoformat() if day else None,
        "accuracy_m": geotag.get("accuracy_m"), "review_state": visit.get("review_state"),
        "flagged": bool(visit.get("flagged")), "flag_codes": " ".join(visit.get("flag_codes") or ()),
        "flags": visit.get("flags") or [],
    }
    # Property names are the columns' names in codes, whatever the labels: QGIS makes them column names.
    properties.update(layout.properties(None, visit.get("answers") or {}))
    point = None
    if isinstance(geotag.get("lat"), int | float) and isinstance(geotag.get("lon"), int | float):
        point = {"type": "Point", "coordinates": [geotag["lon"], geotag["lat"]]}
    return {"type": "Feature", "id": visit["id"], "geometry": point, "properties": properties}


def geojson(store: Store, areas: list[str] | None, filters: VisitFilter, tally: Tally,
            media: MediaExport | None = None) -> Iterator[bytes]:
    """A FeatureCollection of visits as Points (WGS 84 lon/lat) for QGIS; a visit without a GPS fix
    is a feature with a null geometry, so it still appears in the attribute table. With ``media``, a
    media answer's property is the file's URL on this server."""
    layouts = Layouts(store, filters.labels)
    parts = ['{"type":"FeatureCollection","name":"kunjung_visits","features":[']
    size, first = len(parts[0]), True
    for visit in matching_visits(store, areas, filters):
        layout = layouts.of(visit)
        if layout is None:
            continue
        if media is not None:
            layout.bind_media(_media_cell(visit, lambda name, e, v=visit["id"]: media.url(v, e["path"])))
        text = ("" if first else ",") + json.dumps(_feature(layout, visit), ensure_ascii=False)
        first = False
        parts.append(text)
        size += len(text)
        tally.rows += 1
        if size >= CHUNK_BYTES:
            yield "".join(parts).encode("utf-8")
            parts, size = [], 0
    parts.append("]}\n")
    yield "".join(parts).encode("utf-8")


# -- household history -------------------------------------------------------------------------------
HISTORY_COLUMNS = ("household_id", "village", "step", "event_id", "type", "officer", "device_id", "at",
                   "received_at", "field", "before", "after", "changed", "in_conflict")


def _history_value(value: Any) -> Any:
    if isinstance(value, list | dict):
        return canonical_json(value)
    return value


def history_rows(store: Store, household: Mapping[str, Any]) -> Iterator[list[Any]]:
    """The history as CSV rows: one per field an event wrote."""
    for entry in household_history(store, household["id"]):
        for change in entry["changes"]:
            yield [household["id"], household["village"], entry["step"], entry["event_id"], entry["type"],
                   entry["officer"], entry["device_id"], entry["at"], entry["received_at"], change["field"],
                   _history_value(change["before"]), _history_value(change["after"]), change["changed"],
                   change["in_conflict"]]


def csv_text(rows: Iterator[list[Any]], headers: tuple[str, ...] | list[str],
             count: Callable[[], None] | None = None) -> Iterator[bytes]:
    """Rows as CSV bytes (UTF-8 with a BOM), in chunks, neutralised."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow([_csv_cell(h) for h in headers])
    for row in rows:
        writer.writerow([_csv_cell(v) for v in row])
        if count:
            count()
        if out.tell() >= CHUNK_BYTES:
            yield out.getvalue().encode("utf-8")
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode("utf-8")


def households_history_csv(store: Store, areas: list[str] | None, tally: Tally) -> Iterator[bytes]:
    """The history of every household in ``areas``, household by household."""
    queries = [{}] if areas is None else [{"village": area_condition(a)} for a in areas]

    def rows() -> Iterator[list[Any]]:
        for where in queries:
            for household in store.iterate("households", where, order_by="village"):
                if in_areas(household["village"], areas):
                    yield from history_rows(store, household)

    def count() -> None:
        tally.rows += 1

    yield from csv_text(rows(), HISTORY_COLUMNS, count)


# -- DTSEN proposals for the village meeting --------------------------------------------------------
# The list a musyawarah desa goes through: every proposal of the village by name and by address,
# what it asks and why, the household's DTSEN decile as the register gave it, and where the
# supervisor's review stands. Headers and choices are in Indonesian by default (the meeting's
# language), in English, or as codes and field names for a machine.
PROPOSAL_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("no", "No.", "No."),
    ("village", "Kode desa", "Village code"),
    ("village_name", "Desa/kelurahan", "Village"),
    ("proposal_type", "Jenis usulan", "Kind of proposal"),
    ("proposal_date", "Tanggal usulan", "Date of the proposal"),
    ("head_name", "Nama kepala keluarga", "Head of the family"),
    ("head_nik", "NIK kepala keluarga", "Head's NIK"),
    ("no_kk", "No. KK", "Family card (No. KK)"),
    ("address", "Alamat", "Address"),
    ("rt", "RT", "RT"),
    ("rw", "RW", "RW"),
    ("member_count", "Jumlah anggota keluarga", "Family members"),
    (DECILE, "Desil DTSEN", "DTSEN decile"),
    ("reason", "Alasan", "Reason"),
    ("details", "Uraian", "Details"),
    ("proposal_source", "Sumber usulan", "Raised by"),
    ("review_state", "Status pemeriksaan", "Review state"),
    ("review_comment", "Catatan pemeriksa", "Reviewer's comment"),
    ("reviewed_by", "Diperiksa oleh", "Reviewed by"),
    ("reviewed_at", "Waktu pemeriksaan", "Reviewed at"),
    ("officer", "Dicatat oleh", "Recorded by"),
    ("lat", "Lintang", "Latitude"),
    ("lon", "Bujur", "Longitude"),
    ("visit_id", "ID kunjungan", "Visit id"),
    ("household_id", "ID keluarga", "Household id"),
)
REVIEW_LABELS = {"pending": ("Belum diperiksa", "Not reviewed yet"), "approved": ("Disetujui", "Approved"),
                 "needs_revision": ("Perlu perbaikan", "Needs revision"), "rejected": ("Ditolak", "Rejected")}
# What each kind of proposal gives as its reason (choices) and its details (text).
_REASONS = {"baru": ("new_conditions", "new_reason"), "perbaikan": ("correction_fields", "correction_details"),
            "sanggahan": ("objection_reason", "objection_explanation")}


@dataclass(frozen=True)
class ProposalFilter:
    """Which proposals the meeting's list holds: ``visits`` filters them as a visit export does
    (area, review state, time, labels); ``kind`` keeps one kind of proposal."""

    visits: VisitFilter
    kind: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {key: value for key, value in self.visits.as_dict().items() if key != "form_id"}
        return {**out, "kind": self.kind} if self.kind else out

    def keep(self, visit: Mapping[str, Any]) -> bool:
        if self.kind and (visit.get("answers") or {}).get("proposal_type") != self.kind:
            return False
        return self.visits.in_time(visit)


def proposal_filter(*, area: str | None = None, review: str | None = None, kind: str | None = None,
                    start: date | datetime | None = None, end: date | datetime | None = None,
                    labels: str = "id") -> ProposalFilter:
    return ProposalFilter(VisitFilter(form_id=PROPOSAL_FORM, area=area, review=review, start=start, end=end,
                                      labels=labels), kind)


class _ProposalRows:
    """Proposals as rows of the meeting's list, with choices and headers in the list's language."""

    def __init__(self, store: Store, labels: str):
        self.store = store
        self.labels = labels
        self.layouts = Layouts(store, labels)
        self.language = 1 if labels == "id" else 2

    def headers(self) -> list[str]:
        return [column[self.language] if self.labels != "codes" else column[0] for column in PROPOSAL_COLUMNS]

    def village_name(self, code: str) -> str | None:
        doc = self.store.get("villages", code)
        return doc.get("name") if doc else None

    def _choices(self, layout: Layout | None, name: str, value: Any) -> Any:
        definition_field = layout.definition.field(name) if layout else None
        if value is None or definition_field is None or self.labels == "codes":
            return " ".join(value) if isinstance(value, list) else value
        list_name = definition_field.get("list")
        names = value if isinstance(value, list) else [value]
        return "; ".join(layout.choice_text.get((list_name, str(code)), str(code)) for code in names)

    def _decile(self, household_id: str) -> Any:
        doc = self.store.get("households", household_id)
        return Record.from_document(doc["record"]).get(DECILE) if doc else None

    def row(self, number: int, visit: Mapping[str, Any], village_name: str | None) -> list[Any]:
        answers = visit.get("answers") or {}
        layout = self.layouts.of(visit)
        kind = answers.get("proposal_type")
        reason_field, details_field = _REASONS.get(kind, (None, None))
        place = answers.get("house_location") or visit.get("geotag") or {}
        review = visit.get("review") or {}
        state = visit.get("review_state") or "pending"
        state_text = state if self.labels == "codes" else REVIEW_LABELS.get(state, (state,) * 2)[self.language - 1]
        return [number, visit["village"], village_name, self._choices(layout, "proposal_type", kind),
                answers.get("proposal_date"), answers.get("head_name"), answers.get("head_nik"), answers.get("no_kk"),
                answers.get("address"), answers.get("rt"), answers.get("rw"), answers.get("member_count"),
                self._decile(visit["household_id"]),
                self._choices(layout, reason_field, answers.get(reason_field)) if reason_field else None,
                answers.get(details_field) if details_field else None,
                self._choices(layout, "proposal_source", answers.get("proposal_source")), state_text,
                review.get("comment"), review.get("by"), review.get("at"), visit["officer"], place.get("lat"),
                place.get("lon"), visit["id"], visit["household_id"]]


def _proposals_by_village(store: Store, areas: list[str] | None,
                          filters: ProposalFilter) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    where = filters.visits.indexed()
    for village in proposal_villages(store, areas, where, filters.keep):
        yield village, village_proposals(store, village, where, filters.keep)


def proposals_csv(store: Store, areas: list[str] | None, filters: ProposalFilter, tally: Tally) -> Iterator[bytes]:
    """The meeting's list as one CSV: village after village, numbered from 1 in each."""
    rows = _ProposalRows(store, filters.visits.labels)

    def table() -> Iterator[list[Any]]:
        for village, proposals in _proposals_by_village(store, areas, filters):
            name = rows.village_name(village)
            for number, visit in enumerate(proposals, start=1):
                yield rows.row(number, visit, name)

    def count() -> None:
        tally.rows += 1

    yield from csv_text(table(), rows.headers(), count)


def proposals_xlsx(store: Store, areas: list[str] | None, filters: ProposalFilter, tally: Tally, *,
                   actor: str) -> Iterator[bytes]:
    """The meeting's list as a workbook: an index sheet, then one sheet per village."""
    rows = _ProposalRows(store, filters.visits.labels)
    workbook = Workbook(write_only=True)
    taken: set[str] = set()
    index = workbook.create_sheet(_sheet_title("usulan", taken))
    villages: list[tuple[str, str, str | None, int]] = []
    for village, proposals in _proposals_by_village(store, areas, filters):
        name = rows.village_name(village)
        title = _sheet_title(f"{village} {name}" if name else village, taken)
        sheet = workbook.create_sheet(title)
        sheet.append([_xlsx_cell(h) for h in rows.headers()])
        for number, visit in enumerate(proposals, start=1):
            sheet.append([_xlsx_cell(v) for v in rows.row(number, visit, name)])
            tally.rows += 1
        villages.append((title, village, name, len(proposals)))
    index.append(["exported_at", iso(now_utc())])
    index.append(["exported_by", actor])
    for key, value in filters.as_dict().items():
        index.append([f"filter_{key}", _xlsx_cell(value)])
    index.append([])
    index.append(["sheet", "village", "village_name", "proposals"])
    for title, village, name, count in villages:
        index.append([title, village, _xlsx_cell(name), count])
    yield from _saved(workbook)


def filename_stamp() -> str:
    """The export's time in a file name, in UTC: the people receiving it live in three time zones."""
    return now_utc().strftime("%Y%m%dT%H%M%SZ")
