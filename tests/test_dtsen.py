"""DTSEN through HTTP and the CLI: the register's decile (desil) from import to phones and supervisors, and the
village meeting's list of proposals (usulan) as CSV and XLSX, scoped and recorded."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid

import pytest
from click.testing import CliRunner
from http_helpers import login, make_user
from openpyxl import Workbook, load_workbook
from sync_helpers import Device, households_in, listed

from forms.library import library_form
from server.cli import cli
from server.forms_registry import load_library
from server.store import get_store
from server.villages import import_villages

USULAN_VERSION = library_form("usulan_dtsen")["settings"]["version"]

A, B, C = "32.04.05.2001", "32.04.05.2002", "32.04.06.2001"  # two villages of the supervisor's kecamatan, one not
NAMESPACE = uuid.UUID("6f1c8f0e-3b7a-5d2e-9a41-6b756e6a756e")
CENTRES = {A: (-7.0, 107.6), B: (-7.05, 107.65), C: (-6.95, 107.7)}
NAMES = {A: "Sukamaju", B: "Sukaresmi", C: "Cibodas"}


def square(code):
    lat, lon = CENTRES[code]
    ring = [[lon - 0.01, lat - 0.01], [lon + 0.01, lat - 0.01], [lon + 0.01, lat + 0.01], [lon - 0.01, lat + 0.01],
            [lon - 0.01, lat - 0.01]]
    return {"type": "Feature", "properties": {"code": code, "name": NAMES[code]},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


def hid(village, no_kk):
    return str(uuid.uuid5(NAMESPACE, f"{village}/{no_kk}"))


@pytest.fixture
def users(app, users):
    """The usual users, citra an officer of the second village, and the three villages known to the server."""
    make_user(app, "citra", "officer", [B])
    with app.app_context():
        assert import_villages(get_store(), [square(code) for code in CENTRES]).counts["refused"] == 0
    return [*users, "citra"]


@pytest.fixture
def cli_env(app, monkeypatch):
    """The CLI on the same store as the app under test."""
    monkeypatch.setenv("KUNJUNG_DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("KUNJUNG_SECRET_KEY", app.config["SECRET_KEY"])
    monkeypatch.setenv("KUNJUNG_LOAD_LIBRARY_FORMS", "false")


def import_rows(client, headers, rows):
    response = client.post("/api/v1/households/import", headers=headers, json={"rows": rows})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def values(client, headers, household_id):
    response = client.get(f"/api/v1/households/{household_id}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return {path: state["value"] for path, state in response.get_json()["fields"].items()}


SITI, RAHMAT, DEWI = "3204050101200001", "3204050101200002", "3204050202190004"
EXTRACT = [  # a DTSEN extract as the dinas sends it: BPS's decile beside the family
    {"No. KK": SITI, "NIK": "3204054107900001", "Nama Kepala Keluarga": "Siti Aminah", "Alamat": "Jl. Mawar No. 1",
     "RT": "3", "RW": "2", "Kode Desa": A, "Desil": "1"},
    {"No. KK": RAHMAT, "Nama Kepala Keluarga": "Rahmat Hidayat", "Alamat": "Dusun Krajan", "Kode Desa": A,
     "Desil": "Desil 6"},
    {"No. KK": DEWI, "Nama Kepala Keluarga": "Dewi Lestari", "Alamat": "Kp. Babakan", "Kode Desa": B, "Desil": 4},
]


# -- the decile from the register ----------------------------------------------------------------------
def test_a_dtsen_extract_brings_each_households_decile_to_phones_and_supervisors(client, users):
    admin = login(client, "admin")
    report = import_rows(client, admin, EXTRACT)
    assert (report["created"], report["rejected"], report["ignored_columns"]) == (3, 0, [])
    # the officer's phone pulls it like any household field, stamped by the server
    pulled = households_in(Device(client, "ani").pull_all())
    assert pulled[hid(A, SITI)]["fields"]["desil"]["value"] == 1
    assert pulled[hid(A, RAHMAT)]["fields"]["desil"]["value"] == 6
    assert pulled[hid(A, SITI)]["fields"]["desil"]["stamp"].split("/")[1].startswith("server-")
    assert hid(B, DEWI) not in pulled  # another village's decile stays off ani's phone
    # the supervisor sees it in the household list, the household and its history export
    supervisor = login(client, "supervisor")
    listing = {h["id"]: h["fields"] for h in listed(client, "/api/v1/households", supervisor)}
    assert {household: fields["desil"]["value"] for household, fields in listing.items()} == {
        hid(A, SITI): 1, hid(A, RAHMAT): 6, hid(B, DEWI): 4}
    assert values(client, supervisor, hid(B, DEWI))["desil"] == 4
    history = client.get("/api/v1/exports/households-history.csv", headers=supervisor)
    assert history.status_code == 200
    rows = list(csv.DictReader(io.StringIO(history.get_data(as_text=True).lstrip("\ufeff"))))
    assert {(r["household_id"], r["after"]) for r in rows if r["field"] == "desil"} == {
        (hid(A, SITI), "1"), (hid(A, RAHMAT), "6"), (hid(B, DEWI), "4")}


def test_a_decile_outside_1_to_10_costs_only_its_row(client, users):
    admin = login(client, "admin")
    rows = [{"no_kk": f"32040501012000{n:02d}", "nama": f"Kepala {n}", "kode_desa": A, "decile": value}
            for n, value in enumerate(["10", "11", "0", "5-10", "tiga", "2.5", "", "03"], start=1)]
    report = import_rows(client, admin, rows)
    assert (report["created"], report["rejected"]) == (3, 5)
    problems = {p["row"]: p["reasons"] for p in report["problems"]}
    assert problems == {n: [f"desil must be a whole number from 1 to 10, not {value!r}"]
                        for n, value in [(2, "11"), (3, "0"), (4, "5-10"), (5, "tiga"), (6, "2.5")]}
    assert values(client, admin, hid(A, "3204050101200001"))["desil"] == 10
    assert "desil" not in values(client, admin, hid(A, "3204050101200007"))  # no decile given: none kept
    assert values(client, admin, hid(A, "3204050101200008"))["desil"] == 3


def test_the_next_extract_moves_a_household_to_another_decile_and_an_unchanged_one_changes_nothing(client, users):
    admin = login(client, "admin")
    import_rows(client, admin, EXTRACT)
    ani = Device(client, "ani")
    ani.pull_all()
    again = import_rows(client, admin, EXTRACT)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3)
    assert [c for c in ani.pull_all() if c["type"] == "household"] == []
    # BPS ranks Rahmat's family again: decile 6 becomes 3; nothing else in the extract changed
    moved = [dict(row) for row in EXTRACT]
    moved[1]["Desil"] = "3"
    report = import_rows(client, admin, moved)
    assert (report["updated"], report["unchanged"], report["conflicts"]) == (1, 2, 0)
    [change] = [c for c in ani.pull_all() if c["type"] == "household"]
    assert change["id"] == hid(A, RAHMAT)
    assert change["fields"]["desil"]["value"] == 3
    assert listed(client, "/api/v1/conflicts", admin) == []  # the new ranking replaces the old, no conflict
    history = client.get(f"/api/v1/households/{hid(A, RAHMAT)}/history", headers=admin).get_json()["history"]
    assert [(c["before"], c["after"]) for entry in history for c in entry["changes"] if c["field"] == "desil"] == [
        (None, 6), (6, 3)]


def test_an_officers_phone_cannot_change_the_decile_but_still_corrects_the_address(client, users):
    admin = login(client, "admin")
    import_rows(client, admin, EXTRACT)
    ani = Device(client, "ani")
    ani.pull_all()
    siti = hid(A, SITI)
    reply = ani.push([ani.edit(siti, {"desil": 5}, ani.base(siti, "desil")),
                      ani.edit(siti, {"desil": None}, ani.base(siti, "desil")),
                      ani.edit(siti, {"address": "Jl. Mawar No. 1A"}, ani.base(siti, "address"))])
    assert [r["status"] for r in reply["results"]] == ["rejected", "rejected", "applied"]
    assert reply["results"][0]["code"] == "invalid"
    assert "set.desil" in reply["results"][0]["errors"]
    assert "register import only" in reply["results"][1]["errors"]["set.desil"][0]
    now = values(client, admin, siti)
    assert (now["desil"], now["address"]) == (1, "Jl. Mawar No. 1A")


def test_cli_imports_an_xlsx_extract_with_number_cells_and_reports_a_bad_decile(client, users, cli_env, tmp_path):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["no_kk", "nama_kepala_keluarga", "kode_desa", "DESIL"])
    sheet.append([SITI, "Siti Aminah", A, 2])
    sheet.append([RAHMAT, "Rahmat Hidayat", A, 12])
    sheet.append([DEWI, "Dewi Lestari", B, 7.0])
    path = tmp_path / "dtsen_sukamaju.xlsx"
    workbook.save(path)
    result = CliRunner().invoke(cli, ["import-households", str(path)])
    assert result.exit_code == 1
    assert "row 3: desil must be a whole number from 1 to 10, not '12'" in result.stdout
    assert "3 rows: 2 created, 0 updated, 0 unchanged, 1 rejected" in result.stdout
    admin = login(client, "admin")
    assert values(client, admin, hid(A, SITI))["desil"] == 2
    assert values(client, admin, hid(B, DEWI))["desil"] == 7


# -- the village meeting's list of proposals ---------------------------------------------------------------
FILED = (dt.date.today() - dt.timedelta(days=2)).isoformat()


def proposal(device, village, household_id, **answers):
    lat, lon = CENTRES[village]
    when = f"{FILED}T03:00:00Z"
    base = {"proposal_date": FILED, "proposal_source": "operator_desa", "rt": "001", "rw": "001", "member_count": 3,
            "house_location": {"lat": lat + 0.001, "lon": lon + 0.001, "accuracy_m": 5},
            "house_photo": "rumah.jpg", "kk_photo": "kk.jpg", "ktp_photo": "ktp.jpg"}
    return {"id": str(uuid.uuid4()), "type": "visit", "device_id": device.device_id, "hlc": device.hlc(),
            "form_id": "usulan_dtsen", "form_version": USULAN_VERSION, "village": village, "household_id": household_id,
            "geotag": {"lat": lat, "lon": lon, "accuracy_m": 6, "captured_at": when}, "started_at": when,
            "ended_at": when, "answers": {**base, **answers}}


def new_family(device, village, no_kk, name, **answers):
    return proposal(device, village, str(uuid.uuid4()), proposal_type="baru", no_kk=no_kk,
                    head_nik="3204051201820001", head_name=name, address="Kp. Sukamaju No. 12",
                    new_conditions=["tidak_bekerja", "rumah_tidak_layak"],
                    new_reason="Buruh tani harian, rumah berdinding bilik bambu dan bocor.", **answers)


@pytest.fixture
def proposals(app, client, users):
    """The register with deciles, the proposal form published, and proposals filed in three villages;
    the supervisor approved one and rejected another."""
    admin = login(client, "admin")
    import_rows(client, admin, EXTRACT)
    with app.app_context():
        [outcome] = load_library(get_store(), definitions=[library_form("usulan_dtsen")])
    assert outcome.published
    ani, citra, budi = Device(client, "ani"), Device(client, "citra"), Device(client, "budi")
    filed = {
        "objection": (ani, proposal(ani, A, hid(A, RAHMAT), proposal_type="sanggahan", no_kk=RAHMAT,
                                    head_nik="3204051507750003", head_name="Rahmat Hidayat", address="Dusun Krajan",
                                    rt="005", proposal_source="musyawarah", objection_reason="mampu",
                                    objection_explanation="Memiliki mobil dan toko bangunan di jalan desa.")),
        "correction": (ani, proposal(ani, A, hid(A, SITI), proposal_type="perbaikan", no_kk=SITI,
                                     head_nik="3204054107900001", head_name="Siti Aminah", address="Jl. Mawar No. 1",
                                     rt="003", rw="002", correction_fields=["anggota_keluarga", "desil"],
                                     correction_details="Anak ketiga lahir Januari belum tercatat; desil 1 benar.")),
        "new_b": (ani, new_family(ani, A, "3204050101200009", "=HYPERLINK(\"http://x.invalid\")", rt="002")),
        "new_a": (ani, new_family(ani, A, "3204050101200010", "Agus Salim", rt="002")),
        "other_village": (citra, new_family(citra, B, "3204050202190011", "Wayan Sudarta")),
        "outside": (budi, new_family(budi, C, "3204060303180012", "Yayan Ruhiyat")),
    }
    for device, event in filed.values():
        result = device.push([event])["results"][0]
        assert result["status"] == "applied", result
        # the photos' bytes are not part of this scenario: the only flag says the device never listed them
        assert [flag["code"] for flag in result.get("flags") or ()] == ["attachments_unlisted"], result
    supervisor = login(client, "supervisor")
    for key, state, comment in (("objection", "approved", "Disepakati musdes 12 Mei"),
                                ("correction", "rejected", "Sudah benar di SIKS-NG")):
        response = client.post(f"/api/v1/visits/{filed[key][1]['id']}/review", headers=supervisor,
                               json={"id": str(uuid.uuid4()), "state": state, "comment": comment})
        assert response.status_code == 200, response.get_json()
    return {key: event for key, (_, event) in filed.items()}


def read_csv(response):
    assert response.status_code == 200, response.get_json()
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))


def test_the_village_meeting_gets_its_proposals_by_name_and_address_with_their_review_state(client, proposals):
    supervisor = login(client, "supervisor")
    response = client.get("/api/v1/exports/proposals.csv", headers=supervisor)
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "kunjung-usulan-dtsen-" in response.headers["Content-Disposition"]
    header, *rows = read_csv(response)
    assert header[:9] == ["No.", "Kode desa", "Desa/kelurahan", "Jenis usulan", "Tanggal usulan",
                          "Nama kepala keluarga", "NIK kepala keluarga", "No. KK", "Alamat"]
    table = [dict(zip(header, row, strict=True)) for row in rows]
    # village by village; in each: new households, corrections, objections, by RT, RW and name
    assert [(r["No."], r["Kode desa"], r["Jenis usulan"], r["Nama kepala keluarga"]) for r in table] == [
        ("1", A, "Usulan keluarga baru", "'=HYPERLINK(\"http://x.invalid\")"),  # neutralised, not a formula
        ("2", A, "Usulan keluarga baru", "Agus Salim"),
        ("3", A, "Perbaikan data", "Siti Aminah"),
        ("4", A, "Sanggahan", "Rahmat Hidayat"),
        ("1", B, "Usulan keluarga baru", "Wayan Sudarta"),
    ]  # budi's village is outside the supervisor's kecamatan
    objection, correction, wayan = table[3], table[2], table[4]
    assert objection["Desa/kelurahan"] == "Sukamaju"
    assert (objection["Alamat"], objection["RT"], objection["RW"]) == ("Dusun Krajan", "005", "001")
    assert objection["Alasan"] == "Keluarga mampu (tidak layak menerima bantuan)"
    assert objection["Uraian"] == "Memiliki mobil dan toko bangunan di jalan desa."
    assert objection["Sumber usulan"] == "Musyawarah desa/kelurahan"
    assert objection["Desil DTSEN"] == "6"  # the decile the register gave Rahmat's household
    assert (objection["Status pemeriksaan"], objection["Catatan pemeriksa"], objection["Diperiksa oleh"]) == (
        "Disetujui", "Disepakati musdes 12 Mei", "supervisor")
    assert correction["Alasan"] == "Anggota keluarga (lahir, meninggal, pindah, pecah KK); " \
                                   "Peringkat desil tidak sesuai kondisi"
    assert (correction["Status pemeriksaan"], correction["Desil DTSEN"]) == ("Ditolak", "1")
    assert (wayan["Status pemeriksaan"], wayan["Desil DTSEN"], wayan["Dicatat oleh"]) == (
        "Belum diperiksa", "", "citra")
    assert wayan["Alasan"] == "Kepala keluarga tidak bekerja atau penghasilan tidak tetap; Rumah tidak layak huni"
    assert wayan["ID kunjungan"] == proposals["other_village"]["id"]

    # recorded as an export before the first byte: who, which filters, how many rows
    records = client.get("/api/v1/exports", headers=login(client, "admin")).get_json()
    [record] = [r for r in records if r["format"] == "proposals_csv"]
    assert (record["actor"], record["role"], record["status"], record["rows"]) == (
        "supervisor", "supervisor", "completed", 5)
    assert record["id"] == response.headers["X-Export-Id"]
    assert record["filters"] == {"labels": "id", "masked": True}


def test_the_list_as_a_workbook_has_a_sheet_per_village_and_english_headers_on_request(client, proposals):
    response = client.get("/api/v1/exports/proposals.xlsx", headers=login(client, "admin"),
                          query_string={"labels": "en"})
    assert response.status_code == 200
    workbook = load_workbook(io.BytesIO(response.get_data()), read_only=True)
    assert workbook.sheetnames == ["usulan", f"{A} Sukamaju", f"{B} Sukaresmi", f"{C} Cibodas"]
    index = [list(row) for row in workbook["usulan"].iter_rows(values_only=True)]
    assert ["exported_by", "admin"] in index
    assert ["filter_labels", "en"] in index
    assert [f"{A} Sukamaju", A, "Sukamaju", 4] in index
    sheet = [list(row) for row in workbook[f"{A} Sukamaju"].iter_rows(values_only=True)]
    header, *rows = sheet
    assert header[:4] == ["No.", "Village code", "Village", "Kind of proposal"]
    table = [dict(zip(header, row, strict=True)) for row in rows]
    assert [r["Kind of proposal"] for r in table] == ["New household", "New household", "Correction of data",
                                                     "Objection"]
    assert table[3]["Reason"] == "The family is well off (not eligible)"
    assert (table[3]["Review state"], table[3]["DTSEN decile"], table[3]["Family members"]) == ("Approved", 6, 3)
    assert table[0]["Head of the family"] == "'=HYPERLINK(\"http://x.invalid\")"
    assert (table[0]["Latitude"], table[0]["Longitude"]) == (-6.999, 107.601)  # the house, not the officer
    workbook.close()
    records = client.get("/api/v1/exports", headers=login(client, "admin")).get_json()
    [record] = [r for r in records if r["format"] == "proposals_xlsx"]
    assert (record["actor"], record["status"], record["rows"]) == ("admin", "completed", 6)


def test_the_meeting_on_objections_still_pending_gets_only_those(client, proposals):
    supervisor = login(client, "supervisor")
    header, *rows = read_csv(client.get("/api/v1/exports/proposals.csv", headers=supervisor,
                                        query_string={"kind": "baru", "review": "pending", "village": A}))
    assert [row[header.index("Nama kepala keluarga")] for row in rows] == [
        "'=HYPERLINK(\"http://x.invalid\")", "Agus Salim"]
    header, *rows = read_csv(client.get("/api/v1/exports/proposals.csv", headers=supervisor,
                                        query_string={"kind": "sanggahan", "review": "pending"}))
    assert rows == []  # the only objection was approved
    header, *rows = read_csv(client.get("/api/v1/exports/proposals.csv", headers=supervisor,
                                        query_string={"from": (dt.date.today() + dt.timedelta(days=1)).isoformat()}))
    assert rows == []
    bad = client.get("/api/v1/exports/proposals.csv", headers=supervisor, query_string={"kind": "semua"})
    assert bad.status_code == 422
    assert "kind" in bad.get_json()["errors"]


def test_codes_for_a_machine_name_columns_by_field_and_keep_choice_codes(client, proposals):
    header, *rows = read_csv(client.get("/api/v1/exports/proposals.csv", headers=login(client, "supervisor"),
                                        query_string={"labels": "codes", "village": A}))
    assert header[:4] == ["no", "village", "village_name", "proposal_type"]
    assert "desil" in header
    table = [dict(zip(header, row, strict=True)) for row in rows]
    assert [(r["proposal_type"], r["review_state"]) for r in table] == [
        ("baru", "pending"), ("baru", "pending"), ("perbaikan", "rejected"), ("sanggahan", "approved")]
    assert table[2]["reason"] == "anggota_keluarga desil"


def test_the_list_is_scoped_like_every_export(client, proposals):
    supervisor = login(client, "supervisor")
    for path in ("/api/v1/exports/proposals.csv", "/api/v1/exports/proposals.xlsx"):
        outside = client.get(path, headers=supervisor, query_string={"village": C})
        assert outside.status_code == 404
        assert outside.get_json()["code"] == "not_found"
        assert client.get(path, headers=login(client, "ani")).status_code == 403
        assert client.get(path).status_code == 401
    records = client.get("/api/v1/exports", headers=login(client, "admin")).get_json()
    assert [r for r in records if r["format"].startswith("proposals")] == []  # refused exports are not started


def test_a_proposal_sent_back_and_filed_again_is_listed_once_as_revised(client, proposals):
    supervisor = login(client, "supervisor")
    first = proposals["new_a"]
    assert client.post(f"/api/v1/visits/{first['id']}/review", headers=supervisor,
                       json={"id": str(uuid.uuid4()), "state": "needs_revision",
                             "comment": "Lengkapi alamat"}).status_code == 200
    ani = Device(client, "ani")
    revised = {**first, "id": str(uuid.uuid4()), "hlc": ani.hlc(), "device_id": ani.device_id,
               "supersedes": first["id"], "answers": {**first["answers"], "address": "Kp. Sukamaju No. 12, Gg. Haji"}}
    assert ani.push([revised])["results"][0]["status"] == "applied"
    header, *rows = read_csv(client.get("/api/v1/exports/proposals.csv", headers=supervisor,
                                        query_string={"village": A, "labels": "codes"}))
    agus = [dict(zip(header, row, strict=True)) for row in rows if row[header.index("head_name")] == "Agus Salim"]
    assert [(r["visit_id"], r["address"], r["review_state"]) for r in agus] == [
        (revised["id"], "Kp. Sukamaju No. 12, Gg. Haji", "pending")]


def test_the_meetings_list_reads_the_same_from_either_store(backend_app):
    client = backend_app.test_client()
    make_user(backend_app, "admin", "admin")
    make_user(backend_app, "ani", "officer", [A])
    with backend_app.app_context():
        store = get_store()
        assert import_villages(store, [square(A)]).counts["refused"] == 0
        assert [o.published for o in load_library(store, definitions=[library_form("usulan_dtsen")])] == [True]
    admin = login(client, "admin")
    import_rows(client, admin, EXTRACT[:2])
    ani = Device(client, "ani")
    filed = [new_family(ani, A, "3204050101200009", "Agus Salim"),
             proposal(ani, A, hid(A, SITI), proposal_type="perbaikan", no_kk=SITI, head_nik="3204054107900001",
                      head_name="Siti Aminah", address="Jl. Mawar No. 1", correction_fields=["alamat"],
                      correction_details="Alamat pindah ke Jl. Melati No. 4 sejak Februari.")]
    assert [r["status"] for r in ani.push(filed)["results"]] == ["applied", "applied"]
    header, *rows = read_csv(client.get("/api/v1/exports/proposals.csv", headers=admin,
                                        query_string={"labels": "codes"}))
    table = [dict(zip(header, row, strict=True)) for row in rows]
    assert [(r["no"], r["proposal_type"], r["head_name"], r["desil"]) for r in table] == [
        ("1", "baru", "Agus Salim", ""), ("2", "perbaikan", "Siti Aminah", "1")]
