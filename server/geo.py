"""Geometry of visits and villages: geotag checks, boundary validation and repair, distances, the boundary cache."""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import shapely
from shapely.geometry import mapping, shape

from sync import canonical_json

from .i18n import gettext
from .storage import Store

__all__ = [
    "BoundaryCheck",
    "BoundaryIndex",
    "boundary_hash",
    "check_boundary",
    "check_geotag",
    "distance_to_boundary_m",
]

GEOTAG_NUMBERS = ("lat", "lon", "accuracy_m", "altitude_m")
GEOTAG_REQUIRED = ("lat", "lon", "accuracy_m", "captured_at")
GEOTAG_KEYS = frozenset((*GEOTAG_NUMBERS, "captured_at"))

# A generous box around Indonesia (Sabang to Merauke, Miangas to Rote). Outside it a boundary
# is still stored, with a warning: the usual cause is swapped or projected coordinates.
INDONESIA_BBOX = (94.0, -12.0, 142.0, 7.0)

# WGS 84 ellipsoid, for the local radii of curvature used by distance_to_boundary_m.
_WGS84_A = 6378137.0
_WGS84_E2 = 6.69437999014e-3


# -- geotags ----------------------------------------------------------------------------

def _finite_number(value: Any) -> bool:
    # bool is an int in Python, but true is not a coordinate.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_geotag(value: Any, path: str = "geotag") -> dict[str, list[str]]:
    """Problems with a geotag ``{lat, lon, accuracy_m, altitude_m?, captured_at}``, keyed by field
    path (``geotag.lat``) in the shape of the API's ``errors``; empty when the geotag is sound."""
    errors: dict[str, list[str]] = {}

    def add(key: str, message: str) -> None:
        errors.setdefault(f"{path}.{key}" if key else path, []).append(message)

    if not isinstance(value, dict):
        add("", "must be an object {lat, lon, accuracy_m, altitude_m?, captured_at}")
        return errors
    for key in sorted(set(value) - GEOTAG_KEYS, key=str):
        add(str(key), "unknown field")
    for key in GEOTAG_REQUIRED:
        if key not in value:
            add(key, "is required")
    for key in GEOTAG_NUMBERS:
        if key not in value or (key == "altitude_m" and value[key] is None):
            continue  # phones without a barometer or a 3D fix send no altitude
        if not _finite_number(value[key]):
            add(key, "must be a finite number")
    if _finite_number(value.get("lat")) and not -90 <= value["lat"] <= 90:
        add("lat", "must be between -90 and 90")
    if _finite_number(value.get("lon")) and not -180 <= value["lon"] <= 180:
        add("lon", "must be between -180 and 180")
    if _finite_number(value.get("accuracy_m")) and value["accuracy_m"] < 0:
        add("accuracy_m", "must not be negative")
    if "captured_at" in value and not _is_zoned_datetime(value["captured_at"]):
        # Indonesia spans three time zones (WIB, WITA, WIT): a time without an offset is ambiguous.
        add("captured_at", "must be an ISO-8601 date-time with a UTC offset, e.g. 2025-11-22T09:30:00+07:00")
    return errors


def _is_zoned_datetime(value: Any) -> bool:
    if not isinstance(value, str) or not 10 < len(value) <= 40:
        return False
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return False
    return parsed.tzinfo is not None


# -- boundaries -------------------------------------------------------------------------

@dataclass
class BoundaryCheck:
    """What :func:`check_boundary` found: the geometry to keep (or None), and why."""

    geometry: Any = None  # a valid shapely Polygon or MultiPolygon
    errors: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def geojson(self) -> dict[str, Any] | None:
        """The kept geometry as a plain GeoJSON object (lists, not tuples)."""
        if self.geometry is None:
            return None
        return _plain(mapping(self.geometry))

    @property
    def bbox(self) -> list[float] | None:
        return None if self.geometry is None else [float(v) for v in self.geometry.bounds]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def check_boundary(geometry: Any) -> BoundaryCheck:
    """Check a GeoJSON geometry meant as a village boundary and return what to keep.

    Only Polygon and MultiPolygon are accepted, in WGS 84 longitude/latitude. A polygon that is
    invalid (self-intersection, a bow-tie) is repaired with ``shapely.make_valid`` keeping only its
    polygonal parts, and said to be repaired; a repair that leaves no area is refused. Exterior
    rings are turned counter-clockwise as RFC 7946 asks; altitudes and measures are dropped.
    """
    result = BoundaryCheck()
    if not isinstance(geometry, dict):
        result.errors.append(gettext("geometry must be a GeoJSON object"))
        return result
    kind = geometry.get("type")
    if kind not in ("Polygon", "MultiPolygon"):
        result.errors.append(gettext("geometry type %(kind)r is not accepted; a village boundary is a Polygon or "
                                     "MultiPolygon", kind=kind))
        return result
    coordinates = geometry.get("coordinates")
    polygons = [coordinates] if kind == "Polygon" else coordinates
    if not isinstance(polygons, list) or not polygons:
        result.errors.append(gettext("coordinates must be a non-empty list"))
        return result
    shells_and_holes: list[list[list[tuple[float, float]]]] = []
    for p, polygon in enumerate(polygons):
        where = None if kind == "Polygon" else p
        if not isinstance(polygon, list) or not polygon:
            result.errors.append(_in_polygon(where, gettext("a polygon must be a non-empty list of rings")))
            continue
        rings = []
        for r, ring in enumerate(polygon):
            ring_errors, points = _check_ring(ring)
            result.errors.extend(_in_polygon(where, gettext("ring %(ring)s: %(problem)s", ring=r, problem=message))
                                 for message in ring_errors)
            rings.append(points)
        shells_and_holes.append(rings)
    if result.errors:
        return result
    if any(ring[0] != ring[-1] for rings in shells_and_holes for ring in rings):
        result.repairs.append(gettext("closed a ring whose last position did not repeat the first"))
    parts = [shapely.Polygon(rings[0], rings[1:]) for rings in shells_and_holes]
    geom = parts[0] if kind == "Polygon" else shapely.MultiPolygon(parts)
    if not shapely.is_valid(geom):
        reason = shapely.is_valid_reason(geom)
        # 'structure' unions overlapping shells; the default 'linework' reads them even-odd and
        # would cut the overlap out of the village.
        geom = _polygonal_part(shapely.make_valid(geom, method="structure", keep_collapsed=False))
        if geom is None or geom.is_empty or geom.area == 0:
            result.errors.append(gettext("the polygon is invalid (%(reason)s) and repairing it leaves no area",
                                         reason=reason))
            return result
        result.repairs.append(gettext("repaired an invalid polygon (%(reason)s)", reason=reason))
    geom = shapely.orient_polygons(geom)
    min_lon, min_lat, max_lon, max_lat = geom.bounds
    west, south, east, north = INDONESIA_BBOX
    if min_lon < west or max_lon > east or min_lat < south or max_lat > north:
        result.warnings.append(gettext(
            "the boundary lies (partly) outside Indonesia (lon %(west)s..%(east)s, lat %(south)s..%(north)s); "
            "check that coordinates are longitude, latitude in WGS 84",
            west=f"{west:g}", east=f"{east:g}", south=f"{south:g}", north=f"{north:g}"))
    result.geometry = geom
    return result


def _in_polygon(polygon: int | None, problem: str) -> str:
    """A problem of a MultiPolygon's part says which part; a lone Polygon's needs no number."""
    return problem if polygon is None else gettext("polygon %(polygon)s: %(problem)s", polygon=polygon,
                                                   problem=problem)


def _check_ring(ring: Any) -> tuple[list[str], list[tuple[float, float]]]:
    if not isinstance(ring, list):
        return [gettext("a ring must be a list of positions")], []
    errors: list[str] = []
    points: list[tuple[float, float]] = []
    for i, position in enumerate(ring):
        # RFC 7946 allows elements after longitude, latitude (altitude, a measure); they are dropped.
        if not isinstance(position, list) or len(position) < 2 or not all(_finite_number(n) for n in position):
            errors.append(gettext("position %(index)s must be [longitude, latitude] with finite numbers", index=i))
        elif not -180 <= position[0] <= 180:
            errors.append(gettext("position %(index)s: longitude %(value)s is outside -180..180 (is the file in "
                                  "WGS 84?)", index=i, value=position[0]))
        elif not -90 <= position[1] <= 90:
            errors.append(gettext("position %(index)s: latitude %(value)s is outside -90..90 (is the file in "
                                  "WGS 84?)", index=i, value=position[1]))
        else:
            points.append((position[0], position[1]))
        if len(errors) >= 3:
            errors.append(gettext("(further positions not checked)"))
            return errors, points
    if not errors and len(set(points)) < 3:
        errors.append(gettext("has %(count)s distinct positions; a ring needs at least 3", count=len(set(points))))
    return errors, points


def _polygonal_part(geom: Any) -> Any:
    """The polygons in what make_valid returned (which may mix in lines and points), dissolved."""
    polygons = [part for part in shapely.get_parts(shapely.get_parts(geom))
                if part.geom_type == "Polygon" and not part.is_empty]
    if not polygons:
        return None
    merged = shapely.union_all(polygons)
    return merged if merged.geom_type in ("Polygon", "MultiPolygon") else _polygonal_part(merged)


def boundary_hash(boundary: dict[str, Any] | None) -> str:
    """A short digest of a stored boundary (or of its absence), so caches know when it changed."""
    return hashlib.sha256(canonical_json(boundary).encode()).hexdigest()[:32]


# -- distances --------------------------------------------------------------------------

def distance_to_boundary_m(boundary: Any, lat: float, lon: float) -> float:
    """Metres from the point to the nearest part of the boundary (0 inside).

    The boundary is projected onto a plane tangent at the point, scaled by the WGS 84 radii of
    curvature there (meridional for north-south, prime vertical for east-west). Within a few tens
    of kilometres this is within a fraction of a percent of the geodesic distance, which is as
    good as a phone's fix; shapely then measures in that plane.
    """
    phi = math.radians(lat)
    w = math.sqrt(1 - _WGS84_E2 * math.sin(phi) ** 2)
    east_m_per_degree = math.radians(1) * _WGS84_A / w * math.cos(phi)
    north_m_per_degree = math.radians(1) * _WGS84_A * (1 - _WGS84_E2) / w ** 3

    def to_plane(coords: np.ndarray) -> np.ndarray:
        # Longitudes are wrapped into -180..180 around the point so the antimeridian is no edge.
        d_lon = (coords[:, 0] - lon + 180.0) % 360.0 - 180.0
        return np.column_stack((d_lon * east_m_per_degree, (coords[:, 1] - lat) * north_m_per_degree))

    return float(shapely.distance(shapely.transform(boundary, to_plane), shapely.Point(0.0, 0.0)))


# -- the boundary cache -----------------------------------------------------------------

@dataclass
class _Entry:
    digest: str
    geometry: Any  # prepared shapely geometry, or None for a village without a boundary
    lock: threading.Lock = field(default_factory=threading.Lock)
    checked_at: float = field(default_factory=lambda: time.monotonic())


FRESH_SECONDS = 1.0


class BoundaryIndex:
    """Prepared village boundaries, cached per process, answering where a point lies.

    Each use checks with one indexed count that the cached entry's ``boundary_hash`` is still
    the stored one, so an import in another process or thread is seen at once. GEOS builds a
    prepared geometry's index lazily and not thread-safely, so each entry is used under its own
    lock; gunicorn's threads share the cache.
    """

    def __init__(self, store: Store, collection: str, max_entries: int = 2048,
                 fresh_seconds: float = FRESH_SECONDS):
        self.fresh_seconds = fresh_seconds
        self.store = store
        self.collection = collection
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def locate(self, village_code: str, lat: float, lon: float) -> dict[str, Any] | None:
        """None when the point is in the village (its boundary counts as in);
        ``{"code": "outside_village", "distance_m"}`` with the distance to the boundary in metres
        (to 0.1 m); ``{"code": "no_boundary"}`` when no boundary is known for the village.
        The point is one that :func:`check_geotag` accepted."""
        entry = self._entry(village_code)
        if entry is None or entry.geometry is None:
            return {"code": "no_boundary"}
        with entry.lock:
            # For a point, covers is intersects (its boundary counts as in); the _xy form makes no Point.
            inside = shapely.intersects_xy(entry.geometry, lon, lat)
            if inside:
                return None
            distance = distance_to_boundary_m(entry.geometry, lat, lon)
        return {"code": "outside_village", "distance_m": round(distance, 1)}

    def _entry(self, village_code: str) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(village_code)
        # A batch of 500 visits in one village need not ask the store 500 times whether its
        # boundary changed: an answer from the last second is fresh enough.
        if entry is not None and time.monotonic() - entry.checked_at < self.fresh_seconds:
            return entry
        if entry is not None and self.store.count(
                self.collection, {"id": village_code, "boundary_hash": entry.digest}) == 1:
            entry.checked_at = time.monotonic()
            with self._lock:
                if village_code in self._entries:
                    self._entries.move_to_end(village_code)
            return entry
        doc = self.store.get(self.collection, village_code)
        if doc is None:
            with self._lock:
                self._entries.pop(village_code, None)
            return None
        geometry = None
        if doc.get("boundary") is not None:
            geometry = shape(doc["boundary"])
            shapely.prepare(geometry)
        entry = _Entry(doc.get("boundary_hash", ""), geometry)
        with self._lock:
            self._entries[village_code] = entry
            self._entries.move_to_end(village_code)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return entry
