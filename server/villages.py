"""Villages: their collection, import of boundaries from GeoJSON, and the lookups the API and sync use."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, current_app

from forms.identifiers import Area
from sync import canonical_json

from .audit import record_audit
from .geo import BoundaryIndex, boundary_hash, check_boundary
from .i18n import gettext
from .security.scope import Scope
from .storage import In, Store
from .store import get_store

# The collection (declared in server/store.py): one document per village, id = Kemendagri code.
VILLAGES = "villages"

# Optional feature properties naming the areas above the village, as the API shows them.
AREA_NAME_PROPERTIES = {"district": "district", "regency": "regency_name", "province": "province_name"}
MAX_NAME_LENGTH = 200
# Features are checked and written this many at a time: one unit of work each, one progress step.
CHUNK = 250

# GeoJSON's own CRS (RFC 7946) and the names tools write for it; anything else is projected
# or has another datum and would land villages in the wrong place.
WGS84_NAMES = frozenset({
    "urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:OGC::CRS84", "CRS84",
    "EPSG:4326", "urn:ogc:def:crs:EPSG::4326", "urn:ogc:def:crs:EPSG:4326",
})

_BOUNDARY_INDEX = "kunjung.boundaries"


class GeoJsonError(ValueError):
    """The whole document is unusable (not GeoJSON, wrong CRS); ``field`` names where."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class FeatureReport:
    """What happened to one feature: ``status`` is imported, updated, unchanged or refused."""

    index: int
    code: str | None = None
    status: str = "refused"
    reasons: list[str] = field(default_factory=list)  # why it was refused
    repairs: list[str] = field(default_factory=list)  # what was mended in its geometry
    warnings: list[str] = field(default_factory=list)

    @property
    def repaired(self) -> bool:
        """Stored with a mended geometry (a refused feature is not counted, whatever was mended)."""
        return bool(self.repairs) and self.status != "refused"

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "code": self.code, "status": self.status, "repaired": self.repaired,
                "reasons": self.reasons, "repairs": self.repairs, "warnings": self.warnings}

    def label(self) -> str:
        if self.code:
            return gettext("feature %(index)s (%(code)s)", index=self.index, code=self.code)
        return gettext("feature %(index)s", index=self.index)


@dataclass
class ImportReport:
    results: list[FeatureReport] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "imported": self.count("imported"),
            "updated": self.count("updated"),
            "unchanged": self.count("unchanged"),
            "repaired": sum(1 for r in self.results if r.repaired),
            "refused": self.count("refused"),
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.counts, "results": [r.as_dict() for r in self.results]}

    def summary_lines(self) -> list[str]:
        """The report for people, in the reader's language: counts, then every refusal, repair and warning by
        feature index."""
        lines = [gettext("%(features)s features: %(imported)s imported, %(updated)s updated, %(unchanged)s "
                         "unchanged, %(refused)s refused; %(repaired)s repaired", features=len(self.results),
                         **self.counts)]
        for title, chosen, attribute in (
                (gettext("refused:"), [r for r in self.results if r.status == "refused"], "reasons"),
                (gettext("repaired:"), [r for r in self.results if r.repaired], "repairs"),
                (gettext("warnings:"), [r for r in self.results if r.warnings], "warnings")):
            if chosen:
                lines.append(title)
                lines.extend(f"  {r.label()}: {'; '.join(getattr(r, attribute))}" for r in chosen)
        return lines


# -- reading GeoJSON ----------------------------------------------------------------------

def features_of(document: Any) -> list[Any]:
    """The features of a FeatureCollection, or a lone Feature as a list of one."""
    if not isinstance(document, dict) or document.get("type") not in ("FeatureCollection", "Feature"):
        raise GeoJsonError("type", gettext("expected a GeoJSON FeatureCollection or Feature"))
    crs = document.get("crs")
    if crs is not None:
        properties = crs.get("properties") if isinstance(crs, dict) else None
        name = properties.get("name") if isinstance(properties, dict) else None
        if name not in WGS84_NAMES:
            raise GeoJsonError("crs", gettext("coordinates are in %(system)s; export the file as WGS 84 "
                                              "longitude/latitude (EPSG:4326)",
                                              system=name or gettext("an unknown system")))
    if document["type"] == "Feature":
        return [document]
    features = document.get("features")
    if not isinstance(features, list):
        raise GeoJsonError("features", gettext("a FeatureCollection needs a list of features"))
    return features


def read_geojson_file(path: str | Path) -> list[Any]:
    """The features in a GeoJSON file (UTF-8, a byte-order mark tolerated)."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            document = json.load(handle)
    except UnicodeDecodeError as exc:
        raise GeoJsonError("file", gettext("%(path)s is not UTF-8 text (byte %(byte)s)", path=path,
                                           byte=exc.start)) from None
    except json.JSONDecodeError as exc:
        raise GeoJsonError("file", gettext("%(path)s is not JSON: %(problem)s at line %(line)s column %(column)s",
                                           path=path, problem=exc.msg, line=exc.lineno,
                                           column=exc.colno)) from None
    except OSError as exc:
        raise GeoJsonError("file", gettext("cannot read %(path)s: %(problem)s", path=path,
                                           problem=exc.strerror)) from None
    return features_of(document)


def village_from_feature(feature: Any, report: FeatureReport, code_field: str = "code",
                         name_field: str = "name") -> dict[str, Any] | None:
    """The village document a feature describes, or None with the reasons in ``report``."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        report.reasons.append(gettext("is not a GeoJSON Feature"))
        return None
    properties = feature.get("properties") or {}
    if not isinstance(properties, dict):
        report.reasons.append(gettext("properties must be an object"))
        return None
    code = _text(properties.get(code_field))
    if code is None:
        report.reasons.append(gettext("no village code in property %(property)r", property=code_field))
    else:
        report.code = code
        if not Area.is_code(code, levels=("village",)):
            report.reasons.append(gettext("%(property)s: village code must look like 32.04.05.2001 "
                                          "(province.regency.kecamatan.village)", property=code_field))
    name = _text(properties.get(name_field))
    if name is None:
        report.reasons.append(gettext("no village name in property %(property)r", property=name_field))
    elif len(name) > MAX_NAME_LENGTH or not name.isprintable():
        report.reasons.append(gettext("%(property)s: must be printable text of at most %(limit)s characters",
                                      property=name_field, limit=MAX_NAME_LENGTH))
    area_names = {}
    for prop, key in AREA_NAME_PROPERTIES.items():
        value = properties.get(prop)
        area_names[key] = _text(value)
        if value is not None and area_names[key] is None:
            report.warnings.append(gettext("ignored property %(property)r: not a name", property=prop))
    if feature.get("geometry") is None:
        checked = None
        report.warnings.append(gettext("no geometry: stored without a boundary"))
    else:
        checked = check_boundary(feature["geometry"])
        report.reasons.extend(gettext("geometry: %(problem)s", problem=m) for m in checked.errors)
        report.repairs.extend(checked.repairs)
        report.warnings.extend(checked.warnings)
    if report.reasons:
        return None
    boundary = checked.geojson if checked else None
    return {
        "id": code,
        "code": code,
        "name": name,
        **area_names,
        "kecamatan": code[:8],
        "regency": code[:5],
        "province": code[:2],
        "has_boundary": boundary is not None,
        "boundary": boundary,
        "bbox": checked.bbox if checked else None,
        "boundary_hash": boundary_hash(boundary),
    }


def _text(value: Any) -> str | None:
    """Stripped text, or None for anything else or for blank text."""
    if not isinstance(value, str):
        return None
    return value.strip() or None


# -- importing ----------------------------------------------------------------------------

def import_villages(store: Store, features: list[Any], *, code_field: str = "code", name_field: str = "name",
                    progress: Callable[[int, int], None] | None = None, actor: str | None = None,
                    address: str | None = None) -> ImportReport:
    """Check every feature and store the good ones, whatever the bad ones hold.

    A village is *imported* when new, *updated* when its document differs from the stored one
    and *unchanged* when equal, so importing the same file again changes nothing. A code given
    by two features is refused the second time. ``progress(done, total)`` is called after each
    chunk of :data:`CHUNK` features. With an ``actor`` the import is written to the audit log.
    """
    report = ImportReport()
    first_index: dict[str, int] = {}
    total = len(features)
    for start in range(0, total, CHUNK):
        pending: list[tuple[dict[str, Any], FeatureReport]] = []
        for index in range(start, min(start + CHUNK, total)):
            result = FeatureReport(index)
            report.results.append(result)
            doc = village_from_feature(features[index], result, code_field, name_field)
            if doc is None:
                continue
            if doc["id"] in first_index:
                result.reasons.append(gettext("code %(code)s is already given by feature %(index)s", code=doc["id"],
                                              index=first_index[doc["id"]]))
                continue
            first_index[doc["id"]] = index
            pending.append((doc, result))
        if pending:
            _store_chunk(store, pending)
        if progress:
            progress(min(start + CHUNK, total), total)
    if actor is not None:
        # Boundaries decide which visits are flagged, so who changed them is worth keeping.
        with store.transaction() as tx:
            record_audit(tx, "villages_imported", actor=actor, details=report.counts, address=address)
    return report


def _store_chunk(store: Store, pending: list[tuple[dict[str, Any], FeatureReport]]) -> None:
    with store.transaction() as tx:
        stored = {doc["id"]: doc for doc in tx.find(VILLAGES, {"id": In(doc["id"] for doc, _ in pending)})}
        for doc, result in pending:
            before = stored.get(doc["id"])
            if before is not None and canonical_json(before) == canonical_json(doc):
                result.status = "unchanged"
                continue
            tx.put(VILLAGES, doc)
            result.status = "imported" if before is None else "updated"


# -- lookups ------------------------------------------------------------------------------

def village_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """A village as ``GET /api/v1/villages`` lists it (area names, not codes)."""
    return {
        "code": doc["code"],
        "name": doc["name"],
        "district": doc.get("district"),
        "regency": doc.get("regency_name"),
        "province": doc.get("province_name"),
        "has_boundary": doc["has_boundary"],
    }


def village_detail(doc: dict[str, Any]) -> dict[str, Any]:
    """A village with its boundary (GeoJSON geometry or null) and bounding box."""
    return {**village_summary(doc), "boundary": doc.get("boundary"), "bbox": doc.get("bbox")}


def list_villages(store: Store, scope: Scope, *, after: str | None = None,
                  limit: int | None = None) -> list[dict[str, Any]]:
    """The villages in ``scope``, by code, after the code ``after``, as :func:`village_summary` gives them."""
    return [village_summary(doc) for doc in store.find(VILLAGES, scope.where("id"), after=after, limit=limit)]


def get_village(store: Store, scope: Scope, village_code: str) -> dict[str, Any] | None:
    """The village document, or None: for an unknown code, a string that is no village code, and a
    village outside ``scope`` alike, so a caller cannot probe which villages exist."""
    if not Area.is_code(village_code, levels=("village",)) or not scope.covers(village_code):
        return None
    return store.get(VILLAGES, village_code)


def boundary_index(app: Flask | None = None) -> BoundaryIndex:
    """The app's shared :class:`BoundaryIndex` (one per process)."""
    app = app or current_app
    index = app.extensions.get(_BOUNDARY_INDEX)
    if index is None:
        index = app.extensions.setdefault(_BOUNDARY_INDEX, BoundaryIndex(get_store(app), VILLAGES))
    return index
