"""Loading a household register (CSV or XLSX) as households officers verify, as server-stamped import events."""

# A register row becomes one household whose id is derived from its village code and No. KK,
# so importing again, and a device that derives the id itself, land on the same household.
# Each household the import changes gets one ``import`` event (a server-made event,
# server/server_events.py) and is written with ``write_household``, so it reaches devices on
# their next pull, appears in the household's history and is folded again by ``rebuild-households``.
#
# A row is loaded only for a village the server knows (imported with ``kunjung import-villages``):
# a household in an unknown village would show in households and coverage under a code nobody
# can check. A row whose point lies far outside its village's boundary is loaded with a warning.
#
# Re-importing compares each value with what the *import* wrote last time (kept on the
# household document under ``imported``), never with the current value: a value an officer
# corrected since is theirs, and an unchanged register must not overwrite it. When the
# register does change a value, the write names the previous import's stamp as its base: if
# no officer touched the field it simply replaces the old import, and if one did, both writes
# stay as heads and the supervisor sees a conflict instead of one silently winning.
#
# A DTSEN extract also gives each household's welfare decile (``desil``, 1-10). It is BPS's
# ranking, stored as the read-only household field ``desil`` (forms/household.py): devices
# pull it and supervisors see it, but only a later import changes it.

from __future__ import annotations

import codecs
import csv
import io
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from forms.household import DECILE, DECILE_MAX, DECILE_MIN, REGISTER_FIELDS
from forms.identifiers import check_kk, check_nik, check_village_code
from sync import EventError, Record
from sync.stamps import make_stamp
from sync.values import same_json

from .audit import record_audit
from .geo import BoundaryIndex
from .households import write_household
from .i18n import _, translate_known
from .server_events import ServerStamper
from .storage import Store, Writer
from .villages import VILLAGES

# Fixed for ever: household ids derived from it are shared with every device and every re-import.
NAMESPACE = uuid.UUID("6f1c8f0e-3b7a-5d2e-9a41-6b756e6a756e")
CHUNK = 250
MAX_TEXT = 500
REQUIRED = ("no_kk", "head_name", "village_code")
UNREADABLE = "_unreadable"  # the key of a row the csv module could not read
# Household fields the import writes; the names are the save_to targets of the shipped forms
# (forms/library/NOTES.md), so a verification visit overwrites exactly what the register gave.
FIELDS = ("no_kk", "head_nik", "head_name", "address", "rt", "rw", "house_location", DECILE)

# Column names as registers spell them, after _normalise (lower case, punctuation as spaces).
ALIASES: dict[str, tuple[str, ...]] = {
    "no_kk": ("no kk", "nomor kk", "nokk", "no kartu keluarga", "nomor kartu keluarga", "kk", "family card"),
    "head_nik": ("head nik", "nik", "nik kepala keluarga", "nik kepala", "nik kk"),
    "head_name": ("head name", "nama", "nama kepala keluarga", "nama kepala", "nama kk", "kepala keluarga"),
    "address": ("address", "alamat"),
    "rt": ("rt",),
    "rw": ("rw",),
    "village_code": ("village code", "kode desa", "kode desa kelurahan", "kode kelurahan", "kode wilayah",
                     "kode wilayah desa"),
    "lat": ("lat", "latitude", "lintang"),
    "lon": ("lon", "lng", "long", "longitude", "bujur"),
    DECILE: ("decile", "desil dtsen", "desil kesejahteraan", "peringkat desil", "welfare decile"),
}
_SEPARATORS = re.compile(r"[\s_.\-/]+")
_NUMBER_PART = re.compile(r"(?:rt|rw)?\s*0*([0-9]{1,3})")
# "3", "03" or "Desil 3", as registers and OpenSID's lists write a decile.
_DECILE = re.compile(r"(?:desil)?\s*0*([0-9]{1,2})")
# A rough box around Indonesia: a point outside it has its latitude and longitude swapped,
# or a sign lost, far more often than it lies abroad.
LAT_RANGE, LON_RANGE = (-11.5, 6.5), (94.5, 141.5)
# A house this far outside its village's boundary is more likely mistyped or in another village
# than on the edge of this one (boundaries are drawn roughly; a fix is good to tens of metres).
FAR_OUTSIDE_M = 5000.0


def household_id(village_code: str, no_kk: str) -> str:
    """The household's id: the same for every import and every device that knows the village and No. KK."""
    return str(uuid.uuid5(NAMESPACE, f"{village_code}/{no_kk}"))


def _normalise(header: Any) -> str:
    return _SEPARATORS.sub(" ", str(header or "").strip().lower()).strip()


class RegisterError(ValueError):
    """The file as a whole cannot be read: unknown type, unreadable, or required columns missing."""

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


@dataclass
class Columns:
    """Which column of the register gives which household field."""

    positions: dict[str, int]
    ignored: list[str]


def map_columns(headers: list[Any], village_field: str | None = None) -> Columns:
    """Header names (any case, spaces or underscores, Indonesian or English) to fields; a
    register without a required column is refused whole, naming what it lacks."""
    lookup = {alias: name for name, aliases in ALIASES.items() for alias in (_normalise(name), *aliases)}
    if village_field:
        lookup = {k: v for k, v in lookup.items() if v != "village_code"}
        lookup[_normalise(village_field)] = "village_code"
    positions: dict[str, int] = {}
    ignored: list[str] = []
    errors: dict[str, list[str]] = {}
    for index, header in enumerate(headers):
        key = _normalise(header)
        name = lookup.get(key)
        if name is None:
            if key:
                ignored.append(str(header))
            continue
        if name in positions:
            errors.setdefault("columns", []).append(
                _("columns %(first)r and %(second)r both give %(field)s", first=str(headers[positions[name]]),
                  second=str(header), field=name))
            continue
        positions[name] = index
    missing = [name for name in REQUIRED if name not in positions]
    if missing:
        hints = {"no_kk": "No. KK / nomor kk", "head_name": "nama kepala keluarga / nama",
                 "village_code": "kode desa / village_code" + (f" ({village_field})" if village_field else "")}
        errors.setdefault("columns", []).extend(_("missing column %(field)s (%(hint)s)", field=name, hint=hints[name])
                                                for name in missing)
    if errors:
        raise RegisterError(_("The register lacks columns the import needs."), errors)
    return Columns(positions, ignored)


# -- reading files ----------------------------------------------------------------------------------
@dataclass
class Register:
    """A register being read: its columns, its rows as ``(row number, {field: raw value})`` and,
    when cheap to know, how many rows it has (for progress)."""

    columns: Columns
    rows: Iterator[tuple[int, dict[str, Any]]]
    total: int | None = None
    name: str = "register"


def _records(table: Iterable[tuple[int, list[Any]]], village_field: str | None, name: str,
             total: int | None) -> Register:
    table = iter(table)
    header = next(((n, cells) for n, cells in table if any(str(c or "").strip() for c in cells)), None)
    if header is None:
        raise RegisterError(_("The register is empty."), {"file": [_("no header row")]})
    number, headers = header
    columns = map_columns(list(headers), village_field)

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        for row_number, cells in table:
            if isinstance(cells, _Unreadable):
                yield row_number, {UNREADABLE: cells.message}
                continue
            if not any(str(c if c is not None else "").strip() for c in cells):
                continue  # a blank line is not a household
            yield row_number, {name: cells[i] if i < len(cells) else None
                               for name, i in columns.positions.items()}

    return Register(columns, rows(), None if total is None else max(total - number, 0), name)


def _csv_encoding(sample: bytes) -> str:
    """UTF-8 (with or without BOM) if the bytes decode as it, else Windows-1252, as Excel saves."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(sample, final=False)
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8-sig"


def _delimiter(first_line: str) -> str:
    # Excel in an Indonesian locale saves CSV with semicolons (the comma is the decimal mark).
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


@dataclass(frozen=True)
class _Unreadable:
    """A CSV record the csv module refused (a NUL byte, a field past its size limit)."""

    message: str


def _csv_table(text: io.TextIOBase) -> Iterator[tuple[int, Any]]:
    first = text.readline()
    delimiter = _delimiter(first)
    reader = csv.reader(_chain_line(first, text), delimiter=delimiter)
    # Row numbers as a spreadsheet shows them: records, counting the header as row 1.
    number = 0
    while True:
        number += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # One broken line from a legacy export should cost that row, not the whole register.
            yield number, _Unreadable(str(exc))
            continue
        yield number, cells


def _chain_line(first: str, rest: io.TextIOBase) -> Iterator[str]:
    yield first
    yield from rest


def read_csv_file(path: str | Path, village_field: str | None = None) -> Register:
    """A CSV register on disk, read as it is imported (memory does not grow with the file)."""
    with open(path, "rb") as handle:
        encoding = "utf-8-sig"
        lines = 0
        decoder = codecs.getincrementaldecoder("utf-8")()
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
            if encoding == "utf-8-sig":
                try:
                    decoder.decode(block, final=False)
                except UnicodeDecodeError:
                    encoding = "cp1252"
        if encoding == "utf-8-sig":
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                encoding = "cp1252"
    # cp1252 leaves five bytes undefined; a register is still worth reading around them.
    text = open(path, encoding=encoding, errors="replace" if encoding == "cp1252" else "strict",  # noqa: SIM115
                newline="")

    def table() -> Iterator[tuple[int, list[Any]]]:
        with text:
            yield from _csv_table(text)

    return _records(table(), village_field, Path(path).name, lines)


def read_csv_bytes(content: bytes, name: str, village_field: str | None = None) -> Register:
    encoding = _csv_encoding(content)
    text = io.StringIO(content.decode(encoding, errors="replace"), newline="")
    return _records(_csv_table(text), village_field, name, content.count(b"\n"))


def _xlsx_table(source: Any) -> tuple[Iterator[tuple[int, list[Any]]], int | None]:
    try:
        workbook = load_workbook(source, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a damaged file
        raise RegisterError(_("The file is not a readable XLSX workbook."), {"file": [str(exc)[:200]]}) from None
    sheet = workbook.worksheets[0]

    def table() -> Iterator[tuple[int, list[Any]]]:
        try:
            for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
                yield number, list(row)
        finally:
            workbook.close()

    return table(), sheet.max_row


def read_xlsx(source: Any, name: str, village_field: str | None = None) -> Register:
    """The first sheet of an XLSX register (a path or a file object), read row by row."""
    table, total = _xlsx_table(source)
    return _records(table, village_field, name, total)


def read_register(path: str | Path, village_field: str | None = None) -> Register:
    """A register file on disk, by its extension: ``.csv`` or ``.xlsx``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return read_csv_file(path, village_field)
    if suffix == ".xlsx":
        return read_xlsx(str(path), Path(path).name, village_field)
    raise RegisterError(_("Give a .csv or .xlsx register."),
                        {"file": [_("%(path)s: unknown file type", path=Path(path).name)]})


def read_upload(content: bytes, filename: str, village_field: str | None = None) -> Register:
    suffix = Path(filename).suffix.lower()
    if suffix == ".csv":
        return read_csv_bytes(content, filename, village_field)
    if suffix == ".xlsx":
        return read_xlsx(io.BytesIO(content), filename, village_field)
    raise RegisterError(_("Give a .csv or .xlsx register."),
                        {"file": [_("%(path)s: unknown file type", path=filename)]})


def read_rows(rows: list[Mapping[str, Any]], village_field: str | None = None, name: str = "json") -> Register:
    """Rows sent as JSON objects (keys named like register columns); row numbers count from 1."""
    headers: list[str] = []
    for row in rows:
        headers.extend(key for key in row if key not in headers)
    table = [(0, headers)] + [(n, [row.get(h) for h in headers]) for n, row in enumerate(rows, start=1)]
    return _records(table, village_field, name, len(rows) + 1)


# -- checking a row ---------------------------------------------------------------------------------
def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _identifier(value: Any) -> str | None:
    text = _text(value)
    # Spreadsheet users type a leading apostrophe to keep 16 digits from becoming a number.
    return None if text is None else re.sub(r"\s+", "", text).lstrip("'")


def _number_part(value: Any, what: str, reasons: list[str]) -> str | None:
    text = _text(value)
    if text is None:
        return None
    match = _NUMBER_PART.fullmatch(text.lower())
    if not match or int(match.group(1)) == 0:
        reasons.append(_("%(field)s must be a number from 1 to 999, not %(value)r", field=what, value=text[:20]))
        return None
    return f"{int(match.group(1)):03d}"


def _decile(value: Any, reasons: list[str]) -> int | None:
    text = _text(value)
    if text is None:
        return None
    match = _DECILE.fullmatch(text.lower())
    if match is None or REGISTER_FIELDS[DECILE].problems(int(match.group(1))):
        reasons.append(_("desil must be a whole number from %(low)s to %(high)s, not %(value)r", low=DECILE_MIN,
                         high=DECILE_MAX, value=text[:20]))
        return None
    return int(match.group(1))


def _coordinate(value: Any, what: str, reasons: list[str]) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value).strip().replace(",", "."))
    except ValueError:
        reasons.append(_("%(field)s must be a decimal number, not %(value)r", field=what, value=str(value)[:20]))
        return None


@dataclass
class Row:
    number: int
    village: str | None
    values: dict[str, Any]
    reasons: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def no_kk(self) -> str | None:
        return self.values.get("no_kk")


def check_row(number: int, raw: Mapping[str, Any]) -> Row:
    """A register row as household values, with every reason it cannot be loaded, in the reader's language."""
    reasons: list[str] = []
    values: dict[str, Any] = {}
    if UNREADABLE in raw:
        return Row(number, None, values, [_("the line cannot be read as CSV: %(problem)s", problem=raw[UNREADABLE])])
    refused: set[str] = set()  # the rules below ask which fields were refused, never what a sentence said

    def refuse(field_name: str, said: Iterable[str]) -> None:
        said = list(said)
        if said:
            refused.add(field_name)
            reasons.extend(said)

    village = _identifier(raw.get("village_code"))
    if village is None:
        refuse("village_code", [_("village_code is empty")])
    else:
        refuse("village_code", map(translate_known, check_village_code(village)))
    no_kk = _identifier(raw.get("no_kk"))
    if no_kk is None:
        refuse("no_kk", [_("no_kk is empty")])
    else:
        refuse("no_kk", map(translate_known, check_kk(no_kk)))
        values["no_kk"] = no_kk
    head_nik = _identifier(raw.get("head_nik"))
    if head_nik is not None:
        refuse("head_nik", map(translate_known, check_nik(head_nik)))
        values["head_nik"] = head_nik
    for name in ("head_name", "address"):
        text = _text(raw.get(name))
        if text is not None and len(text) > MAX_TEXT:
            refuse(name, [_("%(field)s is longer than %(limit)s characters", field=name, limit=MAX_TEXT)])
        elif text is not None:
            values[name] = re.sub(r"\s+", " ", text)
    if "head_name" not in values and "head_name" not in refused:
        refuse("head_name", [_("head_name is empty")])
    for name in ("rt", "rw"):
        found = []
        part = _number_part(raw.get(name), name, found)
        refuse(name, found)
        if part is not None:
            values[name] = part
    found: list[str] = []
    decile = _decile(raw.get(DECILE), found)
    refuse(DECILE, found)
    if decile is not None:
        values[DECILE] = decile
    coordinates: dict[str, float | None] = {}
    for name in ("lat", "lon"):
        found = []
        coordinates[name] = _coordinate(raw.get(name), name, found)
        refuse(name, found)
    lat, lon = coordinates["lat"], coordinates["lon"]
    if (lat is None) != (lon is None) and not refused & {"lat", "lon"}:
        reasons.append(_("lat and lon go together: give both or neither"))
    elif lat is not None and lon is not None:
        if not (LAT_RANGE[0] <= lat <= LAT_RANGE[1] and LON_RANGE[0] <= lon <= LON_RANGE[1]):
            reasons.append(_("lat %(lat)s, lon %(lon)s lies outside Indonesia (are they swapped?)", lat=lat, lon=lon))
        else:
            values["house_location"] = {"lat": lat, "lon": lon}
    return Row(number, village, values, reasons)


# -- importing ----------------------------------------------------------------------------------------
@dataclass
class ImportReport:
    source: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    conflicts: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {"rows": self.rows, "created": self.created, "updated": self.updated, "unchanged": self.unchanged,
                "rejected": self.rejected, "conflicts": self.conflicts}

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, **self.counts, "problems": self.problems, "warnings": self.warnings,
                "ignored_columns": self.ignored_columns}

    def summary_lines(self) -> list[str]:
        """What the CLI prints, in the reader's language (the reasons are in it already)."""
        lines = [_("row %(row)s: %(reasons)s", row=p["row"], reasons="; ".join(p["reasons"])) for p in self.problems]
        lines.extend(_("row %(row)s: warning: %(warnings)s", row=w["row"], warnings="; ".join(w["warnings"]))
                     for w in self.warnings)
        if self.ignored_columns:
            lines.append(_("ignored columns: %(columns)s", columns=", ".join(self.ignored_columns)))
        counts = dict(self.counts)
        lines.append(_("%(rows)s rows: %(created)s created, %(updated)s updated, %(unchanged)s unchanged, "
                       "%(rejected)s rejected", **counts) if not self.conflicts else
                     _("%(rows)s rows: %(created)s created, %(updated)s updated, %(unchanged)s unchanged, "
                       "%(rejected)s rejected, %(conflicts)s now in conflict", **counts))
        return lines


@dataclass
class _Outcome:
    row: Row
    status: str  # created | updated | unchanged | rejected
    conflicts: list[str] = field(default_factory=list)
    reason: str | None = None


def import_households(store: Store, register: Register, *, actor: str,
                      progress: Callable[[int, int | None], None] | None = None,
                      address: str | None = None) -> ImportReport:
    """Load every good row of ``register``; bad rows are reported with their row number and why.

    Rows are written a chunk at a time, each chunk in one unit of work; ``progress(done, total)``
    is called after each chunk (``total`` is None when unknown)."""
    report = ImportReport(register.name, ignored_columns=register.columns.ignored)
    first_row: dict[str, int] = {}
    places = _Places(store)
    done = 0
    chunk: list[Row] = []

    def flush() -> None:
        nonlocal done
        for outcome in _store_chunk(store, chunk, actor, register.name):
            _count(report, outcome)
        done += len(chunk)
        chunk.clear()
        if progress:
            progress(done, register.total)

    for number, raw in register.rows:
        row = check_row(number, raw)
        report.rows += 1
        if not row.reasons:
            places.check(row)
        if row.no_kk and not row.reasons:
            earlier = first_row.get(row.no_kk)
            if earlier is not None:
                row.reasons.append(_("No. KK %(no_kk)s is also on row %(row)s", no_kk=row.no_kk, row=earlier))
            else:
                first_row[row.no_kk] = number
        if row.reasons:
            _count(report, _Outcome(row, "rejected"))
            continue
        chunk.append(row)
        if len(chunk) >= CHUNK:
            flush()
    if chunk or progress:
        flush()
    # a chunk's refusals come after later rows' checks
    report.problems.sort(key=lambda problem: problem["row"])
    report.warnings.sort(key=lambda warning: warning["row"])
    with store.transaction() as tx:
        record_audit(tx, "households_imported", actor=actor, target=register.name,
                     details=report.counts, address=address)
    return report


def _count(report: ImportReport, outcome: _Outcome) -> None:
    if outcome.status == "rejected":
        report.rejected += 1
        report.problems.append({"row": outcome.row.number, "no_kk": outcome.row.no_kk,
                                "reasons": outcome.row.reasons or [outcome.reason]})
        return
    setattr(report, outcome.status, getattr(report, outcome.status) + 1)
    if outcome.row.warnings:
        report.warnings.append({"row": outcome.row.number, "no_kk": outcome.row.no_kk,
                                "warnings": outcome.row.warnings})
    if outcome.conflicts:
        report.conflicts += 1


class _Places:
    """Which villages the server knows, and where their boundaries lie, looked up once per village."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.known: dict[str, bool] = {}
        self.boundaries = BoundaryIndex(store, VILLAGES)

    def check(self, row: Row) -> None:
        """Refuse a row of a village never imported; warn about a house far outside its village."""
        village = row.village or ""
        if village not in self.known:
            self.known[village] = self.store.get(VILLAGES, village) is not None
        if not self.known[village]:
            row.reasons.append(_("village %(village)s is not known to the server: import it first "
                                 "(kunjung import-villages, or POST /api/v1/villages)", village=village))
            return
        point = row.values.get("house_location")
        if point is None:
            return
        found = self.boundaries.locate(village, point["lat"], point["lon"])
        if found and found["code"] == "outside_village" and found["distance_m"] > FAR_OUTSIDE_M:
            distance, limit = f"{found['distance_m'] / 1000:.1f}", f"{FAR_OUTSIDE_M / 1000:g}"
            row.warnings.append(_("lat %(lat)s, lon %(lon)s lies %(distance)s km outside the boundary of village "
                                  "%(village)s (more than %(limit)s km): check the coordinates and the village code",
                                  lat=point["lat"], lon=point["lon"], distance=distance, village=village, limit=limit))


def _store_chunk(store: Store, rows: list[Row], actor: str, source: str) -> list[_Outcome]:
    if not rows:
        return []

    def unit(tx: Writer) -> list[_Outcome]:
        stamper = ServerStamper(tx, store)
        outcomes = [_store_row(tx, stamper, row, actor, source) for row in rows]
        stamper.save()
        return outcomes

    return store.unit_of_work(unit)


def _store_row(tx: Writer, stamper: ServerStamper, row: Row, actor: str, source: str) -> _Outcome:
    hid = household_id(row.village, row.no_kk)
    doc = tx.get("households", hid)
    record = Record.from_document(doc["record"]) if doc else Record(hid)
    if record.created is not None and record.village != row.village:
        return _Outcome(row, "rejected", reason=_("household %(household)s belongs to village %(village)s",
                                                  household=hid, village=record.village))
    imported = (doc or {}).get("imported") or {}
    last_values: dict[str, Any] = imported.get("values") or {}
    last_stamps: dict[str, str] = imported.get("stamps") or {}
    # A register row of an erased household (or person) brings back none of what was erased.
    writes = {name: value for name, value in row.values.items()
              if (name not in last_values or not same_json(last_values[name], value)) and not record.covers(name)}
    if not writes:
        return _Outcome(row, "unchanged")
    made = stamper.event("import", event_id=str(uuid.uuid4()), actor=actor, record_id=hid, village=row.village,
                         writes=writes, base={name: [last_stamps[name]] for name in writes if name in last_stamps},
                         body={"source": source, "row": row.number, "values": writes})
    try:
        record.apply_event(made.engine)
    except EventError as error:
        return _Outcome(row, "rejected", reason=translate_known(error.message))
    tx.insert("events", made.document)
    stamp = make_stamp(made.hlc, stamper.device_id, made.id)
    previous = dict(doc or {})
    previous["imported"] = {"values": {**last_values, **writes},
                            "stamps": {**last_stamps, **dict.fromkeys(writes, stamp)},
                            "event_id": made.id, "at": made.engine["at"], "source": source}
    previous.setdefault("source", "import")
    write_household(tx, record, previous, doc["seq"] if doc else None)
    in_conflict = [name for name in writes if record.fields[name].in_conflict]
    return _Outcome(row, "updated" if doc else "created", in_conflict)
