"""XLSForm import: an .xlsx or .xls workbook becomes a kunjung form definition that remembers sheet!row."""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import PurePath
from typing import Any

import openpyxl
import xlrd
from openpyxl.utils.exceptions import InvalidFileException
from pyxform.xls2json_backends import xls_value_to_unicode, xlsx_value_to_str
from xlrd.compdoc import CompDocError
from xlrd.xldate import XLDateError

from forms.definition import DefinitionError, limit_errors, validate_definition
from forms.fieldtypes import FIELD_TYPES, FieldType, field_type, xlsform_names

__all__ = [
    "FILE_KEY",
    "XLSFormError",
    "XLSFormImport",
    "import_xlsform",
    "translate_errors",
    "xlsform_to_definition",
    "xlsform_to_definition_with_rows",
]

LANGUAGES = ("id", "en")
DEFAULT_LANGUAGE = "id"
DEFAULT_VERSION = "1"

# Keys of a workbook-level problem (no sheet row to point at).
FILE_KEY = "file"

_XLSX_MAGIC = b"PK\x03\x04"
_XLS_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# pyxform stops after 60 blank rows; kunjung allows a wider gap before it gives up on a sheet.
_MAX_BLANK_ROWS = 1000

# Bounds on what a workbook may make kunjung read; real XLSForms are far below each. They are
# checked before inflating (sizes, ratios) and while reading (rows, cells), so a hostile file
# is refused early, fast and with a short answer.
MAX_FILE_BYTES = 20 * 2**20
MAX_PARTS = 1_000
MAX_INFLATED_BYTES = 100 * 2**20
MAX_RATIO = 100
RATIO_FLOOR = 2**20
MAX_ROWS = 20_000
MAX_COLUMNS = 500
MAX_CELLS = 1_000_000
_XML_PARTS = (".xml", ".rels", ".vml")
_PROLOGUE_BYTES = 64 * 1024
_RE_ROOT = re.compile(r"<[A-Za-z_]")
_RE_DTD = re.compile(r"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)

# --- question types ---------------------------------------------------------------------------------
# Keys are lower-cased with single spaces. The names of kunjung's own types and pyxform's aliases for
# them come from the field-type registry (forms/fieldtypes.py), so real-world files import; the
# registry is read before the refusals below, so a type added there stops being refused.

# Metadata a phone records by itself. A kunjung visit already carries start/end times, the device,
# the officer and a geotag in its envelope, and the rest (SIM, subscriber, phone number, e-mail) is
# personal data kunjung does not collect, so these rows are skipped (with a warning for the latter).
_ENVELOPE_METADATA = {
    "start", "end", "today", "deviceid", "device id", "imei", "username", "uri:username", "uri:deviceid",
    "start time", "end time", "get start time", "get end time", "get today", "get device id",
    "start-geopoint", "audit",
}
_UNCOLLECTED_METADATA = {
    "phonenumber", "get phone number", "uri:phonenumber", "simserial", "sim id", "get sim id",
    "uri:simserial", "subscriberid", "subscriber id", "get subscriber id", "uri:subscriberid", "email",
    "uri:email",
}

_REFUSED_TYPE_REASONS = {
    "background recordings are not collected by kunjung (personal data nobody agreed to give); "
    "use an audio question": ("background-audio",),
    "OpenStreetMap questions are not supported; use geopoint and text": ("osm",),
    "barcode scanning is not supported": ("barcode", "add barcode prompt", "q barcode"),
    "a signature is an image question with the appearance 'signature'": ("signature",),
    "only single points (geopoint) are supported": ("geotrace", "geoshape", "q geotrace", "q geoshape",
                                                    "background-geopoint"),
    "range widgets are not supported; use integer or decimal with a constraint": ("range",),
    "rank questions are not supported": ("rank",),
    "acknowledge questions are not supported; use a note or a select_one": (
        "acknowledge", "trigger", "add acknowledge prompt", "q acknowledge",
    ),
    "time-only questions are not supported; use dateTime": ("time",),
    "hidden questions are not supported; use calculate": ("hidden",),
    "external instances need instance() in expressions, which kunjung does not evaluate; use pulldata() "
    "or select_one_from_file with an attached file": ("xml-external", "csv-external"),
}
_REFUSED_TYPES = {alias: why for why, aliases in _REFUSED_TYPE_REASONS.items() for alias in aliases}

_SELECT_COMMANDS = {
    command: ftype.name for ftype in FIELD_TYPES.values() for command in ftype.xlsform_list_commands
}
_FILE_SELECTS = {
    "select_one_from_file": "select_one", "select one from file": "select_one",
    "select_multiple_from_file": "select_multiple", "select multiple from file": "select_multiple",
}
_REFUSED_SELECTS = {"select_one_external", "select one external", "select_multiple_external",
                    "select multiple external"}
_RE_SELECT = re.compile(
    r"^(?P<command>" + "|".join(sorted((re.escape(c) for c in _SELECT_COMMANDS), key=len, reverse=True))
    + r") (?P<list>\S+)(?: (?P<other>or specify other|or_other|or other))?$",
    re.IGNORECASE,
)
_RE_FILE_SELECT = re.compile(
    r"^(?P<command>" + "|".join(sorted((re.escape(c) for c in _FILE_SELECTS), key=len, reverse=True))
    + r")(?: (?P<file>\S+))?(?P<rest> .*)?$",
    re.IGNORECASE,
)
_RE_EXTERNAL_SELECT = re.compile(
    r"^(?:" + "|".join(sorted((re.escape(c) for c in _REFUSED_SELECTS), key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)
_RE_BEGIN = re.compile(
    r"^begin[ _](?P<kind>group|repeat|looped group|lgroup|loop)(?: (?:over )?(?P<arg>\S+))?$"
)
_RE_END = re.compile(r"^end[ _](?P<kind>group|repeat|looped group|lgroup|loop)$")
_CONTAINER_KIND = {"group": "group", "repeat": "repeat", "looped group": "repeat", "lgroup": "repeat"}

_OTHER_CHOICE = {"name": "other", "label": {"id": "Lainnya", "en": "Other"}}
_OTHER_FIELD_LABEL = {"id": "Sebutkan lainnya", "en": "Specify other"}

# --- columns -----------------------------------------------------------------------------------------
_SURVEY_COLUMNS = {
    "type": "type", "command": "type",
    "name": "name", "value": "name", "tag": "name",
    "label": "label", "caption": "label",
    "hint": "hint",
    "required": "required",
    "relevant": "relevant", "relevance": "relevant",
    "constraint": "constraint",
    "constraint_message": "constraint_message", "constraint message": "constraint_message",
    "jr:constraintmsg": "constraint_message", "constraining_message": "constraint_message",
    "calculation": "calculation", "calculate": "calculation",
    "default": "default",
    "choice_filter": "choice_filter", "choice filter": "choice_filter",
    "appearance": "appearance",
    "save_to": "save_to",
    "parameters": "parameters",
    # pyxform writes `body::accept` onto the upload control; the prefix is dropped when reading headers.
    "accept": "accept",
    "image": "image", "big-image": "big-image", "audio": "audio", "video": "video",
}
_CHOICE_COLUMNS = {
    "list_name": "list_name", "list name": "list_name",
    "name": "name", "value": "name",
    "label": "label", "caption": "label",
    "image": "image", "big-image": "big-image", "audio": "audio", "video": "video",
}
_SETTINGS_COLUMNS = {
    "form_id": "form_id", "id_string": "form_id", "set_form_id": "form_id",
    "version": "version",
    "form_title": "title", "title": "title", "set_form_title": "title",
    "default_language": "default_language",
}
_LABEL_MEDIA = ("image", "big-image", "audio", "video")
_TRANSLATABLE = {"label", "hint", "constraint_message", "title", *_LABEL_MEDIA}
# Columns with a meaning kunjung cannot honour yet: importing goes on, with a warning, so the admin knows.
_UNSUPPORTED_COLUMNS = {
    "readonly", "read_only", "repeat_count", "jr:count", "count", "required_message", "jr:requiredmsg",
    "guidance_hint", "trigger", "autoplay", "rows",
    "noapperrorstring", "no_app_error_string", "media", "instance", "body",
}
# On the choices sheet any other column is kept for choice_filter; only media columns are dropped.
_MEDIA_COLUMNS = {"media"}
_COLON_BASES = ("jr:constraintmsg", "jr:requiredmsg", "jr:count", "jr:noapperrorstring")
_PREFIXES = ("bind::", "bind:", "control::", "control:", "body::", "body:")

_LANGUAGE_NAMES = {
    "english": "en", "inggris": "en", "bahasa inggris": "en",
    "indonesian": "id", "indonesia": "id", "bahasa indonesia": "id", "bahasa": "id",
}
_RE_LANGUAGE_CODE = re.compile(r"\(\s*([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]+)*\s*\)\s*$")
_RE_BARE_CODE = re.compile(r"^([a-z]{2,3})(?:[-_][a-z0-9]+)*$")

# Extra choice columns are kept for choice_filter, which can only name identifier-like columns.
_RE_CHOICE_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

_RE_PARAMETER_SEPARATOR = re.compile(r"[\s,;]+")

_TRUE = {"yes", "true", "true()", "1", "ya"}
_FALSE = {"no", "false", "false()", "0", "tidak"}


class XLSFormError(ValueError):
    """An XLSForm that cannot become a definition; `errors` maps "sheet!row" to messages (the first few hundred)."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors = limit_errors(errors)
        first = next(iter(errors.items()), ("", []))
        summary = f"{first[0]}: {'; '.join(first[1])}"
        more = len(errors) - 1
        super().__init__(f"invalid XLSForm: {summary} (and {more} more)" if more > 0 else f"invalid XLSForm: {summary}")


@dataclass(frozen=True)
class XLSFormImport:
    """A converted form: the (not yet validated) definition, where each part came from, and warnings."""

    definition: dict[str, Any]
    rows: dict[str, str]
    warnings: dict[str, list[str]] = field(default_factory=dict)

    def translate_errors(self, errors: dict[str, list[str]]) -> dict[str, list[str]]:
        """Re-key validator errors (JSON paths) by the sheet!row they came from."""
        return translate_errors(errors, self.rows)


def xlsform_to_definition(data: bytes, filename: str) -> dict[str, Any]:
    """Convert an XLSForm to a definition dict (not validated); raise XLSFormError keyed by sheet!row."""
    return xlsform_to_definition_with_rows(data, filename).definition


def xlsform_to_definition_with_rows(data: bytes, filename: str) -> XLSFormImport:
    """Convert an XLSForm and keep a map from every JSON path of the definition to its "sheet!row"."""
    sheets = _read_workbook(data, filename)
    return _Converter(sheets, filename).convert()


def import_xlsform(data: bytes, filename: str) -> XLSFormImport:
    """Convert and validate an XLSForm; every error and warning, the validator's too, is keyed by sheet!row."""
    result = xlsform_to_definition_with_rows(data, filename)
    try:
        validated = validate_definition(result.definition)
    except DefinitionError as exc:
        raise XLSFormError(result.translate_errors(exc.errors)) from exc
    warnings = {where: list(messages) for where, messages in result.warnings.items()}
    for where, messages in result.translate_errors(validated.warnings).items():
        warnings.setdefault(where, []).extend(messages)
    return XLSFormImport(result.definition, result.rows, warnings)


def translate_errors(errors: dict[str, list[str]], rows: dict[str, str]) -> dict[str, list[str]]:
    """Map each JSON-path key to the sheet!row of its longest known prefix; the rest of the path
    (e.g. `constraint`) is kept in front of the message so the user knows which cell to look at."""
    known = {_path_tokens(path): where for path, where in rows.items()}
    out: dict[str, list[str]] = {}
    for path, messages in errors.items():
        tokens = _path_tokens(path)
        where, rest = path, ()
        for cut in range(len(tokens), 0, -1):
            if tokens[:cut] in known:
                where, rest = known[tokens[:cut]], tokens[cut:]
                break
        column = ".".join(str(t) for t in rest if not isinstance(t, int))
        out.setdefault(where, []).extend(f"{column}: {m}" if column else m for m in messages)
    return out


_RE_PATH_TOKEN = re.compile(r"""\.?([^.\[\]]+)|\[(\d+)\]|\[['"]?([^'"\]]*)['"]?\]""")


def _path_tokens(path: str) -> tuple[str | int, ...]:
    tokens: list[str | int] = []
    for name, index, key in _RE_PATH_TOKEN.findall(path):
        if index:
            tokens.append(int(index))
        else:
            tokens.append(name or key)
    return tuple(tokens)


def _field_path(indexes: list[int]) -> str:
    return ".".join(f"fields[{i}]" for i in indexes)


# --- reading the workbook ----------------------------------------------------------------------------


@dataclass
class _Sheet:
    """One worksheet as strings: the header row and numbered data rows (spreadsheet numbering)."""

    name: str
    headers: list[str | None]
    rows: list[tuple[int, list[str | None]]]

    def where(self, row: int) -> str:
        return f"{self.name}!{row}"


def _read_workbook(data: bytes, filename: str) -> dict[str, _Sheet]:
    """Read every sheet with openpyxl (.xlsx) or xlrd (.xls); the file's bytes decide, not its name."""
    if len(data) > MAX_FILE_BYTES:
        raise XLSFormError({FILE_KEY: [f"the file is {len(data):,} bytes; an XLSForm is at most "
                                       f"{MAX_FILE_BYTES:,} bytes"]})
    if data.startswith(_XLSX_MAGIC):
        return _read_xlsx(data)
    if data.startswith(_XLS_MAGIC):
        return _read_xls(data)
    raise XLSFormError({FILE_KEY: [f"{filename or 'the file'} is not an Excel workbook (.xlsx or .xls)"]})


def _refuse(message: str) -> XLSFormError:
    return XLSFormError({FILE_KEY: [message]})


def _check_package(archive: zipfile.ZipFile) -> None:
    """Refuses, before anything is inflated, a package that would unpack too large or that declares a DTD.

    A zip entry's declared size bounds what zipfile inflates from it (and a wrong one fails its
    CRC), so the sizes and ratios checked here bound the work openpyxl can be made to do.
    """
    parts = archive.infolist()
    if len(parts) > MAX_PARTS:
        raise _refuse(f"the workbook has {len(parts):,} parts; an XLSForm has far fewer (at most {MAX_PARTS:,})")
    inflated = sum(part.file_size for part in parts)
    if inflated > MAX_INFLATED_BYTES:
        raise _refuse(f"the workbook unpacks to {inflated:,} bytes; kunjung reads at most "
                      f"{MAX_INFLATED_BYTES:,} (an XLSForm is far smaller)")
    for part in parts:
        if part.file_size > RATIO_FLOOR and part.file_size > MAX_RATIO * max(part.compress_size, 1):
            raise _refuse(f"part {part.filename[:80]!r} inflates {part.file_size // max(part.compress_size, 1):,} "
                          f"times (to {part.file_size:,} bytes); kunjung refuses more than {MAX_RATIO} times "
                          "above 1 MB, as a zip bomb would")
    for part in parts:
        if part.filename.lower().endswith(_XML_PARTS) and _declares_dtd(archive, part):
            raise _refuse(f"part {part.filename[:80]!r} declares a DOCTYPE; a workbook's XML has none, and "
                          "kunjung does not read DTDs (entities can expand without bound)")


def _declares_dtd(archive: zipfile.ZipFile, part: zipfile.ZipInfo) -> bool:
    """Whether the XML's prologue (what comes before the root element) holds a DOCTYPE or an ENTITY."""
    with archive.open(part) as stream:
        prologue = stream.read(_PROLOGUE_BYTES)
    if prologue.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = prologue.decode("utf-16", errors="ignore")
    else:
        text = prologue.decode("latin-1")
    root = _RE_ROOT.search(text)
    if root is None:
        # No root element in the first bytes: a prologue that long is itself a sign of a DTD.
        return len(prologue) >= _PROLOGUE_BYTES or bool(_RE_DTD.search(text))
    return bool(_RE_DTD.search(text[:root.start()]))


class _Budget:
    """What one workbook may still hold: rows per sheet and cells in all; reading stops at the first excess."""

    def __init__(self) -> None:
        self.cells = MAX_CELLS

    def spend(self, sheet: str, row: int, cells: int) -> None:
        self.cells -= cells
        if self.cells < 0:
            raise XLSFormError({f"{sheet}!{row}": [f"the workbook has more than {MAX_CELLS:,} filled cells; "
                                                   "an XLSForm has far fewer"]})


_READ_ERRORS = (zipfile.BadZipFile, zlib.error, InvalidFileException, SyntaxError, KeyError, OSError, EOFError,
                ValueError, TypeError, AttributeError, IndexError)


def _read_xlsx(data: bytes) -> dict[str, _Sheet]:
    try:
        with zipfile.ZipFile(BytesIO(data)) as archive:
            _check_package(archive)
        book = openpyxl.load_workbook(BytesIO(data), read_only=True, data_only=True)
        try:
            sheets = {}
            budget = _Budget()
            for ws in book.worksheets:
                # A sheet's declared dimension (up to XFD1048576) would pad every row to its width.
                ws.reset_dimensions()
                rows = ws.iter_rows(values_only=True)
                sheets[ws.title] = _sheet(ws.title, (
                    [None if v is None else _clean(xlsx_value_to_str(v)) for v in row[:MAX_COLUMNS + 1]]
                    for row in rows
                ), budget)
            return sheets
        finally:
            book.close()
    except XLSFormError:
        raise
    except _READ_ERRORS as exc:
        # lxml's XMLSyntaxError and ElementTree's ParseError are SyntaxErrors.
        raise _refuse(f"cannot read the .xlsx workbook: {str(exc)[:300]}") from exc


def _read_xls(data: bytes) -> dict[str, _Sheet]:
    try:
        # on_demand: one sheet in memory at a time. A .xls is not compressed, so its size
        # (bounded above) bounds what xlrd holds.
        book = xlrd.open_workbook(file_contents=data, on_demand=True)
        try:
            sheets = {}
            budget = _Budget()
            for index in range(book.nsheets):
                ws = book.sheet_by_index(index)
                width = min(ws.ncols, MAX_COLUMNS + 1)
                sheets[ws.name] = _sheet(ws.name, (
                    [_xls_cell(book, cell) for cell in ws.row_slice(r, 0, width)] for r in range(ws.nrows)
                ), budget)
                book.unload_sheet(index)
            return sheets
        finally:
            book.release_resources()
    except XLSFormError:
        raise
    except (xlrd.XLRDError, CompDocError, struct.error, ValueError, IndexError, KeyError, AssertionError,
            TypeError, EOFError) as exc:
        raise _refuse(f"cannot read the .xls workbook: {str(exc)[:300]}") from exc


def _xls_cell(book: xlrd.book.Book, cell: xlrd.sheet.Cell) -> str | None:
    if cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK, xlrd.XL_CELL_ERROR):
        return None
    try:
        return _clean(xls_value_to_unicode(cell.value, cell.ctype, book.datemode))
    except XLDateError:
        return _clean(str(cell.value))


def _clean(value: str) -> str | None:
    value = value.strip()
    return value or None


def _sheet(name: str, rows: Iterator[list[str | None]], budget: _Budget) -> _Sheet:
    header_row = next(rows, [])
    headers = [re.sub(r"\s+", " ", h) if h else None for h in header_row]
    while headers and headers[-1] is None:
        headers.pop()
    if len(headers) > MAX_COLUMNS:
        raise XLSFormError({f"{name}!1": [f"the sheet has more than {MAX_COLUMNS} columns; an XLSForm has far fewer"]})
    budget.spend(name, 1, sum(h is not None for h in headers))
    data = []
    blank_run = 0
    for number, row in enumerate(rows, start=2):
        # Cells right of the last header carry nothing (pyxform ignores them too).
        row = row[:len(headers)]
        filled = sum(v is not None for v in row)
        if filled:
            if len(data) >= MAX_ROWS:
                raise XLSFormError({f"{name}!{number}": [
                    f"the sheet has more than {MAX_ROWS:,} rows; an XLSForm has far fewer"]})
            budget.spend(name, number, filled)
            data.append((number, row))
            blank_run = 0
        else:
            # A sheet formatted down to row 1,048,576 is empty long before; stop reading it.
            blank_run += 1
            if blank_run > _MAX_BLANK_ROWS:
                break
    return _Sheet(name, headers, data)


# --- converting -------------------------------------------------------------------------------------


@dataclass
class _Column:
    """A parsed header: `label::English (en)` is (label, en); unknown columns keep their header."""

    index: int
    header: str
    key: str | None  # the kunjung key, or None when the column is not used
    language: str | None = None


@dataclass
class _Open:
    """A begin group/repeat waiting for its end."""

    kind: str
    row: int
    field: dict[str, Any]
    indexes: list[int]


class _Converter:
    def __init__(self, sheets: dict[str, _Sheet], filename: str):
        self.filename = filename
        self.types = xlsform_names()
        self.errors: dict[str, list[str]] = {}
        self.warnings: dict[str, list[str]] = {}
        self.rows: dict[str, str] = {}
        lowered = {name.strip().lower(): sheet for name, sheet in sheets.items()}
        self.survey = lowered.get("survey")
        if self.survey is None and len(sheets) == 1:
            # pyxform reads a lone sheet of any name as the survey; so do we.
            self.survey = next(iter(sheets.values()))
        self.choices_sheet = lowered.get("choices")
        self.settings_sheet = lowered.get("settings")
        for sheet in lowered.values():
            if sheet not in (self.survey, self.choices_sheet, self.settings_sheet) and sheet.rows:
                self._warn(f"{sheet.name}", f"sheet '{sheet.name}' is not used by kunjung; ignored")

    def _error(self, where: str, message: str) -> None:
        self.errors.setdefault(where, []).append(message)

    def _warn(self, where: str, message: str) -> None:
        self.warnings.setdefault(where, []).append(message)

    def convert(self) -> XLSFormImport:
        if self.survey is None:
            raise XLSFormError({"survey": ["the workbook has no 'survey' sheet"]})
        settings = self._settings()
        choices = self._choices(settings["default_language"])
        fields = self._survey(settings["default_language"], choices)
        if self.errors:
            raise XLSFormError(self.errors)
        definition = {"settings": settings, "fields": fields, "choices": choices}
        return XLSFormImport(definition, self.rows, self.warnings)

    # columns ---------------------------------------------------------------------------------------

    def _columns(self, sheet: _Sheet, known: dict[str, str]) -> list[_Column]:
        columns = []
        seen: dict[tuple[str, str | None], str] = {}
        for index, header in enumerate(sheet.headers):
            if header is None:
                continue
            base, language = _split_header(header)
            key = known.get(base)
            if key is None:
                unsupported = _MEDIA_COLUMNS if sheet is self.choices_sheet else _UNSUPPORTED_COLUMNS
                if sheet is self.settings_sheet:
                    pass  # each unused setting is named once, on its row (see _settings)
                elif base in unsupported or base.startswith(("media", "instance", "body")):
                    self._warn(sheet.where(1), f"column '{header}' is not supported by kunjung; ignored")
                elif sheet is not self.choices_sheet or not _RE_CHOICE_COLUMN.match(header):
                    self._warn(sheet.where(1),
                               f"column '{header}' is not an XLSForm column kunjung uses; ignored")
                columns.append(_Column(index, header, None))
                continue
            if language is not None and key not in _TRANSLATABLE:
                self._error(sheet.where(1), f"column '{header}': '{base}' cannot have a language")
                continue
            if key in _TRANSLATABLE and language is not None:
                language = _language_code(language)
                if language == "default":
                    language = None  # pyxform's name for the plain column
                elif language not in LANGUAGES:
                    self._warn(sheet.where(1), f"column '{header}': only Indonesian (id) and English (en) "
                                               "are kept; ignored")
                    continue
            if (key, language) in seen:
                self._error(sheet.where(1),
                            f"columns '{seen[key, language]}' and '{header}' say the same thing")
                continue
            seen[key, language] = header
            columns.append(_Column(index, header, key, language))
        return columns

    @staticmethod
    def _values(columns: list[_Column], row: list[str | None], default_language: str) -> dict[str, Any]:
        """One row as {key: value}, translatable keys as {language: text}; unused columns as `extra`."""
        out: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for column in columns:
            value = row[column.index] if column.index < len(row) else None
            if value is None:
                continue
            if column.key is None:
                extra[column.header] = value
            elif column.key in _TRANSLATABLE:
                language = column.language or default_language
                texts = out.setdefault(column.key, {})
                # An explicit ::id column wins over a plain one for the default language.
                if column.language is not None or language not in texts:
                    texts[language] = value
            else:
                out[column.key] = value
        if extra:
            out["extra"] = extra
        return out

    # settings --------------------------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        sheet = self.settings_sheet
        values: dict[str, Any] = {}
        where = "settings"
        if sheet is not None and sheet.rows:
            number, row = sheet.rows[0]
            where = sheet.where(number)
            columns = self._columns(sheet, _SETTINGS_COLUMNS)
            explicit = next((c for c in columns if c.key == "default_language"), None)
            raw_default = row[explicit.index] if explicit and explicit.index < len(row) else None
            default_language = self._default_language(raw_default, where)
            values = self._values(columns, row, default_language)
            for header in values.pop("extra", {}):
                self._warn(where, f"setting '{header}' is not used by kunjung; ignored")
        else:
            default_language = self._default_language(None, where)
        form_id = values.get("form_id") or _form_id_from_filename(self.filename)
        if not values.get("form_id"):
            self._warn(where, f"no form_id in the settings sheet; using '{form_id}' from the file name")
        version = values.get("version")
        if not version:
            version = DEFAULT_VERSION
            self._warn(where, f"no version in the settings sheet; using '{version}'")
        title = self._indonesian(values.get("title") or {default_language: form_id}, where, "form_title")
        self.rows["settings"] = where
        return {"form_id": form_id, "version": version, "title": title, "default_language": default_language}

    def _default_language(self, raw: str | None, where: str) -> str:
        if raw:
            code = _language_code(raw)
            if code not in LANGUAGES:
                self._error(where, f"default_language '{raw}' is not supported; "
                                   "use Indonesian (id) or English (en)")
                return DEFAULT_LANGUAGE
            return code
        # A form written only in English (label::English (en), no plain label) has English as its
        # default language; otherwise plain labels are taken to be Indonesian.
        languages = set()
        for sheet in (self.survey, self.choices_sheet):
            for header in (sheet.headers if sheet else []):
                if header is None:
                    continue
                base, language = _split_header(header)
                if base in ("label", "caption"):
                    code = _language_code(language) if language else None
                    languages.add(None if code == "default" else code)
        if "en" in languages and "id" not in languages and None not in languages:
            return "en"
        return DEFAULT_LANGUAGE

    # choices ---------------------------------------------------------------------------------------

    def _choices(self, default_language: str) -> dict[str, list[dict]]:
        choices: dict[str, list[dict]] = {}
        sheet = self.choices_sheet
        if sheet is None:
            return choices
        columns = self._columns(sheet, _CHOICE_COLUMNS)
        names: dict[tuple[str, str], int] = {}
        for number, row in sheet.rows:
            where = sheet.where(number)
            values = self._values(columns, row, default_language)
            list_name, name = values.get("list_name"), values.get("name")
            if not list_name or not name:
                if set(values) - {"extra"}:
                    missing = "list_name" if not list_name else "name"
                    self._error(where, f"choice has no {missing}")
                continue
            if (list_name, name) in names:
                self._error(where, f"duplicate choice name '{name}' in list '{list_name}' "
                                   f"(first at {sheet.where(names[list_name, name])}); choice names must be "
                                   "unique in a list, so allow_choice_duplicates is not supported")
                continue
            names[list_name, name] = number
            choice: dict[str, Any] = {"name": name}
            label = values.get("label")
            if not label:
                # pyxform accepts image-only choices; kunjung shows text, so the code stands in for it.
                label = {"id": name}
                if not any(key in values for key in _LABEL_MEDIA):
                    self._warn(where, f"choice '{name}' in list '{list_name}' has no label; using its name")
            choice["label"] = self._indonesian(label, where, "label")
            media = {key: values[key] for key in _LABEL_MEDIA if key in values}
            if media:
                choice["media"] = media
            for header, value in values.get("extra", {}).items():
                base = _split_header(header)[0]
                if _RE_CHOICE_COLUMN.match(header) and base not in _MEDIA_COLUMNS and not base.startswith("media"):
                    choice[header] = value
            entries = choices.setdefault(list_name, [])
            self.rows[f"choices.{list_name}[{len(entries)}]"] = where
            self.rows.setdefault(f"choices.{list_name}", where)
            entries.append(choice)
        return choices

    # survey ----------------------------------------------------------------------------------------

    def _survey(self, default_language: str, choices: dict[str, list[dict]]) -> list[dict]:
        sheet = self.survey
        assert sheet is not None
        columns = self._columns(sheet, _SURVEY_COLUMNS)
        if not any(c.key == "type" for c in columns):
            self._error(sheet.where(1), "the survey sheet has no 'type' column")
            return []
        top: list[dict] = []
        stack: list[_Open] = []
        names: dict[str, int] = {}

        def container() -> tuple[list[dict], list[int]]:
            if stack:
                return stack[-1].field["fields"], stack[-1].indexes
            return top, []

        def add(new: dict, number: int) -> list[int]:
            fields, parent = container()
            indexes = [*parent, len(fields)]
            fields.append(new)
            self.rows[_field_path(indexes)] = sheet.where(number)
            name = new.get("name")
            if name is not None:
                if name in names:
                    self._error(sheet.where(number), f"duplicate name '{name}' "
                                                     f"(first used at {sheet.where(names[name])})")
                else:
                    names[name] = number
            return indexes

        for number, row in sheet.rows:
            where = sheet.where(number)
            values = self._values(columns, row, default_language)
            values.pop("extra", None)
            raw_type = values.pop("type", None)
            if raw_type is None:
                if set(values) & {"name", "label"}:
                    self._error(where, "row has a name or label but no type")
                continue
            type_ = re.sub(r"\s+", " ", raw_type).strip()
            lowered = type_.lower()

            end = _RE_END.match(lowered)
            if end:
                kind = end.group("kind")
                if kind == "loop":
                    continue  # the matching 'begin loop' was already refused
                kind = _CONTAINER_KIND[kind]
                if not stack:
                    self._error(where, f"'{type_}' without a matching 'begin {kind}'")
                    continue
                opened = stack.pop()
                if opened.kind != kind:
                    self._error(where, f"'{type_}' closes 'begin {opened.kind}' "
                                       f"'{opened.field.get('name')}' opened at {sheet.where(opened.row)}")
                continue

            begin = _RE_BEGIN.match(lowered)
            if begin:
                kind = begin.group("kind")
                if kind == "loop":
                    self._error(where, f"type '{type_}' is not supported: loops over a choice list are not "
                                       "supported; use a repeat")
                    continue
                kind = _CONTAINER_KIND[kind]
                new = self._base_field(kind, values, where)
                if new is None:
                    # Still opened, so that its 'end' matches and only the real problem is reported.
                    stack.append(_Open(kind, number, {"name": None, "fields": []}, []))
                    continue
                new["fields"] = []
                indexes = add(new, number)
                stack.append(_Open(kind, number, new, indexes))
                continue

            for new in self._question(type_, values, where, choices):
                add(new, number)

        for opened in stack:
            self._error(sheet.where(opened.row), f"'begin {opened.kind}' '{opened.field.get('name')}' "
                                                 f"has no 'end {opened.kind}'")
        return top

    def _base_field(self, type_: str, values: dict[str, Any], where: str,
                    *, generated_name: str | None = None) -> dict[str, Any] | None:
        name = values.get("name") or generated_name
        if not name:
            self._error(where, f"'{type_}' row has no name")
            return None
        new: dict[str, Any] = {"type": type_, "name": name}
        for key in ("label", "hint"):
            if key in values:
                new[key] = self._indonesian(values[key], where, key)
        if "required" in values:
            required = values["required"].strip().lower()
            if required in _TRUE:
                new["required"] = True
            elif required not in _FALSE:
                self._error(where, f"required '{values['required']}' must be yes or no "
                                   "(conditional required is not supported)")
        for key in ("relevant", "constraint", "constraint_message", "calculation", "default",
                    "choice_filter", "appearance", "save_to"):
            if key in values:
                new[key] = values[key]
        if "parameters" in values and type_ in FIELD_TYPES:
            parameters = self._parameters(field_type(type_), values["parameters"], where)
            if parameters:
                new["parameters"] = parameters
        media = {key: values[key] for key in _LABEL_MEDIA if key in values}
        if media:
            new["media"] = media
        if "accept" in values:
            new["accept"] = [token for token in re.split(r"[\s,]+", values["accept"]) if token]
        if "constraint_message" in new:
            new["constraint_message"] = self._indonesian(new["constraint_message"], where, "constraint_message")
        return new

    def _parameters(self, ftype: FieldType, text: str, where: str) -> dict[str, Any]:
        """The `parameters` cell (`key=value` pairs, as pyxform reads them) as the type's parameters."""
        parameters: dict[str, Any] = {}
        for pair in _RE_PARAMETER_SEPARATOR.split(text.strip()):
            key, equals, raw = pair.partition("=")
            key = key.strip().lower()
            if not equals or not key or not raw.strip():
                self._error(where, f"parameters: {pair!r} is not key=value (parameters are written "
                                   "'key=value key2=value2')")
                continue
            parameter = ftype.parameters.get(key)
            if parameter is None:
                self._warn(where, f"parameter '{key}' is not used by kunjung for type {ftype.name}; ignored")
                continue
            try:
                parameters[key] = parameter.read(raw.strip())
            except ValueError:
                self._error(where, f"parameters: {key}={raw.strip()!r} {parameter.problem(raw)}")
        return parameters

    def _indonesian(self, texts: dict[str, str], where: str, what: str) -> dict[str, str]:
        """Kunjung needs Indonesian text; a form written in English only shows its English text instead."""
        if "id" in texts:
            return texts
        fallback = texts.get("en") or next(iter(texts.values()))
        self._warn(where, f"{what} has no Indonesian (id) text; the English text is used for it")
        return {"id": fallback, **texts}

    def _question(self, type_: str, values: dict[str, Any], where: str,
                  choices: dict[str, list[dict]]) -> list[dict[str, Any]]:
        """The fields a question row becomes: none (skipped or refused), one, or two for `or_other`."""
        lowered = type_.lower()
        if lowered in _ENVELOPE_METADATA:
            return []
        if lowered in _UNCOLLECTED_METADATA:
            self._warn(where, f"metadata type '{type_}' is not collected by kunjung; row skipped")
            return []
        if lowered in self.types:
            ftype, constraint = self.types[lowered]
            # pyxform names unnamed notes the same way; a note holds no answer, so its name is never seen.
            generated = f"generated_note_name_{where.rsplit('!', 1)[1]}" if ftype.name == "note" else None
            new = self._base_field(ftype.name, values, where, generated_name=generated)
            if new is not None and constraint is not None:
                own = new.get("constraint")
                new["constraint"] = f"({own}) and {constraint}" if own else constraint
            return [new] if new is not None else []
        # `rank fruit`, `xml-external data`: refused whatever follows the command.
        command = lowered if lowered in _REFUSED_TYPES else lowered.split(" ", 1)[0]
        if command in _REFUSED_TYPES:
            self._error(where, f"type '{type_}' is not supported: {_REFUSED_TYPES[command]}")
            return []
        if _RE_EXTERNAL_SELECT.match(lowered):
            self._error(where, f"type '{type_}' is not supported: external selects need ODK's external app "
                               "and an itemsets.csv; use select_one_from_file with an attached CSV")
            return []
        from_file = _RE_FILE_SELECT.match(type_)
        if from_file:
            return self._file_select(from_file, type_, values, where)
        select = _RE_SELECT.match(type_)
        if select:
            return self._select(select, type_, values, where, choices)
        if lowered in _SELECT_COMMANDS:
            self._error(where, f"type '{type_}' needs the name of its choice list, like '{type_} yes_no'")
            return []
        self._error(where, f"type '{type_}' is not supported: unknown question type")
        return []

    def _file_select(self, match: re.Match, type_: str, values: dict[str, Any], where: str) -> list[dict[str, Any]]:
        kind = _FILE_SELECTS[match.group("command").lower()]
        name = match.group("file")
        if not name:
            self._error(where, f"type '{type_}' needs the name of its file, like '{type_} villages.csv'")
            return []
        if match.group("rest"):
            self._error(where, f"type '{type_}': only one file name follows '{match.group('command')}' "
                               "(or_other is not supported with a choice file)")
            return []
        if not name.lower().endswith((".csv", ".xml", ".geojson")):
            self._error(where, f"type '{type_}': the choice file must be .csv, .xml or .geojson, not {name!r}")
            return []
        new = self._base_field(kind, values, where)
        if new is None:
            return []
        new["list_file"] = name
        return [new]

    def _select(self, match: re.Match, type_: str, values: dict[str, Any], where: str,
                choices: dict[str, list[dict]]) -> list[dict[str, Any]]:
        kind = _SELECT_COMMANDS[match.group("command").lower()]
        list_name = match.group("list")
        new = self._base_field(kind, values, where)
        if new is None:
            return []
        if list_name not in choices:
            self._error(where, f"'{new['name']}' uses choice list '{list_name}', "
                               "which is not on the choices sheet")
            return []
        new["list"] = list_name
        if not match.group("other"):
            return [new]
        # or_other, as pyxform does it: an 'other' choice and a text question shown when it is chosen.
        if "choice_filter" in values:
            self._error(where, f"type '{type_}': 'or_other' cannot be combined with a choice_filter")
            return []
        if not any(c["name"] == _OTHER_CHOICE["name"] for c in choices[list_name]):
            choices[list_name].append({"name": _OTHER_CHOICE["name"], "label": dict(_OTHER_CHOICE["label"])})
            self.rows[f"choices.{list_name}[{len(choices[list_name]) - 1}]"] = where
        other = {
            "type": "text",
            "name": f"{new['name']}_other",
            "label": dict(_OTHER_FIELD_LABEL),
            "relevant": f"selected(${{{new['name']}}}, 'other')",
        }
        return [new, other]


def _split_header(header: str) -> tuple[str, str | None]:
    """'bind::jr:constraintMsg::English (en)' → ('jr:constraintmsg', 'English (en)')."""
    text = header.strip()
    lowered = text.lower()
    for prefix in _PREFIXES:
        if lowered.startswith(prefix):
            text, lowered = text[len(prefix):], lowered[len(prefix):]
            break
    for base in _COLON_BASES:
        if lowered == base:
            return base, None
        if lowered.startswith(base + ":"):
            return base, text[len(base):].lstrip(":").strip() or None
    if "::" in text:
        base, language = text.split("::", 1)
        return base.strip().lower(), language.strip() or None
    if ":" in text:
        # Old XLSForms write one colon: label:English (en).
        base, language = text.split(":", 1)
        if base.strip().lower() in {"label", "hint", "caption", "constraint_message", "form_title",
                                    "image", "audio", "video", "big-image", "guidance_hint",
                                    "required_message", "media"}:
            return base.strip().lower(), language.strip() or None
    return lowered, None


def _language_code(spec: str) -> str:
    """'Indonesian (id)' → 'id', 'english' → 'en', 'id-ID' → 'id'; anything else lower-cased."""
    match = _RE_LANGUAGE_CODE.search(spec)
    if match:
        return match.group(1).lower()
    lowered = spec.strip().lower()
    if lowered in _LANGUAGE_NAMES:
        return _LANGUAGE_NAMES[lowered]
    bare = _RE_BARE_CODE.match(lowered)
    return bare.group(1) if bare else lowered


def _form_id_from_filename(filename: str) -> str:
    stem = PurePath(filename or "").stem
    slug = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")
    if not slug:
        return "form"
    if not slug[0].isalpha():
        slug = f"form_{slug}"
    return slug[:64]
