"""Geotag checks, boundary validation and repair, distances to a boundary, and the prepared-boundary cache."""

from __future__ import annotations

import math
import threading

import pytest
import shapely
from mongo_stand_in import StandIn
from shapely.geometry import shape

from server import geo
from server.geo import BoundaryIndex, check_boundary, check_geotag, distance_to_boundary_m
from server.storage import open_store
from server.store import COLLECTIONS
from server.villages import VILLAGES, import_villages

EARTH_RADIUS_M = 6371008.8  # mean radius, for the independent haversine reference
CODE = "32.04.05.2001"

# A square village of about 2.2 km a side near Bandung.
WEST, SOUTH, EAST, NORTH = 107.60, -7.01, 107.62, -6.99


def haversine_m(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def square(west, south, east, north):
    return [[west, south], [east, south], [east, north], [west, north], [west, south]]


def polygon(*rings):
    return {"type": "Polygon", "coordinates": list(rings)}


def feature(code, geometry, name="Cileunyi Kulon"):
    return {"type": "Feature", "properties": {"code": code, "name": name}, "geometry": geometry}


GOOD_GEOTAG = {"lat": -6.9, "lon": 107.6, "accuracy_m": 8, "captured_at": "2025-11-22T09:30:00+07:00"}


# -- geotags ----------------------------------------------------------------------------

@pytest.mark.parametrize("geotag", [
    GOOD_GEOTAG,
    {**GOOD_GEOTAG, "altitude_m": 712.5},
    {**GOOD_GEOTAG, "altitude_m": None},
    {**GOOD_GEOTAG, "accuracy_m": 0, "captured_at": "2025-11-22T02:30:00Z"},
    {**GOOD_GEOTAG, "lat": -90, "lon": 180},
    {**GOOD_GEOTAG, "lat": 90.0, "lon": -180.0, "altitude_m": -3},
])
def test_sound_geotags_have_no_errors(geotag):
    assert check_geotag(geotag) == {}


@pytest.mark.parametrize(("change", "path", "message"), [
    ({"lat": math.nan}, "geotag.lat", "must be a finite number"),
    ({"lat": math.inf}, "geotag.lat", "must be a finite number"),
    ({"lon": -math.inf}, "geotag.lon", "must be a finite number"),
    ({"accuracy_m": math.inf}, "geotag.accuracy_m", "must be a finite number"),
    ({"accuracy_m": math.nan}, "geotag.accuracy_m", "must be a finite number"),
    ({"altitude_m": math.nan}, "geotag.altitude_m", "must be a finite number"),
    ({"lat": 90.0001}, "geotag.lat", "must be between -90 and 90"),
    ({"lat": -91}, "geotag.lat", "must be between -90 and 90"),
    ({"lon": 180.5}, "geotag.lon", "must be between -180 and 180"),
    ({"lon": -200}, "geotag.lon", "must be between -180 and 180"),
    ({"accuracy_m": -0.1}, "geotag.accuracy_m", "must not be negative"),
    ({"lat": "-6.9"}, "geotag.lat", "must be a finite number"),
    ({"lon": True}, "geotag.lon", "must be a finite number"),
    ({"accuracy_m": None}, "geotag.accuracy_m", "must be a finite number"),
    ({"altitude_m": "712"}, "geotag.altitude_m", "must be a finite number"),
    ({"captured_at": "2025-11-22T09:30:00"}, "geotag.captured_at", "UTC offset"),
    ({"captured_at": "2025-11-22"}, "geotag.captured_at", "UTC offset"),
    ({"captured_at": "yesterday"}, "geotag.captured_at", "ISO-8601"),
    ({"captured_at": 1763778600}, "geotag.captured_at", "ISO-8601"),
    ({"heading": 90}, "geotag.heading", "unknown field"),
])
def test_each_bad_value_is_a_field_error(change, path, message):
    errors = check_geotag({**GOOD_GEOTAG, **change})
    assert list(errors) == [path]
    assert message in errors[path][0]


@pytest.mark.parametrize("missing", ["lat", "lon", "accuracy_m", "captured_at"])
def test_missing_keys_are_required(missing):
    geotag = {k: v for k, v in GOOD_GEOTAG.items() if k != missing}
    assert check_geotag(geotag) == {f"geotag.{missing}": ["is required"]}


@pytest.mark.parametrize("value", [None, [], "-6.9,107.6", 3])
def test_a_geotag_must_be_an_object(value):
    errors = check_geotag(value, path="events[2].geotag")
    assert list(errors) == ["events[2].geotag"]


def test_every_problem_is_reported_at_once():
    errors = check_geotag({"lat": 100, "lon": math.nan, "extra": 1})
    assert set(errors) == {"geotag.lat", "geotag.lon", "geotag.extra", "geotag.accuracy_m", "geotag.captured_at"}


# -- boundaries -------------------------------------------------------------------------

def test_a_valid_polygon_is_kept_counter_clockwise_without_altitude():
    clockwise = [[107.60, -7.01, 700], [107.60, -6.99, 700], [107.62, -6.99, 700, 3.5], [107.62, -7.01],
                 [107.60, -7.01, 700]]
    checked = check_boundary(polygon(clockwise))
    assert checked.errors == []
    assert checked.repairs == []
    assert checked.warnings == []
    ring = checked.geojson["coordinates"][0]
    assert all(len(position) == 2 for position in ring)
    assert shapely.LinearRing(ring).is_ccw
    assert checked.bbox == [107.60, -7.01, 107.62, -6.99]


def test_a_bow_tie_is_repaired_into_its_two_triangles():
    bow_tie = [[107.60, -7.01], [107.62, -6.99], [107.62, -7.01], [107.60, -6.99], [107.60, -7.01]]
    checked = check_boundary(polygon(bow_tie))
    assert checked.errors == []
    assert checked.repairs
    assert "Self-intersection" in checked.repairs[0]
    assert checked.geometry.is_valid
    assert checked.geojson["type"] == "MultiPolygon"
    assert checked.geometry.area == pytest.approx(0.02 * 0.02 / 2)


def test_overlapping_parts_are_united_not_cut_out():
    overlapping = {"type": "MultiPolygon", "coordinates": [
        [square(107.60, -7.02, 107.62, -7.00)], [square(107.61, -7.01, 107.63, -6.99)]]}
    checked = check_boundary(overlapping)
    assert checked.repairs
    assert checked.geometry.area == pytest.approx(0.02 * 0.02 * 2 - 0.01 * 0.01)


def test_an_open_ring_is_closed_and_said_to_be():
    checked = check_boundary(polygon(square(WEST, SOUTH, EAST, NORTH)[:-1]))
    assert checked.errors == []
    assert checked.repairs == ["closed a ring whose last position did not repeat the first"]


@pytest.mark.parametrize(("geometry", "reason"), [
    ({"type": "LineString", "coordinates": [[107.6, -7.0], [107.7, -7.0]]}, "'LineString' is not accepted"),
    ({"type": "Point", "coordinates": [107.6, -7.0]}, "'Point' is not accepted"),
    ({"type": "GeometryCollection", "geometries": []}, "is not accepted"),
    ("POLYGON ((0 0, 1 0, 1 1, 0 0))", "must be a GeoJSON object"),
    (polygon(), "a polygon must be a non-empty list of rings"),
    ({"type": "MultiPolygon", "coordinates": []}, "coordinates must be a non-empty list"),
    (polygon([[107.6, -7.0], [107.7, -7.0], [107.6, -7.0]]), "a ring needs at least 3"),
    (polygon([[107.60, -7.0], [107.61, -7.0], [107.62, -7.0], [107.60, -7.0]]), "leaves no area"),
    (polygon([[-7.0, 107.6], [-7.0, 107.7], [-6.9, 107.7], [-7.0, 107.6]]), "latitude 107.6 is outside -90..90"),
    (polygon([[700000.0, 9226000.0], [701000.0, 9226000.0], [701000.0, 9227000.0], [700000.0, 9226000.0]]),
     "outside -180..180"),
    (polygon([[math.nan, -7.0], [107.7, -7.0], [107.7, -6.9], [math.nan, -7.0]]), "finite numbers"),
    (polygon([["107.6", -7.0], [107.7, -7.0], [107.7, -6.9], ["107.6", -7.0]]), "finite numbers"),
    (polygon([[107.6], [107.7, -7.0], [107.7, -6.9], [107.6]]), "position 0 must be [longitude, latitude]"),
])
def test_unusable_geometries_are_refused_with_a_reason(geometry, reason):
    checked = check_boundary(geometry)
    assert checked.geometry is None
    assert any(reason in error for error in checked.errors), checked.errors


def test_outside_indonesia_is_only_a_warning():
    checked = check_boundary(polygon(square(2.30, 48.85, 2.31, 48.86)))
    assert checked.errors == []
    assert checked.geometry is not None
    assert "outside Indonesia" in checked.warnings[0]


# -- distances --------------------------------------------------------------------------

def metres_south(lat, metres):
    """The latitude ``metres`` due south along a meridian of the reference sphere."""
    return lat - math.degrees(metres / EARTH_RADIUS_M)


def metres_east(lat, lon, metres):
    """The longitude ``metres`` due east of (lat, lon) along the great circle, on the reference sphere."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if haversine_m(lat, lon, lat, lon + mid) < metres else (lo, mid)
    return lon + lo


SQUARE = shape(polygon(square(WEST, SOUTH, EAST, NORTH)))


@pytest.mark.parametrize(("lat", "lon", "nearest"), [
    (metres_south(SOUTH, 1000), 107.61, (SOUTH, 107.61)),                     # 1 km south of the south edge
    (-7.0, metres_east(-7.0, EAST, 1000), (-7.0, EAST)),                       # 1 km east of the east edge
    (metres_south(SOUTH, 700), metres_east(SOUTH, EAST, 700), (SOUTH, EAST)),  # off the south-east corner
    (metres_south(SOUTH, 25), 107.605, (SOUTH, 107.605)),                      # just outside
    (-7.0, metres_east(-7.0, EAST, 20000), (-7.0, EAST)),                      # 20 km away
])
def test_distance_to_the_boundary_matches_haversine(lat, lon, nearest):
    expected = haversine_m(lat, lon, *nearest)
    assert distance_to_boundary_m(SQUARE, lat, lon) == pytest.approx(expected, rel=0.01)


def test_distance_is_zero_inside():
    assert distance_to_boundary_m(SQUARE, -7.0, 107.61) == 0


# -- the boundary cache -----------------------------------------------------------------

class CountingStore:
    """The real store, counting how often a whole village document is read."""

    def __init__(self, store):
        self.store = store
        self.gets = 0

    def get(self, collection, id):
        self.gets += 1
        return self.store.get(collection, id)

    def count(self, collection, where=None):
        return self.store.count(collection, where)


def open_backend(name, tmp_path):
    if name == "sqlite":
        return open_store(f"sqlite:///{tmp_path}/geo.db", COLLECTIONS)
    return open_store("mongodb://stand-in/kunjung", COLLECTIONS, client=StandIn())


@pytest.fixture
def store(tmp_path):
    opened = open_backend("sqlite", tmp_path)
    opened.ensure_schema()
    yield opened
    opened.close()


def load(store, *features):
    report = import_villages(store, list(features))
    assert [r.status for r in report.results if r.status == "refused"] == [], report.summary_lines()


def test_locate_inside_on_the_edge_and_outside(store):
    load(store, feature(CODE, polygon(square(WEST, SOUTH, EAST, NORTH))))
    index = BoundaryIndex(store, VILLAGES)
    assert index.locate(CODE, -7.0, 107.61) is None
    assert index.locate(CODE, SOUTH, 107.61) is None  # the boundary line itself counts as inside
    lat = metres_south(SOUTH, 1000)
    flag = index.locate(CODE, lat, 107.61)
    assert flag["code"] == "outside_village"
    assert flag["distance_m"] == pytest.approx(haversine_m(lat, 107.61, SOUTH, 107.61), rel=0.01)
    assert flag["distance_m"] == round(flag["distance_m"], 1)


def test_no_boundary_for_a_village_without_one_or_unknown(store):
    load(store, feature(CODE, None))
    index = BoundaryIndex(store, VILLAGES)
    assert index.locate(CODE, -7.0, 107.61) == {"code": "no_boundary"}
    assert index.locate("32.04.05.2999", -7.0, 107.61) == {"code": "no_boundary"}


def test_multipolygon_villages_and_holes(store):
    islands = {"type": "MultiPolygon", "coordinates": [
        [square(107.60, -7.01, 107.61, -7.00)],
        [square(107.63, -7.01, 107.64, -7.00)],
    ]}
    with_hole = polygon(square(107.70, -7.03, 107.74, -6.99), square(107.71, -7.02, 107.73, -7.00))
    load(store, feature(CODE, islands), feature("32.04.05.2002", with_hole, "Cileunyi Wetan"))
    index = BoundaryIndex(store, VILLAGES)
    assert index.locate(CODE, -7.005, 107.605) is None
    assert index.locate(CODE, -7.005, 107.635) is None
    between = index.locate(CODE, -7.005, 107.618)  # nearer the western island (0.008° vs 0.012°)
    assert between["code"] == "outside_village"
    assert between["distance_m"] == pytest.approx(haversine_m(-7.005, 107.618, -7.005, 107.61), rel=0.01)
    in_hole = index.locate("32.04.05.2002", -7.01, 107.72)
    assert in_hole["code"] == "outside_village"
    assert in_hole["distance_m"] == pytest.approx(haversine_m(-7.01, 107.72, -7.01, 107.71), rel=0.01)


def test_the_prepared_boundary_is_cached_and_refreshed_when_the_village_changes(store):
    load(store, feature(CODE, polygon(square(WEST, SOUTH, EAST, NORTH))))
    counting = CountingStore(store)
    index = BoundaryIndex(counting, VILLAGES, fresh_seconds=0)  # ask the store every time
    east_of_village = metres_east(-7.0, EAST, 1000)
    assert index.locate(CODE, -7.0, east_of_village)["code"] == "outside_village"
    for _ in range(5):
        index.locate(CODE, -7.0, 107.61)
    assert counting.gets == 1
    assert shapely.is_prepared(index._entries[CODE].geometry)

    load(store, feature(CODE, polygon(square(WEST, SOUTH, EAST + 0.02, NORTH))))  # the village grows east
    assert index.locate(CODE, -7.0, east_of_village) is None
    assert counting.gets == 2

    load(store, feature(CODE, None))  # its boundary is withdrawn
    assert index.locate(CODE, -7.0, east_of_village) == {"code": "no_boundary"}


def test_renaming_a_village_keeps_its_cached_boundary(store):
    load(store, feature(CODE, polygon(square(WEST, SOUTH, EAST, NORTH))))
    counting = CountingStore(store)
    index = BoundaryIndex(counting, VILLAGES)
    index.locate(CODE, -7.0, 107.61)
    load(store, feature(CODE, polygon(square(WEST, SOUTH, EAST, NORTH)), name="Cileunyi Kulon (baru)"))
    index.locate(CODE, -7.0, 107.61)
    assert counting.gets == 1


def test_threads_share_the_cache_safely(store):
    load(store, feature(CODE, polygon(square(WEST, SOUTH, EAST, NORTH))))
    index = BoundaryIndex(store, VILLAGES)
    points = [(-7.0 + dy / 1000, 107.61 + dx / 1000) for dy in range(-15, 16, 3) for dx in range(-15, 16, 3)]
    expected = [BoundaryIndex(store, VILLAGES).locate(CODE, lat, lon) for lat, lon in points]
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(n):
        try:
            results[n] = [index.locate(CODE, lat, lon) for lat, lon in points]
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == 8
    assert all(result == expected for result in results.values())
    assert any(flag is None for flag in expected)
    assert any(flag for flag in expected)


@pytest.mark.parametrize("backend", ["sqlite", "mongo-stand-in[mongomock-ng]"])
def test_import_and_locate_on_every_backend(backend, tmp_path):
    store = open_backend(backend, tmp_path)
    store.ensure_schema()
    try:
        village = feature(CODE, polygon(square(WEST, SOUTH, EAST, NORTH)))
        assert import_villages(store, [village]).counts["imported"] == 1
        assert import_villages(store, [village]).counts["unchanged"] == 1
        index = BoundaryIndex(store, VILLAGES, fresh_seconds=0)
        assert index.locate(CODE, -7.0, 107.61) is None
        grown = feature(CODE, polygon(square(WEST, SOUTH, EAST + 0.02, NORTH)))
        assert import_villages(store, [grown]).counts["updated"] == 1
        assert index.locate(CODE, -7.0, EAST + 0.01) is None
        assert index.locate(CODE, -7.0, EAST + 0.03)["code"] == "outside_village"
    finally:
        store.close()


def test_a_fresh_answer_is_reused_for_a_second_then_checked_again(store, monkeypatch):
    load(store, feature(CODE, polygon(square(WEST, SOUTH, EAST, NORTH))))
    counting = CountingStore(store)
    index = BoundaryIndex(counting, VILLAGES)
    clock = [1000.0]
    monkeypatch.setattr(geo.time, "monotonic", lambda: clock[0])
    east_of_village = metres_east(-7.0, EAST, 1000)
    assert index.locate(CODE, -7.0, east_of_village)["code"] == "outside_village"
    load(store, feature(CODE, polygon(square(WEST, SOUTH, EAST + 0.02, NORTH))))
    assert index.locate(CODE, -7.0, east_of_village)["code"] == "outside_village"  # still within the second
    clock[0] += 1.5
    assert index.locate(CODE, -7.0, east_of_village) is None
