"""Village boundaries: import through the CLI and the API, and the scoped village endpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shapely
from click.testing import CliRunner
from http_helpers import login, make_user
from shapely.geometry import shape

import server
from server.cli import cli
from server.storage import open_store
from server.store import COLLECTIONS, get_store
from server.villages import (
    CHUNK,
    VILLAGES,
    GeoJsonError,
    boundary_index,
    import_villages,
    read_geojson_file,
)

SAMPLE = Path(server.__file__).parent / "data" / "sample_villages.geojson"
SAMPLE_CODES = ["32.04.05.2001", "32.04.05.2002", "32.04.05.2003",
                "32.04.06.2003", "32.04.06.2004", "32.04.06.2005"]


def square(west, south, size=0.01):
    east, north = west + size, south + size
    return {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north], [west, north],
                                                [west, south]]]}


def feature(code, name, geometry, **properties):
    return {"type": "Feature", "properties": {"code": code, "name": name, **properties}, "geometry": geometry}


def collection(*features):
    return {"type": "FeatureCollection", "features": list(features)}


BOW_TIE = {"type": "Polygon", "coordinates": [[[107.60, -7.01], [107.62, -6.99], [107.62, -7.01],
                                               [107.60, -6.99], [107.60, -7.01]]]}
LINE = {"type": "LineString", "coordinates": [[107.60, -7.0], [107.62, -7.0]]}


# -- the command line ---------------------------------------------------------------------

@pytest.fixture
def stored(env):
    """Read what the CLI wrote, through a store of our own."""
    opened = []

    def read(code):
        if not opened:
            opened.append(open_store(env["KUNJUNG_DATABASE_URL"], COLLECTIONS))
        return opened[0].get(VILLAGES, code)

    yield read
    for store in opened:
        store.close()


def write(tmp_path, document, name="villages.geojson"):
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


def run(*args):
    return CliRunner().invoke(cli, ["import-villages", *args], catch_exceptions=False)


def test_the_sample_file_imports_cleanly_and_again_changes_nothing(env, stored):
    first = run(str(SAMPLE))
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines()[0] == ("6 features: 6 imported, 0 updated, 0 unchanged, 0 refused; "
                                            "0 repaired")
    assert "warnings:" not in first.stdout
    village = stored("32.04.05.2001")
    assert {k: village[k] for k in ("id", "code", "name", "district", "regency_name", "province_name",
                                    "kecamatan", "regency", "province", "has_boundary")} == {
        "id": "32.04.05.2001", "code": "32.04.05.2001", "name": "Cileunyi Kulon", "district": "Cileunyi",
        "regency_name": "Kabupaten Bandung", "province_name": "Jawa Barat", "kecamatan": "32.04.05",
        "regency": "32.04", "province": "32", "has_boundary": True}
    boundary = shape(village["boundary"])
    assert boundary.is_valid
    assert village["bbox"] == list(boundary.bounds)

    again = run(str(SAMPLE))
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[0] == "6 features: 0 imported, 0 updated, 6 unchanged, 0 refused; 0 repaired"
    assert stored("32.04.05.2001") == village


def test_the_sample_villages_neighbour_without_overlapping():
    boundaries = [shape(f["geometry"]) for f in read_geojson_file(SAMPLE)]
    assert [f["properties"]["code"] for f in read_geojson_file(SAMPLE)] == SAMPLE_CODES
    for i, a in enumerate(boundaries):
        assert 10 <= len(a.exterior.coords) <= 31
        for b in boundaries[i + 1:]:
            assert a.intersection(b).area == pytest.approx(0, abs=1e-12)
    assert shapely.union_all(boundaries).geom_type == "Polygon"  # they tile one area


def test_a_changed_village_is_updated(env, tmp_path, stored):
    path = write(tmp_path, collection(feature("32.04.05.2001", "Cileunyi Kulon", square(107.60, -7.0))))
    assert run(path).exit_code == 0
    renamed = write(tmp_path, collection(feature("32.04.05.2001", "Cileunyi Kulon Baru", square(107.60, -7.0))))
    result = run(renamed)
    assert result.exit_code == 0
    assert "0 imported, 1 updated, 0 unchanged" in result.stdout
    assert stored("32.04.05.2001")["name"] == "Cileunyi Kulon Baru"


def test_a_bow_tie_is_repaired_and_reported(env, tmp_path, stored):
    result = run(write(tmp_path, collection(feature("32.04.05.2001", "Cileunyi Kulon", BOW_TIE))))
    assert result.exit_code == 0, result.output
    assert "1 imported" in result.stdout
    assert "; 1 repaired" in result.stdout
    assert "repaired:\n  feature 0 (32.04.05.2001): repaired an invalid polygon (Self-intersection" in result.stdout
    boundary = shape(stored("32.04.05.2001")["boundary"])
    assert boundary.is_valid
    assert boundary.geom_type == "MultiPolygon"
    again = run(write(tmp_path, collection(feature("32.04.05.2001", "Cileunyi Kulon", BOW_TIE))))
    assert "1 unchanged" in again.stdout


def test_bad_features_are_refused_by_index_and_never_stop_good_ones(env, tmp_path, stored):
    document = collection(
        feature("32.04.05.2001", "Cileunyi Kulon", square(107.60, -7.0)),
        feature("32.04.05.2002", "Cileunyi Wetan", LINE),
        feature("3204052003", "Cimekar", square(107.62, -7.0)),
        feature("32.04.05.2004", "  ", square(107.63, -7.0)),
        "not a feature",
        feature("32.04.05.2001", "Cileunyi Kulon lagi", square(107.64, -7.0)),
        feature("32.04.05.2005", "Cibiru Hilir", square(107.65, -7.0)),
    )
    result = run(write(tmp_path, document))
    assert result.exit_code == 1
    out = result.stdout
    assert out.splitlines()[0] == "7 features: 2 imported, 0 updated, 0 unchanged, 5 refused; 0 repaired"
    assert ("  feature 1 (32.04.05.2002): geometry: geometry type 'LineString' is not accepted; "
            "a village boundary is a Polygon or MultiPolygon") in out
    assert "  feature 2 (3204052003): code: village code must look like 32.04.05.2001" in out
    assert "  feature 3 (32.04.05.2004): no village name in property 'name'" in out
    assert "  feature 4: is not a GeoJSON Feature" in out
    assert "  feature 5 (32.04.05.2001): code 32.04.05.2001 is already given by feature 0" in out
    assert stored("32.04.05.2001")["name"] == "Cileunyi Kulon"
    assert stored("32.04.05.2005") is not None
    assert stored("32.04.05.2002") is None


@pytest.mark.parametrize("code", ["32.04.05.4001", "32.4.5.2001", "02.04.05.2001", "32.04.05.2001 x",
                                  "٣٢.04.05.2001"])
def test_malformed_codes_are_refused(env, tmp_path, code):
    result = run(write(tmp_path, collection(feature(code, "Cileunyi Kulon", square(107.60, -7.0)))))
    assert result.exit_code == 1
    assert "1 refused" in result.stdout
    assert "village code must look like" in result.stdout


def test_other_property_names_with_code_and_name_fields(env, tmp_path, stored):
    village = {"type": "Feature", "properties": {"kode_desa": "32.04.05.2001", "nama_desa": "Cileunyi Kulon"},
               "geometry": square(107.60, -7.0)}
    path = write(tmp_path, collection(village))
    default = run(path)
    assert default.exit_code == 1
    assert "no village code in property 'code'; no village name in property 'name'" in default.stdout
    named = run("--code-field", "kode_desa", "--name-field", "nama_desa", path)
    assert named.exit_code == 0, named.output
    assert "1 imported" in named.stdout
    assert stored("32.04.05.2001")["name"] == "Cileunyi Kulon"


def test_progress_is_shown_on_large_files_in_the_admins_language(env, tmp_path, stored, monkeypatch):
    features = [feature(f"32.04.{10 + i // 100:02d}.{2001 + i % 100}", f"Desa {i}",
                        square(107.0 + (i % 50) * 0.01, -7.5 + (i // 50) * 0.01))
                for i in range(2000)]
    result = run(write(tmp_path, collection(*features)))
    assert result.exit_code == 0, result.output[-2000:]
    assert result.stdout.splitlines()[0].startswith("2000 features: 2000 imported")
    progress = result.stderr.splitlines()
    assert len(progress) == 2000 // CHUNK
    assert progress[0] == f"  {CHUNK}/2000 features ({100 * CHUNK // 2000}%)"
    assert progress[-1] == "  2000/2000 features (100%)"
    monkeypatch.setenv("KUNJUNG_LANG", "id")
    in_indonesian = run(write(tmp_path, collection(*features)))
    assert in_indonesian.stderr.splitlines()[-1] == "  2000/2000 fitur (100%)"
    assert stored("32.04.29.2100")["name"] == "Desa 1999"


def test_a_small_file_prints_no_progress(env, tmp_path):
    result = run(str(SAMPLE))
    assert result.stderr == ""


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not JSON"),
    (json.dumps({"type": "Polygon", "coordinates": []}), "expected a GeoJSON FeatureCollection or Feature"),
    (json.dumps({"type": "FeatureCollection", "features": {}}), "needs a list of features"),
    (json.dumps({"type": "FeatureCollection", "features": [],
                 "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32748"}}}),
     "coordinates are in urn:ogc:def:crs:EPSG::32748"),
])
def test_unusable_files_are_refused_whole(env, tmp_path, content, message):
    path = tmp_path / "bad.geojson"
    path.write_text(content, encoding="utf-8")
    result = CliRunner().invoke(cli, ["import-villages", str(path)])
    assert result.exit_code == 1
    assert message in result.output


def test_an_unreadable_file_is_a_clear_error(tmp_path):
    with pytest.raises(GeoJsonError, match=f"cannot read {tmp_path}"):
        read_geojson_file(tmp_path)  # a directory: open() fails as for a file without permission


def test_a_lone_feature_in_wgs84_with_a_byte_order_mark(env, tmp_path, stored):
    document = {**feature("32.04.05.2001", "Cileunyi Kulon", square(107.60, -7.0)),
                "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}}
    path = tmp_path / "one.geojson"
    path.write_text("\ufeff" + json.dumps(document), encoding="utf-8")
    result = run(str(path))
    assert result.exit_code == 0, result.output
    assert stored("32.04.05.2001")["has_boundary"] is True


def test_a_village_without_geometry_is_kept_without_a_boundary(env, tmp_path, stored):
    result = run(write(tmp_path, collection(feature("32.04.05.2001", "Cileunyi Kulon", None))))
    assert result.exit_code == 0
    assert "feature 0 (32.04.05.2001): no geometry: stored without a boundary" in result.stdout
    village = stored("32.04.05.2001")
    assert (village["has_boundary"], village["boundary"], village["bbox"]) == (False, None, None)


# -- HTTP -----------------------------------------------------------------------------------

@pytest.fixture
def villages_app(app):
    store = get_store(app)
    report = import_villages(store, read_geojson_file(SAMPLE))
    assert report.counts["imported"] == 6
    import_villages(store, [feature("33.01.01.2001", "Dayeuhluhur", None, district="Dayeuhluhur")])
    make_user(app, "admin", "admin")
    make_user(app, "supervisor", "supervisor", ["32.04.05"])
    make_user(app, "ani", "officer", ["32.04.05.2001"])
    make_user(app, "dewi", "officer", ["32.04.06.2004", "33.01.01.2001"])
    return app


@pytest.fixture
def as_user(villages_app):
    client = villages_app.test_client()

    def headers(username):
        return login(client, username)

    return client, headers


def codes(response):
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["next"] is None, "one page holds them all"
    return [v["code"] for v in body["items"]]


def test_each_role_sees_its_own_villages(as_user):
    client, headers = as_user
    assert codes(client.get("/api/v1/villages", headers=headers("ani"))) == ["32.04.05.2001"]
    assert codes(client.get("/api/v1/villages", headers=headers("dewi"))) == ["32.04.06.2004", "33.01.01.2001"]
    assert codes(client.get("/api/v1/villages", headers=headers("supervisor"))) == SAMPLE_CODES[:3]
    assert codes(client.get("/api/v1/villages", headers=headers("admin"))) == [*SAMPLE_CODES, "33.01.01.2001"]


def test_the_list_has_exactly_the_contract_shape(as_user):
    client, headers = as_user
    listed = client.get("/api/v1/villages", headers=headers("dewi")).get_json()
    assert listed == {"items": [
        {"code": "32.04.06.2004", "name": "Mandalamekar", "district": "Cimenyan", "regency": "Kabupaten Bandung",
         "province": "Jawa Barat", "has_boundary": True},
        {"code": "33.01.01.2001", "name": "Dayeuhluhur", "district": "Dayeuhluhur", "regency": None,
         "province": None, "has_boundary": False},
    ], "next": None}


def test_the_list_pages_by_code_with_an_opaque_cursor_and_no_boundaries(as_user):
    client, headers = as_user
    admin = headers("admin")
    seen, after, pages = [], None, 0
    while True:
        body = client.get("/api/v1/villages", headers=admin,
                          query_string={"limit": 2, **({"after": after} if after else {})}).get_json()
        pages += 1
        assert len(body["items"]) <= 2
        assert all("boundary" not in v and "bbox" not in v for v in body["items"])
        seen.extend(v["code"] for v in body["items"])
        after = body["next"]
        if after is None:
            break
        assert "32." not in after  # opaque: not the last code in plain sight
    assert seen == [*SAMPLE_CODES, "33.01.01.2001"]
    assert pages == -(-len(seen) // 2)  # no empty last page
    # a cursor of another list, or a made-up one, is refused
    visits_cursor = client.get("/api/v1/villages", headers=admin, query_string={"limit": 1}).get_json()["next"]
    assert client.get("/api/v1/visits", headers=admin, query_string={"after": visits_cursor}).status_code == 400
    forged = client.get("/api/v1/villages", headers=admin, query_string={"after": "MzIuMDQ"})
    assert forged.status_code == 400
    assert forged.get_json()["code"] == "invalid_cursor"


def test_one_village_with_its_boundary(as_user):
    client, headers = as_user
    response = client.get("/api/v1/villages/32.04.05.2001", headers=headers("ani"))
    assert response.status_code == 200
    body = response.get_json()
    sample = read_geojson_file(SAMPLE)[0]
    assert body["code"] == "32.04.05.2001"
    assert body["name"] == "Cileunyi Kulon"
    assert body["boundary"]["type"] == "Polygon"
    assert shape(body["boundary"]).equals(shape(sample["geometry"]))
    assert len(body["bbox"]) == 4
    empty = client.get("/api/v1/villages/33.01.01.2001", headers=headers("dewi")).get_json()
    assert (empty["has_boundary"], empty["boundary"], empty["bbox"]) == (False, None, None)


def test_other_and_unknown_villages_answer_alike(as_user):
    client, headers = as_user
    ani = headers("ani")
    answers = [client.get(f"/api/v1/villages/{code}", headers=ani)
               for code in ("32.04.05.2002", "32.04.05.2999", "not-a-code")]
    for response in answers:
        assert response.status_code == 404
        body = response.get_json()
        assert (body["code"], body["message"], body["errors"]) == ("not_found", "No such village.", {})
    supervisor = headers("supervisor")
    assert client.get("/api/v1/villages/32.04.05.2003", headers=supervisor).status_code == 200
    assert client.get("/api/v1/villages/32.04.06.2003", headers=supervisor).status_code == 404


def test_unauthenticated_callers_get_401(as_user):
    client, _ = as_user
    for response in (client.get("/api/v1/villages"), client.get("/api/v1/villages/32.04.05.2001"),
                     client.post("/api/v1/villages", json=collection())):
        assert response.status_code == 401
        assert response.get_json()["code"] == "unauthenticated"


def test_only_admins_import_and_the_role_is_checked_before_the_body(as_user):
    client, headers = as_user
    for username in ("ani", "supervisor"):
        refused = client.post("/api/v1/villages", headers=headers(username), data="{broken",
                              content_type="application/json")
        assert refused.status_code == 403
        assert refused.get_json()["code"] == "forbidden"


def test_admin_imports_a_collection_and_gets_a_report(as_user):
    client, headers = as_user
    admin = headers("admin")
    document = collection(
        feature("32.04.05.2004", "Cinunuk", square(107.70, -6.96), district="Cileunyi"),
        feature("32.04.05.2005", "Cibiru Hilir", LINE),
        feature("32.04.05.2006", "Cibiru Wetan", BOW_TIE),
    )
    response = client.post("/api/v1/villages", headers=admin, json=document)
    assert response.status_code == 200, response.get_json()
    report = response.get_json()
    assert {k: report[k] for k in ("imported", "updated", "unchanged", "repaired", "refused")} == {
        "imported": 2, "updated": 0, "unchanged": 0, "repaired": 1, "refused": 1}
    assert [(r["index"], r["code"], r["status"], r["repaired"]) for r in report["results"]] == [
        (0, "32.04.05.2004", "imported", False),
        (1, "32.04.05.2005", "refused", False),
        (2, "32.04.05.2006", "imported", True),
    ]
    assert "'LineString' is not accepted" in report["results"][1]["reasons"][0]
    assert "Self-intersection" in report["results"][2]["repairs"][0]
    assert "32.04.05.2004" in codes(client.get("/api/v1/villages", headers=headers("supervisor")))

    again = client.post("/api/v1/villages", headers=admin, json=document).get_json()
    assert (again["imported"], again["unchanged"], again["refused"]) == (0, 2, 1)

    audit = client.get("/api/v1/audit?action=villages_imported", headers=admin).get_json()
    assert len(audit) == 2
    assert audit[0]["actor"] == "admin"
    assert audit[0]["details"]["unchanged"] == 2


def test_admin_imports_one_feature_with_other_property_names(as_user):
    client, headers = as_user
    village = {"type": "Feature", "properties": {"kode": "32.04.05.2004", "nama": "Cinunuk"},
               "geometry": square(107.70, -6.96)}
    response = client.post("/api/v1/villages?code_field=kode&name_field=nama", headers=headers("admin"),
                           json=village)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["results"][0]["status"] == "imported"


@pytest.mark.parametrize(("body", "field"), [
    ({"type": "Polygon", "coordinates": []}, "type"),
    ({"features": []}, "type"),
    ({"type": "FeatureCollection", "features": "all of them"}, "features"),
    ({"type": "FeatureCollection", "features": [],
      "crs": {"type": "name", "properties": {"name": "EPSG:32748"}}}, "crs"),
    ({"type": "FeatureCollection", "features": [], "crs": {"type": "name", "properties": None}}, "crs"),
])
def test_a_body_that_is_not_geojson_is_422(as_user, body, field):
    client, headers = as_user
    response = client.post("/api/v1/villages", headers=headers("admin"), json=body)
    assert response.status_code == 422
    assert response.get_json()["code"] == "invalid"
    assert field in response.get_json()["errors"]


def test_a_body_that_is_not_json_is_415(as_user):
    client, headers = as_user
    response = client.post("/api/v1/villages", headers=headers("admin"), data="type=Feature",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415


def test_the_openapi_document_describes_the_village_endpoints(as_user):
    client, _ = as_user
    spec = client.get("/api/openapi.json").get_json()
    listing, one = spec["paths"]["/api/v1/villages"], spec["paths"]["/api/v1/villages/{code}"]
    assert set(listing) >= {"get", "post"}
    assert listing["get"]["security"] == [{"bearer": []}]
    assert listing["post"]["security"] == [{"bearer": []}]
    assert {p["name"] for p in listing["post"]["parameters"]} >= {"code_field", "name_field"}
    assert "404" in one["get"]["responses"]
    schemas = spec["components"]["schemas"]
    assert set(schemas["Village"]["properties"]) == {"code", "name", "district", "regency", "province",
                                                     "has_boundary"}
    assert {"boundary", "bbox"} <= set(schemas["VillageDetail"]["properties"])
    assert listing["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/VillagePage"}
    assert set(schemas["VillagePage"]["properties"]) == {"items", "next"}
    assert {p["name"] for p in listing["get"]["parameters"]} >= {"after", "limit"}


def test_the_app_shares_one_boundary_index_over_its_store(villages_app):
    index = boundary_index(villages_app)
    assert boundary_index(villages_app) is index
    with villages_app.app_context():
        assert boundary_index() is index
    assert index.locate("32.04.05.2001", -6.93, 107.675) is None  # inside the sample's Cileunyi Kulon
    flag = index.locate("32.04.05.2001", -6.93, 107.64)
    assert flag["code"] == "outside_village"
    assert 1000 < flag["distance_m"] < 3000
    assert index.locate("33.01.01.2001", -7.0, 108.7) == {"code": "no_boundary"}


# -- the reader's language ---------------------------------------------------------------------

MIXED = collection(
    feature("32.04.05.2001", "Cileunyi Kulon", BOW_TIE),
    feature("32.04.05.2002", "Cileunyi Wetan", LINE),
    feature("32.04.05.2003", "Cimekar", {"type": "MultiPolygon", "coordinates": [
        [[[107.6, -7.0], [107.61, -7.0], [107.61, -6.99], [107.6, -7.0]]],
        [[[107.6, -7.0], [200, -7.0], [107.61, -6.99], [107.6, -7.0]]]]}),
    feature("32.04.05.2004", "  ", None, district=3),
    "not a feature",
    feature("32.04.05.2001", "Cileunyi Kulon lagi", None),
    feature("32.04.05.2005", "Cibiru Hilir", None),
)


def test_the_cli_report_in_the_shells_language(env, tmp_path, monkeypatch):
    path = write(tmp_path, MIXED)
    monkeypatch.setenv("KUNJUNG_LANG", "en")
    english = run(path).stdout.splitlines()
    monkeypatch.setenv("KUNJUNG_LANG", "id")
    indonesian = run(path)  # the same file again: what was imported is unchanged now, the refusals are the same
    assert indonesian.exit_code == 1
    lines = indonesian.stdout.splitlines()
    assert len(lines) == len(english)
    assert english[0] == "7 features: 2 imported, 0 updated, 0 unchanged, 5 refused; 1 repaired"
    assert lines[0] == "7 fitur: 0 diimpor, 0 diperbarui, 2 tidak berubah, 5 ditolak; 1 diperbaiki"
    assert {"ditolak:", "diperbaiki:", "peringatan:"} <= set(lines)
    assert ("  fitur 1 (32.04.05.2002): geometri: jenis geometri 'LineString' tidak diterima; batas desa berupa "
            "Polygon atau MultiPolygon") in lines
    assert ("  fitur 2 (32.04.05.2003): geometri: poligon 1: cincin (ring) 0: posisi 1: bujur 200 di luar "
            "-180..180 (apakah berkas memakai WGS 84?)") in lines
    assert "  fitur 3 (32.04.05.2004): tidak ada nama desa di properti 'name'" in lines
    assert "  fitur 4: bukan Feature GeoJSON" in lines
    assert "  fitur 5 (32.04.05.2001): kode 32.04.05.2001 sudah dipakai oleh fitur 0" in lines
    assert "  fitur 0 (32.04.05.2001): memperbaiki poligon yang tidak valid (Self-intersection" in indonesian.stdout
    assert "  fitur 3 (32.04.05.2004): properti 'district' diabaikan: bukan nama; tanpa geometri: disimpan tanpa " \
           "batas wilayah" in lines
    assert ("  feature 2 (32.04.05.2003): geometry: polygon 1: ring 0: position 1: longitude 200 is outside "
            "-180..180 (is the file in WGS 84?)") in english


def test_the_api_report_in_the_asked_language(as_user):
    client, headers = as_user
    admin = headers("admin")
    document = collection(feature("32.04.05.2005", "Cibiru Hilir", LINE),
                          feature("32.04.05.2006", "Cibiru Wetan", None), {"type": "Feature", "properties": 1})
    english = client.post("/api/v1/villages", headers=admin, json=document).get_json()
    indonesian = client.post("/api/v1/villages", headers=dict(admin, **{"Accept-Language": "id"}),
                             json=document).get_json()
    assert [r["reasons"] for r in english["results"]] == [
        ["geometry: geometry type 'LineString' is not accepted; a village boundary is a Polygon or MultiPolygon"],
        [], ["properties must be an object"]]
    assert [r["reasons"] for r in indonesian["results"]] == [
        ["geometri: jenis geometri 'LineString' tidak diterima; batas desa berupa Polygon atau MultiPolygon"],
        [], ["properties harus berupa objek"]]
    assert english["results"][1]["warnings"] == ["no geometry: stored without a boundary"]
    assert indonesian["results"][1]["warnings"] == ["tanpa geometri: disimpan tanpa batas wilayah"]
