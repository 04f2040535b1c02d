"""A small village world for the web pages' tests and screenshots: users, villages, a form, visits, a conflict."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from server.security.passwords import passwords
from server.store import get_store
from server.users import create_user

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
ADMIN_PASSWORD = "correct horse battery staple"
VILLAGE = "32.04.05.2001"  # Cileunyi Kulon (sample villages)
NEIGHBOUR = "32.04.05.2002"
OTHER = "32.04.06.2003"  # another kecamatan
HOSTILE = "<script>alert('x')</script>"

FORM = {
    "settings": {"form_id": "verval_web", "version": "1",
                 "title": {"id": "Verifikasi rumah tangga", "en": "Household check"}, "default_language": "id"},
    "fields": [
        {"type": "text", "name": "head_name", "label": {"id": "Nama kepala keluarga", "en": "Name of the head"},
         "required": True, "save_to": "head_name"},
        {"type": "select_one", "name": "roof", "label": {"id": "Jenis atap", "en": "Roof"}, "list": "roof"},
        {"type": "integer", "name": "members", "label": {"id": "Jumlah anggota", "en": "Members"},
         "constraint": ". > 0 and . < 40"},
        {"type": "text", "name": "note", "label": {"id": "Catatan", "en": "Note"}},
    ],
    "choices": {"roof": [{"name": "genteng", "label": {"id": "Genteng", "en": "Clay tiles"}},
                         {"name": "seng", "label": {"id": "Seng", "en": "Metal sheet"}}]},
}


class Phone:
    """An officer's phone over a Flask test client."""

    def __init__(self, client: Any, username: str) -> None:
        self.client = client
        self.device_id = f"hp-{username}-01"
        reply = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD,
                                                         "device_id": self.device_id})
        assert reply.status_code == 200, reply.get_json()
        self.headers = {"Authorization": f"Bearer {reply.get_json()['access_token']}"}
        self.counter = 0
        self.cursor: str | None = None
        self.fields: dict[str, dict[str, Any]] = {}

    def hlc(self) -> str:
        self.counter += 1
        # the counter carries into the milliseconds past 9999 events, so a big seed stays a valid, rising HLC
        return f"{int(time.time() * 1000) + self.counter // 10000:013d}-{self.counter % 10000:04d}"

    def push(self, events: list[dict[str, Any]]) -> None:
        reply = self.client.post("/api/v1/sync/push", headers=self.headers,
                                 json={"device_id": self.device_id, "hlc": self.hlc(), "events": events})
        assert reply.status_code == 200, reply.get_json()
        assert all(r["status"] == "applied" for r in reply.get_json()["results"]), reply.get_json()

    def pull(self) -> None:
        while True:
            query = {"since": self.cursor} if self.cursor else {}
            body = self.client.get("/api/v1/sync/pull", headers=self.headers, query_string=query).get_json()
            for change in body["changes"]:
                if change["type"] == "household":
                    self.fields[change["id"]] = change["fields"]
            self.cursor = body["next"]
            if not body["has_more"]:
                return

    def visit(self, household: str, answers: dict[str, Any], *, lat: float, lon: float,
              village: str = VILLAGE) -> dict[str, Any]:
        hlc = self.hlc()
        return {"id": str(uuid.uuid4()), "type": "visit", "device_id": self.device_id, "hlc": hlc,
                "form_id": "verval_web", "form_version": "1", "village": village, "household_id": household,
                "geotag": {"lat": lat, "lon": lon, "accuracy_m": 6, "captured_at": "2026-11-22T03:00:00Z"},
                "started_at": "2026-11-22T02:40:00Z", "ended_at": "2026-11-22T03:00:00Z", "answers": answers}

    def edit(self, household: str, writes: dict[str, Any], base: dict[str, list[str]] | None = None) -> dict:
        event = {"id": str(uuid.uuid4()), "type": "household_edit", "device_id": self.device_id, "hlc": self.hlc(),
                 "household_id": household, "village": VILLAGE, "set": writes}
        if base:
            event["base"] = base
        return event


def seed(app: Any, *, visits: int = 0) -> dict[str, Any]:
    """Users, the sample villages, a published form, visits (one flagged outside its village, one whose
    answers hold markup) and one open conflict. ``visits`` adds that many more plain visits."""
    with app.app_context():
        store = get_store()
        hasher = passwords()
        create_user(store, hasher, "admin", ADMIN_PASSWORD, "admin", [], actor="seed")
        create_user(store, hasher, "sari", PASSWORD, "supervisor", ["32.04.05"], actor="seed")
        create_user(store, hasher, "joko", PASSWORD, "supervisor", ["32.04.06"], actor="seed")
        for name, village in (("ani", VILLAGE), ("citra", VILLAGE), ("budi", OTHER)):
            create_user(store, hasher, name, PASSWORD, "officer", [village], actor="seed")
    client = app.test_client()
    admin = client.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}).get_json()
    headers = {"Authorization": f"Bearer {admin['access_token']}"}
    villages = json.loads((ROOT / "server" / "data" / "sample_villages.geojson").read_text())
    assert client.post("/api/v1/villages", json=villages, headers=headers).status_code in (200, 201)
    assert client.post("/api/v1/forms", json=FORM, headers=headers).status_code == 201
    assert client.post("/api/v1/forms/verval_web/versions/1/publish", headers=headers).status_code == 200
    assert client.put("/api/v1/forms/verval_web/assignment", json={"all": True}, headers=headers).status_code == 200

    ani, citra = Phone(client, "ani"), Phone(client, "citra")
    plain, hostile, outside = (str(uuid.uuid4()) for _ in range(3))
    events = [
        ani.visit(plain, {"head_name": "Siti Aminah", "roof": "genteng", "members": 4, "note": "Rumah bersih"},
                  lat=-6.93, lon=107.675),
        ani.visit(hostile, {"head_name": HOSTILE, "roof": "seng", "members": 2, "note": HOSTILE},
                  lat=-6.931, lon=107.676),
        ani.visit(outside, {"head_name": "Dedi Kurnia", "roof": "seng", "members": 3}, lat=-6.80, lon=107.90),
    ]
    ani.push(events)
    for start in range(0, visits, 500):
        ani.push([ani.visit(str(uuid.uuid4()), {"head_name": f"Warga {i}", "members": 1 + i % 5},
                            lat=-6.918 - (i % 100) * 0.0002, lon=107.663 + (i // 100 % 100) * 0.0002)
                  for i in range(start, min(visits, start + 500))])
    # A conflict: both officers change the head's name from the same value, offline.
    disputed = str(uuid.uuid4())
    ani.push([ani.edit(disputed, {"head_name": "Rahmat"})])
    ani.pull()
    citra.pull()
    stamp = ani.fields[disputed]["head_name"]["stamp"]
    ani.push([ani.edit(disputed, {"head_name": "Rahmat Hidayat"}, {"head_name": [stamp]})])
    citra.push([citra.edit(disputed, {"head_name": "Rachmat Hidajat"}, {"head_name": [stamp]})])
    return {"plain": events[0]["id"], "hostile": events[1]["id"], "outside": events[2]["id"],
            "plain_household": plain, "hostile_household": hostile, "disputed_household": disputed}


VILLAGES_CSV = b"name,label\n3204052001,Cileunyi Kulon\n3204052002,Cileunyi Wetan\n"


def xlsform_bytes(*, broken: bool = False, version: str = "2", from_file: bool = False) -> bytes:
    """An XLSForm workbook; ``broken`` names one question twice and uses an undefined choice list;
    ``from_file`` adds a question whose choices come from desa.csv (VILLAGES_CSV)."""
    import io

    import openpyxl

    survey = [["type", "name", "label::Indonesian (id)", "label::English (en)"],
              ["text", "kepala", "Nama kepala keluarga", "Head of household"],
              ["select_one " + ("tidak_ada" if broken else "yatidak"), "bantuan", "Menerima bantuan?", "Receives aid?"],
              ["integer", "kepala" if broken else "jumlah", "Jumlah anggota", "Members"]]
    if from_file:
        survey.append(["select_one_from_file desa.csv", "desa", "Desa", "Village"])
    choices = [["list_name", "name", "label::Indonesian (id)", "label::English (en)"],
               ["yatidak", "1", "Ya", "Yes"], ["yatidak", "2", "Tidak", "No"]]
    settings = [["form_id", "version", "form_title"], ["pendataan_web", version, "Pendataan"]]
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in (("survey", survey), ("choices", choices), ("settings", settings)):
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
