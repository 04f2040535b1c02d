"""Files that travel with a form version: which ones a definition needs, what each must hold, CSV lookups."""

# A form version is its definition plus these files: choice lists kept in files
# (select_one_from_file), tables pulldata() and search() read, and the pictures,
# sounds and videos shown beside labels. The definition names them; the server
# stores them; a device downloads them by md5. Everything here is pure.

from __future__ import annotations

import csv
import io
import json
import mimetypes
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

from forms import expressions as ex
from forms.fieldtypes import check_file_name

__all__ = [
    "CHOICE_FILE_SUFFIXES",
    "LABEL_MEDIA_KEYS",
    "MAX_FORM_FILE_BYTES",
    "MAX_LOOKUP_ROWS",
    "CsvLookup",
    "FormFile",
    "check_form_file",
    "choice_columns",
    "form_files",
    "media_type_of",
    "search_source",
]

CHOICE_FILE_SUFFIXES = (".csv", ".xml", ".geojson")
#: The label media a question or a choice may show, by language (XLSForm's columns of these names).
LABEL_MEDIA_KEYS = ("image", "big-image", "audio", "video")
#: One attached file: a province's villages as a CSV is a few MB; a label video can be larger.
MAX_FORM_FILE_BYTES = 50 * 2**20
#: Rows a choice or lookup file may have (every village of Indonesia is about 84,000).
MAX_LOOKUP_ROWS = 200_000

CHOICES = "choices"
LOOKUP = "lookup"
MEDIA = "media"

_MEDIA_FAMILIES = {"image": "image/", "big-image": "image/", "audio": "audio/", "video": "video/"}
_EXTRA_TYPES = {".geojson": "application/geo+json", ".csv": "text/csv", ".xml": "text/xml",
                ".m4a": "audio/mp4", ".amr": "audio/amr", ".3gp": "video/3gpp", ".webp": "image/webp",
                ".opus": "audio/ogg"}


@dataclass(frozen=True)
class FormFile:
    """A file a form version needs: its name, what it is for (choices, lookup, media; first use first)
    and where the definition names it."""

    name: str
    purposes: tuple[str, ...]
    paths: tuple[str, ...]

    @property
    def purpose(self) -> str:
        # A choice file that pulldata() also reads is checked as a choice file, the stricter.
        return CHOICES if CHOICES in self.purposes else self.purposes[0]

    @property
    def media_type(self) -> str:
        return media_type_of(self.name)


def media_type_of(name: str) -> str:
    """The media type a file name's suffix says (application/octet-stream when it says none)."""
    lowered = name.lower()
    for suffix, kind in _EXTRA_TYPES.items():
        if lowered.endswith(suffix):
            return kind
    return mimetypes.guess_type(lowered, strict=False)[0] or "application/octet-stream"


def search_source(appearance: Any) -> str | None:
    """The file `search('desa', ...)` in an appearance names (without '.csv'), or None."""
    if not isinstance(appearance, str) or "search(" not in appearance:
        return None
    start = appearance.index("search(") + len("search(")
    rest = appearance[start:].lstrip()
    if not rest or rest[0] not in "'\"":
        return ""
    end = rest.find(rest[0], 1)
    return rest[1:end] if end > 0 else ""


def _expression_lookups(text: Any) -> frozenset[str]:
    if not isinstance(text, str) or "pulldata" not in text:
        return frozenset()
    try:
        return ex.parse(text).lookups
    except ex.ExpressionError:
        return frozenset()  # reported by the validator


def form_files(definition: Any) -> dict[str, FormFile]:
    """Every file the definition needs, by name, in the order the definition first names them.

    Takes a validated `forms.definition.Definition`: select_one/select_multiple fields with a
    `list_file`, pulldata() in any expression and search() in an appearance (`<name>.csv`), and
    label `media` of fields and choices.
    """
    found: dict[str, tuple[list[str], list[str]]] = {}

    def need(name: str, purpose: str, path: str) -> None:
        purposes, paths = found.setdefault(name, ([], []))
        if purpose not in purposes:
            purposes.append(purpose)
        if path not in paths:
            paths.append(path)

    for ref in definition.iter_fields():
        field = ref.field
        list_file = field.get("list_file")
        if isinstance(list_file, str):
            need(list_file, CHOICES, f"{ref.path}.list_file")
        for key in ("relevant", "constraint", "calculation", "default", "choice_filter"):
            for source in sorted(_expression_lookups(field.get(key))):
                need(f"{source}.csv", LOOKUP, f"{ref.path}.{key}")
        source = search_source(field.get("appearance"))
        if source:
            need(f"{source}.csv", LOOKUP, f"{ref.path}.appearance")
        for name, path in _media_names(field.get("media"), f"{ref.path}.media"):
            need(name, MEDIA, path)
    for list_name, choices in definition.choices.items():
        for index, choice in enumerate(choices):
            for name, path in _media_names(choice.get("media"), f"choices.{list_name}[{index}].media"):
                need(name, MEDIA, path)
    return {name: FormFile(name, tuple(purposes), tuple(paths)) for name, (purposes, paths) in found.items()}


def _media_names(media: Any, prefix: str) -> Iterable[tuple[str, str]]:
    if not isinstance(media, Mapping):
        return
    for kind, texts in media.items():
        if isinstance(texts, Mapping):
            for language, name in texts.items():
                if isinstance(name, str):
                    yield name, f"{prefix}.{kind}.{language}"


def media_problems(media: Any, path: str) -> dict[str, list[str]]:
    """Why a field's or a choice's `media` ({"image": {"id": "rumah.jpg"}, ...}) is wrong, by path."""
    problems: dict[str, list[str]] = {}
    if not isinstance(media, Mapping) or not media:
        return {path: ["must be an object of label media by kind: {\"image\": {\"id\": \"file.jpg\"}}"]}
    for kind, texts in media.items():
        where = f"{path}.{kind}"
        if kind not in LABEL_MEDIA_KEYS:
            problems[where] = [f"label media are {', '.join(LABEL_MEDIA_KEYS)}"]
            continue
        if not isinstance(texts, Mapping) or not texts:
            problems[where] = ["must be an object of file names by language, like {\"id\": \"rumah.jpg\"}"]
            continue
        for language, name in texts.items():
            problem = check_file_name(name)
            if problem is None and not media_type_of(name).startswith(_MEDIA_FAMILIES[kind]):
                family = _MEDIA_FAMILIES[kind][:-1]
                problem = f"{kind} label media must be {family}/* files, not {media_type_of(name)}"
            if problem:
                problems[f"{where}.{language}"] = [problem]
    # ODK shows a big image only when the small one is tapped: without it there is nothing to tap.
    big, small = media.get("big-image"), media.get("image")
    if isinstance(big, Mapping):
        for language in big:
            if not isinstance(small, Mapping) or language not in small:
                problems.setdefault(f"{path}.big-image.{language}", []).append(
                    "a big-image needs an image in the same language, shown first")
    return problems


# ---------------------------------------------------------------------------
# What a file must hold


def choice_columns(name: str) -> tuple[str, str]:
    """The columns a choice file's names and labels are read from by default: a GeoJSON feature's `id`
    and `title` (as pyxform and ODK Collect read them), otherwise `name` and `label`."""
    return ("id", "title") if name.lower().endswith(".geojson") else ("name", "label")


def check_form_file(name: str, content: bytes, purpose: str, *, value_column: str | None = None,
                    label_column: str | None = None) -> list[str]:
    """Why an uploaded file cannot be this form file, or []: its size, and for choices and lookups
    that it reads (UTF-8 CSV with a header, XML items, a GeoJSON FeatureCollection) and has the
    columns a choice list needs."""
    if len(content) > MAX_FORM_FILE_BYTES:
        return [f"is {len(content):,} bytes; a form file is at most {MAX_FORM_FILE_BYTES:,}"]
    if not content:
        return ["is empty"]
    lowered = name.lower()
    if purpose == MEDIA:
        return []
    default_value, default_label = choice_columns(name)
    value_column = value_column or default_value
    label_column = label_column or default_label
    try:
        if lowered.endswith(".csv"):
            columns, rows = _csv_table(content)
        elif lowered.endswith(".xml"):
            columns, rows = _xml_table(content)
        elif lowered.endswith(".geojson"):
            columns, rows = _geojson_table(content)
        else:
            return ["a choice or lookup file is .csv, .xml or .geojson"]
    except ValueError as exc:
        return [str(exc)]
    if purpose == CHOICES:
        missing = [column for column in (value_column, label_column)
                   if column not in columns and not (column == label_column and _has_labels(columns, column))]
        if missing:
            return [f"has no column {', '.join(repr(m) for m in missing)} (it has: {', '.join(sorted(columns))})"]
        if rows == 0:
            return ["has no choices"]
    return []


def _has_labels(columns: set[str], label: str) -> bool:
    # label::Indonesian (id) and the like count as the label column.
    return any(column.startswith(f"{label}::") for column in columns)


def _decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"is not UTF-8 text (byte {exc.start})") from None


def _csv_rows(content: bytes) -> tuple[list[str], Iterable[list[str]]]:
    text = _decode(content)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ValueError("has no header row") from None
    except csv.Error as exc:
        raise ValueError(f"is not a CSV file: {exc}") from None
    header = [column.strip() for column in header]
    if not any(header):
        raise ValueError("has an empty header row")
    return header, reader


def _csv_table(content: bytes) -> tuple[set[str], int]:
    header, reader = _csv_rows(content)
    count = 0
    try:
        for _row in reader:
            count += 1
            if count > MAX_LOOKUP_ROWS:
                raise ValueError(f"has more than {MAX_LOOKUP_ROWS:,} rows")
    except csv.Error as exc:
        raise ValueError(f"is not a CSV file (row {count + 2}): {exc}") from None
    return set(header), count


def _xml_table(content: bytes) -> tuple[set[str], int]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(content, parser)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"is not XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise ValueError("declares a DOCTYPE; a choice file has none")
    items = [child for child in root if isinstance(child.tag, str)]
    if len(items) > MAX_LOOKUP_ROWS:
        raise ValueError(f"has more than {MAX_LOOKUP_ROWS:,} items")
    columns: set[str] = set()
    for item in items:
        columns.update(child.tag for child in item if isinstance(child.tag, str))
    return columns, len(items)


def _geojson_table(content: bytes) -> tuple[set[str], int]:
    try:
        data = json.loads(_decode(content))
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection" or not isinstance(
            data.get("features"), list):
        raise ValueError("is not a GeoJSON FeatureCollection")
    features = data["features"]
    if len(features) > MAX_LOOKUP_ROWS:
        raise ValueError(f"has more than {MAX_LOOKUP_ROWS:,} features")
    columns: set[str] = set()
    for index, feature in enumerate(features):
        if not isinstance(feature, dict) or feature.get("type") != "Feature" or not isinstance(
                feature.get("geometry"), dict):
            raise ValueError(f"feature {index} is not a GeoJSON Feature with a geometry")
        properties = feature.get("properties")
        if isinstance(properties, dict):
            columns.update(properties)
        if "id" in feature:
            columns.add("id")
    return columns, len(features)


# ---------------------------------------------------------------------------
# pulldata()


class CsvLookup:
    """pulldata() over a form's attached CSV files: `lookup(source, column, key column, key)`.

    `files` maps a file name (`desa.csv`) to its bytes, or to a callable giving them, read the
    first time a lookup needs that file. Each (file, key column) is indexed once; the first row
    with the key wins, as on ODK Collect; an unknown file or column or key gives "".
    """

    def __init__(self, files: Mapping[str, bytes | Callable[[], bytes]]) -> None:
        self._files = dict(files)
        self._tables: dict[str, tuple[list[str], list[list[str]]] | None] = {}
        self._indexes: dict[tuple[str, str], dict[str, int]] = {}

    def _table(self, source: str) -> tuple[list[str], list[list[str]]] | None:
        if source not in self._tables:
            content = self._files.get(f"{source}.csv")
            table = None
            if content is not None:
                try:
                    header, reader = _csv_rows(content() if callable(content) else content)
                    table = (header, [row for _, row in zip(range(MAX_LOOKUP_ROWS), reader, strict=False)])
                except (ValueError, csv.Error):
                    table = None
            self._tables[source] = table
        return self._tables[source]

    def __call__(self, source: str, column: str, key_column: str, key: str) -> str:
        table = self._table(source)
        if table is None:
            return ""
        header, rows = table
        if column not in header or key_column not in header:
            return ""
        index = self._indexes.get((source, key_column))
        if index is None:
            at = header.index(key_column)
            index = {}
            for number, row in enumerate(rows):
                if at < len(row):
                    index.setdefault(row[at], number)
            self._indexes[(source, key_column)] = index
        number = index.get(key)
        if number is None:
            return ""
        row = rows[number]
        at = header.index(column)
        return row[at] if at < len(row) else ""
