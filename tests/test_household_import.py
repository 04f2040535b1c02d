"""Household registers: import through HTTP and the CLI, bad rows, re-imports, officers' corrections, devices' pulls."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from http_helpers import login
from sync_helpers import VILLAGE, Device, households_in, listed

from server.cli import cli
from server.household_import import FAR_OUTSIDE_M
from server.store import get_store
from server.villages import import_villages

REGISTERS = Path(__file__).parent / "fixtures" / "registers"
# The namespace of household ids is part of the contract with devices: a device that derives a
# household's id from its village code and No. KK must get the server's.
NAMESPACE = uuid.UUID("6f1c8f0e-3b7a-5d2e-9a41-6b756e6a756e")


def square(code, lat, lon, half=0.01):
    """A village about 2.2 km a side around (lat, lon)."""
    ring = [[lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half], [lon - half, lat + half],
            [lon - half, lat - half]]
    return {"type": "Feature", "properties": {"code": code, "name": f"Desa {code}"},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


# The villages of the registers here; 32.04.05.2002 is known without a boundary.
VILLAGES = [square(VILLAGE, -7.0, 107.6), square("32.04.06.2001", -6.95, 107.7), square("73.71.01.1001", -5.15, 119.43),
            {"type": "Feature", "properties": {"code": "32.04.05.2002", "name": "Desa Tanpa Batas"}, "geometry": None}]


@pytest.fixture
def users(app, users):
    """The usual users, and the villages the registers name: a register row of a village the server
    does not know is refused."""
    with app.app_context():
        report = import_villages(get_store(), VILLAGES)
    assert report.counts["refused"] == 0
    return users


def hid(village, no_kk):
    return str(uuid.uuid5(NAMESPACE, f"{village}/{no_kk}"))


def upload(client, headers, path, **query):
    with open(path, "rb") as handle:
        return client.post("/api/v1/households/import", headers=headers, query_string=query,
                           data={"file": (handle, path.name)}, content_type="multipart/form-data")


def values(client, headers, household_id):
    response = client.get(f"/api/v1/households/{household_id}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return {path: state["value"] for path, state in response.get_json()["fields"].items()}


def import_events(app):
    with app.app_context():
        return get_store().count("events", {"type": "import"})


def test_a_register_loads_every_household_with_the_id_devices_derive(client, users):
    admin = login(client, "admin")
    response = upload(client, admin, REGISTERS / "desa_contoh.csv")
    assert response.status_code == 200, response.get_json()
    report = response.get_json()
    assert (report["rows"], report["created"], report["rejected"], report["problems"]) == (5, 5, 0, [])
    assert report["ignored_columns"] == ["Keterangan"]
    # headers " No. KK ", "NAMA_KEPALA_KELUARGA", "Lintang"... were recognised; ';' and decimal commas read
    assert values(client, admin, hid(VILLAGE, "3204050101200001")) == {
        "no_kk": "3204050101200001", "head_nik": "3204054107900001", "head_name": "Siti Aminah",
        "address": "Jl. Mawar No. 1", "rt": "003", "rw": "002", "house_location": {"lat": -7.0012, "lon": 107.6003}}
    assert values(client, admin, hid(VILLAGE, "3204050101200003")) == {
        "no_kk": "3204050101200003", "head_name": "Rahmat Hidayat", "address": "Dusun Krajan", "rt": "005",
        "rw": "001"}
    households = listed(client, "/api/v1/households", admin)
    assert {h["id"]: h["village"] for h in households} == {
        hid(VILLAGE, "3204050101200001"): VILLAGE, hid(VILLAGE, "3204050101200002"): VILLAGE,
        hid(VILLAGE, "3204050101200003"): VILLAGE, hid("32.04.05.2002", "3204050202190004"): "32.04.05.2002",
        hid("32.04.06.2001", "3204060303180005"): "32.04.06.2001"}


def test_bad_rows_are_reported_with_their_row_number_and_good_rows_still_load(client, users):
    admin = login(client, "admin")
    report = upload(client, admin, REGISTERS / "desa_contoh_bad_rows.csv").get_json()
    assert (report["rows"], report["created"], report["rejected"]) == (8, 2, 6)
    problems = {p["row"]: " ".join(p["reasons"]) for p in report["problems"]}
    assert sorted(problems) == [3, 4, 5, 6, 7, 8]
    assert "birth month 99" in problems[3]
    assert "No. KK must be exactly 16 digits" in problems[4]
    assert "village code must look like" in problems[5]
    assert "head_name is empty" in problems[6]
    assert "also on row 2" in problems[7]
    assert "outside Indonesia" in problems[8]
    found = {h["id"] for h in listed(client, "/api/v1/households", admin)}
    assert found == {hid(VILLAGE, "3204050101200001"), hid(VILLAGE, "3204050101200013")}
    assert values(client, admin, hid(VILLAGE, "3204050101200013"))["address"] == "Jl. G, Gg. 2"


def test_importing_the_same_register_again_changes_nothing(app, client, users):
    admin = login(client, "admin")
    ani = Device(client, "ani")
    upload(client, admin, REGISTERS / "desa_contoh.csv")
    ani.pull_all()
    events_before = import_events(app)
    again = upload(client, admin, REGISTERS / "desa_contoh.csv").get_json()
    assert (again["created"], again["updated"], again["unchanged"], again["rejected"]) == (0, 0, 5, 0)
    assert import_events(app) == events_before == 5
    assert [c for c in ani.pull_all() if c["type"] == "household"] == []


def test_devices_pull_the_imported_households_of_their_villages(client, users):
    upload(client, login(client, "admin"), REGISTERS / "desa_contoh.csv")
    ani, budi = Device(client, "ani"), Device(client, "budi")
    pulled = households_in(ani.pull_all())
    assert set(pulled) == {hid(VILLAGE, f"320405010120000{n}") for n in (1, 2, 3)}
    siti = pulled[hid(VILLAGE, "3204050101200001")]["fields"]
    assert siti["head_name"]["value"] == "Siti Aminah"
    assert siti["head_name"]["stamp"].split("/")[1].startswith("server-")  # a server-stamped write
    assert set(households_in(budi.pull_all())) == {hid("32.04.06.2001", "3204060303180005")}


def test_an_officers_correction_survives_a_reimport_and_a_value_both_changed_becomes_a_conflict(client, users):
    admin = login(client, "admin")
    ani = Device(client, "ani")
    upload(client, admin, REGISTERS / "desa_contoh.csv")
    ani.pull_all()
    siti = hid(VILLAGE, "3204050101200001")
    corrected = ani.push([ani.edit(siti, {"head_name": "Siti Aminah Lubis"}, ani.base(siti, "head_name"))])
    assert corrected["results"][0]["status"] == "applied"

    unchanged = upload(client, admin, REGISTERS / "desa_contoh.csv").get_json()
    assert unchanged["unchanged"] == 5
    assert values(client, admin, siti)["head_name"] == "Siti Aminah Lubis"

    # The register now changes the head's name (which ani corrected) and the address (which nobody touched).
    rows = [{"no_kk": "3204050101200001", "nik": "3204054107900001", "nama": "Siti A.", "alamat": "Jl. Mawar No. 1A",
             "rt": "3", "rw": "2", "kode_desa": VILLAGE, "lat": -7.0012, "lon": 107.6003}]
    report = client.post("/api/v1/households/import", headers=admin, json={"rows": rows}).get_json()
    assert (report["updated"], report["conflicts"]) == (1, 1)
    now = values(client, admin, siti)
    assert now["address"] == "Jl. Mawar No. 1A"
    conflicts = listed(client, "/api/v1/conflicts", login(client, "supervisor"))
    assert [(c["household_id"], c["field"]) for c in conflicts] == [(siti, "head_name")]
    assert sorted((h["value"], h["officer"]) for h in conflicts[0]["heads"]) == [
        ("Siti A.", "admin"), ("Siti Aminah Lubis", "ani")]
    # Importing that same register once more changes nothing either.
    again = client.post("/api/v1/households/import", headers=admin, json={"rows": rows}).get_json()
    assert (again["unchanged"], again["conflicts"]) == (1, 0)


def test_a_register_without_the_required_columns_is_refused_whole(client, users):
    admin = login(client, "admin")
    response = upload(client, admin, REGISTERS / "desa_makmur.xlsx")  # its village column is called "Desa"
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == "invalid_register"
    assert any("missing column village_code" in m for m in body["errors"]["columns"])
    missing_all = client.post("/api/v1/households/import", headers=admin, json={"rows": [{"alamat": "x"}]})
    assert missing_all.status_code == 422
    assert len(missing_all.get_json()["errors"]["columns"]) == 3


def test_an_xlsx_register_with_its_own_village_column_name(client, users):
    admin = login(client, "admin")
    report = upload(client, admin, REGISTERS / "desa_makmur.xlsx", village_field="Desa").get_json()
    assert (report["rows"], report["created"], report["rejected"]) == (3, 2, 1)
    assert report["problems"][0]["row"] == 5  # the spreadsheet's own row number, the blank row 3 included
    andi = values(client, admin, hid("73.71.01.1001", "7371010101200001"))
    assert andi["rt"] == "001"
    assert andi["house_location"] == {"lat": -5.1477, "lon": 119.4327}


def test_a_windows_1252_register_with_an_unreadable_line_loads_the_rest(client, users, tmp_path, cli_env):
    register = tmp_path / "ekspor_lama.csv"
    lines = ["no_kk;nama;kode_desa", "3204050101200001;Siti Nurdéwi;32.04.05.2001",
             "3204050101200002;" + "x" * 200_000 + ";32.04.05.2001", "3204050101200003;Rahmat;32.04.05.2001"]
    register.write_bytes("\r\n".join(lines).encode("cp1252"))
    admin = login(client, "admin")
    report = upload(client, admin, register).get_json()
    assert (report["created"], report["rejected"]) == (2, 1)
    assert report["problems"][0]["row"] == 3
    assert "cannot be read as CSV" in report["problems"][0]["reasons"][0]
    assert values(client, admin, hid(VILLAGE, "3204050101200001"))["head_name"] == "Siti Nurdéwi"
    # the command line reads the file from disk the same way
    again = CliRunner().invoke(cli, ["import-households", str(register)])
    assert "row 3: the line cannot be read as CSV" in again.stdout
    assert "3 rows: 0 created, 0 updated, 2 unchanged, 1 rejected" in again.stdout

@pytest.mark.parametrize("username", ["supervisor", "ani"])
def test_only_admins_import(client, users, username):
    response = client.post("/api/v1/households/import", headers=login(client, username), json={"rows": []})
    assert response.status_code == 403


def test_an_unknown_file_type_or_body_is_refused(client, users):
    admin = login(client, "admin")
    refused = client.post("/api/v1/households/import", headers=admin, content_type="multipart/form-data",
                          data={"file": (REGISTERS.joinpath("desa_contoh.csv").open("rb"), "register.txt")})
    assert refused.status_code == 422
    assert client.post("/api/v1/households/import", headers=admin, data="x",
                       content_type="text/plain").status_code == 415


# -- the command line ------------------------------------------------------------------------------
@pytest.fixture
def cli_env(app, monkeypatch):
    """The CLI on the same store as the app under test, so HTTP sees what the CLI wrote."""
    monkeypatch.setenv("KUNJUNG_DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("KUNJUNG_SECRET_KEY", app.config["SECRET_KEY"])
    monkeypatch.setenv("KUNJUNG_LOAD_LIBRARY_FORMS", "false")


def test_cli_imports_a_register_and_devices_receive_it(client, users, cli_env):
    result = CliRunner().invoke(cli, ["import-households", str(REGISTERS / "desa_contoh.csv")])
    assert result.exit_code == 0, result.output
    assert "5 rows: 5 created, 0 updated, 0 unchanged, 0 rejected" in result.stdout
    ani = Device(client, "ani")
    assert hid(VILLAGE, "3204050101200002") in households_in(ani.pull_all())
    again = CliRunner().invoke(cli, ["import-households", str(REGISTERS / "desa_contoh.csv")])
    assert "0 created, 0 updated, 5 unchanged" in again.stdout


def test_cli_reports_bad_rows_and_exits_1(client, users, cli_env):
    result = CliRunner().invoke(cli, ["import-households", str(REGISTERS / "desa_makmur.xlsx"),
                                      "--village-field", "Desa"])
    assert result.exit_code == 1
    assert "row 5: NIK must be exactly 16 digits" in result.stdout
    assert "3 rows: 2 created" in result.stdout
    missing = CliRunner().invoke(cli, ["import-households", str(REGISTERS / "desa_makmur.xlsx")])
    assert missing.exit_code == 1
    assert "missing column village_code" in missing.stderr


def test_cli_shows_progress_on_a_large_register(client, users, cli_env, tmp_path):
    register = tmp_path / "besar.csv"
    lines = ["no_kk,nama,kode_desa"] + [f"3204050101{n:06d},Kepala {n},{VILLAGE}" for n in range(1, 601)]
    register.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["import-households", str(register)])
    assert result.exit_code == 0, result.output
    assert "600 rows: 600 created" in result.stdout
    progress = [line.strip() for line in result.stderr.splitlines()]
    assert progress == ["250/600 rows (41%)", "500/600 rows (83%)", "600/600 rows (100%)"]
    with client.application.app_context():
        assert get_store().count("households", {"village": VILLAGE}) == 600


def test_cli_progress_on_a_large_register_is_said_in_indonesian(client, users, cli_env, tmp_path, monkeypatch):
    monkeypatch.setenv("KUNJUNG_LANG", "id")
    register = tmp_path / "besar.csv"
    lines = ["no_kk,nama,kode_desa"] + [f"3204050102{n:06d},Kepala {n},{VILLAGE}" for n in range(1, 301)]
    register.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["import-households", str(register)])
    assert result.exit_code == 0, result.output
    progress = [line.strip() for line in result.stderr.splitlines()]
    assert progress == ["250/300 baris (83%)", "300/300 baris (100%)"]



def test_rows_of_a_village_never_imported_are_refused_with_their_row_number(client, users):
    admin = login(client, "admin")
    rows = [{"no_kk": "3204050101200001", "nama": "Siti", "kode_desa": VILLAGE},
            {"no_kk": "3204070101200002", "nama": "Tak Dikenal", "kode_desa": "32.04.07.2009"},
            {"no_kk": "3204050101200003", "nama": "Rahmat", "kode_desa": VILLAGE}]
    report = client.post("/api/v1/households/import", headers=admin, json={"rows": rows}).get_json()
    assert (report["created"], report["rejected"]) == (2, 1)
    [problem] = report["problems"]
    assert problem["row"] == 2
    assert "32.04.07.2009 is not known" in problem["reasons"][0]
    # the refused row is nowhere: not among the households, nor in the coverage
    assert hid("32.04.07.2009", "3204070101200002") not in {h["id"] for h in listed(client, "/api/v1/households",
                                                                                      admin)}
    coverage = client.get("/api/v1/reports/coverage", headers=admin).get_json()
    assert "32.04.07.2009" not in {v["village"] for v in coverage["villages"]}


def test_a_house_far_outside_its_village_loads_with_a_warning_and_one_near_the_edge_without(client, users):
    admin = login(client, "admin")
    rows = [{"no_kk": "3204050101200001", "nama": "Di Dalam", "kode_desa": VILLAGE, "lat": -7.0, "lon": 107.6},
            # 0.01 degree of longitude past the edge: about 1.1 km, a rough boundary, no warning
            {"no_kk": "3204050101200002", "nama": "Di Tepi", "kode_desa": VILLAGE, "lat": -7.0, "lon": 107.62},
            # the next kabupaten, tens of kilometres away
            {"no_kk": "3204050101200003", "nama": "Jauh", "kode_desa": VILLAGE, "lat": -7.0, "lon": 108.0},
            # a village without a boundary cannot be checked: no warning either
            {"no_kk": "3204050201200004", "nama": "Tanpa Batas", "kode_desa": "32.04.05.2002", "lat": -7.5,
             "lon": 108.5}]
    report = client.post("/api/v1/households/import", headers=admin, json={"rows": rows}).get_json()
    assert (report["created"], report["rejected"]) == (4, 0)
    [warning] = report["warnings"]
    assert (warning["row"], warning["no_kk"]) == (3, "3204050101200003")
    assert f"outside the boundary of village {VILLAGE}" in warning["warnings"][0]
    assert FAR_OUTSIDE_M == 5000
    assert values(client, admin, hid(VILLAGE, "3204050101200003"))["house_location"] == {"lat": -7.0, "lon": 108.0}


def test_the_cli_prints_the_warnings_of_rows_it_loaded(client, users, cli_env, tmp_path):
    register = tmp_path / "jauh.csv"
    register.write_text(f"no_kk,nama,kode_desa,lat,lon\n3204050101200003,Jauh,{VILLAGE},-7.0,108.0\n")
    result = CliRunner().invoke(cli, ["import-households", str(register)])
    assert result.exit_code == 0, result.output
    assert "row 2: warning: lat -7.0, lon 108.0 lies" in result.stdout


# -- the reader's language -----------------------------------------------------------------------------------
BAD_ROWS = [
    {"no_kk": "", "nama": "Tanpa KK", "kode_desa": VILLAGE},
    {"no_kk": "3204050101200021", "nama": "RT Salah", "kode_desa": VILLAGE, "rt": "x1", "rw": "0"},
    {"no_kk": "3204050101200022", "nama": "Desil Salah", "kode_desa": VILLAGE, "desil": "11"},
    # a lat that is no number is the reason; "give both" would be a second, misleading one
    {"no_kk": "3204050101200023", "nama": "Lintang Salah", "kode_desa": VILLAGE, "lat": "abc", "lon": ""},
    {"no_kk": "3204050101200024", "nama": "Lintang Saja", "kode_desa": VILLAGE, "lat": -7.0},
    # a name too long is the reason; "head_name is empty" would be wrong
    {"no_kk": "3204050101200025", "nama": "x" * 501, "kode_desa": VILLAGE},
    {"no_kk": "3204070101200026", "nama": "Desa Asing", "kode_desa": "32.04.07.2009"},
    {"no_kk": "12345", "nama": "KK Pendek", "kode_desa": VILLAGE},
]
REASONS = {
    "en": {1: ["no_kk is empty"],
           2: ["rt must be a number from 1 to 999, not 'x1'", "rw must be a number from 1 to 999, not '0'"],
           3: ["desil must be a whole number from 1 to 10, not '11'"],
           4: ["lat must be a decimal number, not 'abc'"],
           5: ["lat and lon go together: give both or neither"],
           6: ["head_name is longer than 500 characters"],
           7: ["village 32.04.07.2009 is not known to the server: import it first (kunjung import-villages, "
               "or POST /api/v1/villages)"],
           8: ["No. KK must be exactly 16 digits"]},
    "id": {1: ["no_kk (No. KK) kosong"],
           2: ["rt harus berupa angka dari 1 sampai 999, bukan 'x1'",
               "rw harus berupa angka dari 1 sampai 999, bukan '0'"],
           3: ["desil harus berupa bilangan bulat dari 1 sampai 10, bukan '11'"],
           4: ["lat harus berupa angka desimal, bukan 'abc'"],
           5: ["lat dan lon harus diisi bersama: isi keduanya atau kosongkan keduanya"],
           6: ["head_name lebih panjang dari 500 karakter"],
           7: ["desa/kelurahan 32.04.07.2009 belum dikenal server: impor dulu (kunjung import-villages, "
               "atau POST /api/v1/villages)"],
           8: ["No. KK harus tepat 16 digit"]},
}


@pytest.mark.parametrize("language", ["en", "id"])
def test_the_reasons_a_row_is_refused_are_said_in_the_readers_language(client, users, language):
    admin = login(client, "admin")
    response = client.post("/api/v1/households/import", headers=dict(admin, **{"Accept-Language": language}),
                           json={"rows": BAD_ROWS})
    assert response.status_code == 200, response.get_json()
    report = response.get_json()
    assert (report["rows"], report["created"], report["rejected"]) == (8, 0, 8)
    assert {p["row"]: p["reasons"] for p in report["problems"]} == REASONS[language]


def test_a_register_lacking_columns_is_refused_in_indonesian(client, users):
    admin = login(client, "admin")
    rows = [{"no_kk": "3204050101200001", "kk": "3204050101200002"}]
    english = client.post("/api/v1/households/import", headers=admin, json={"rows": rows}).get_json()
    indonesian = client.post("/api/v1/households/import", headers=dict(admin, **{"Accept-Language": "id"}),
                             json={"rows": rows}).get_json()
    assert english["code"] == indonesian["code"] == "invalid_register"
    assert english["errors"]["columns"] == [
        "columns 'no_kk' and 'kk' both give no_kk",
        "missing column head_name (nama kepala keluarga / nama)",
        "missing column village_code (kode desa / village_code)"]
    assert indonesian["errors"]["columns"] == [
        "kolom 'no_kk' dan 'kk' sama-sama berisi no_kk",
        "kolom head_name tidak ada (nama kepala keluarga / nama)",
        "kolom village_code tidak ada (kode desa / village_code)"]
    assert indonesian["message"] != english["message"]


@pytest.mark.parametrize("language", ["en", "id"])
def test_the_cli_says_the_reasons_and_the_summary_in_the_shells_language(client, users, cli_env, tmp_path,
                                                                          monkeypatch, language):
    monkeypatch.setenv("KUNJUNG_LANG", language)
    register = tmp_path / "campur.csv"
    register.write_text("no_kk,nama,kode_desa,rt,lat,lon\n"
                        f"3204050101200001,Baik,{VILLAGE},1,,\n"
                        f"3204050101200002,RT Salah,{VILLAGE},x1,,\n"
                        f"3204050101200003,Jauh,{VILLAGE},2,-7.0,108.0\n"
                        "3204050101200004,Lain,32.04.07.2009,3,,\n")
    result = CliRunner().invoke(cli, ["import-households", str(register)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    if language == "id":
        assert lines[0] == "baris 3: rt harus berupa angka dari 1 sampai 999, bukan 'x1'"
        assert lines[1].startswith("baris 5: desa/kelurahan 32.04.07.2009 belum dikenal server")
        assert lines[2].startswith("baris 4: peringatan: lat -7.0, lon 108.0 berada ")
        assert "km di luar batas desa/kelurahan 32.04.05.2001 (lebih dari 5 km)" in lines[2]
        assert lines[-1] == "4 baris: 2 dibuat, 0 diperbarui, 0 tidak berubah, 2 ditolak"
    else:
        assert lines[0] == "row 3: rt must be a number from 1 to 999, not 'x1'"
        assert lines[1].startswith("row 5: village 32.04.07.2009 is not known to the server")
        assert lines[2].startswith("row 4: warning: lat -7.0, lon 108.0 lies ")
        assert lines[-1] == "4 rows: 2 created, 0 updated, 0 unchanged, 2 rejected"
    missing = CliRunner().invoke(cli, ["import-households", str(REGISTERS / "desa_makmur.xlsx")])
    assert missing.exit_code == 1
    assert ("kolom village_code tidak ada" if language == "id" else "missing column village_code") in missing.stderr
