"""Building sync events and talking to the sync endpoints in HTTP tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

from http_helpers import login

VILLAGE = "32.04.05.2001"
OTHER_VILLAGE = "32.04.06.2001"


class Device:
    """An officer's phone: its own id, token and clock, and helpers to push and pull."""

    def __init__(self, client: Any, username: str, device_id: str | None = None, clock_offset_ms: int = 0):
        self.client = client
        self.username = username
        self.device_id = device_id or f"phone-{username}-{uuid.uuid4().hex[:6]}"
        self.headers = login(client, username, device_id=self.device_id)
        self.offset = clock_offset_ms
        self.counter = 0
        self.cursor: str | None = None
        self.known: dict[str, dict[str, Any]] = {}

    def base(self, household_id: str, *paths: str) -> dict[str, list[str]]:
        """What this device last pulled for those fields: the stamps a new edit supersedes."""
        fields = self.known.get(household_id, {}).get("fields", {})
        out = {}
        for path in paths:
            state = fields.get(path)
            if state:
                out[path] = sorted({h["stamp"] for h in state.get("heads", [])} | set(state.get("head_stamps", []))
                                   | {state["stamp"]})
        return out

    def hlc(self, shift_ms: int = 0) -> str:
        self.counter += 1
        ms = int(time.time() * 1000) + self.offset + shift_ms
        return f"{ms:013d}-{self.counter % 10000:04d}"

    def edit(self, household_id: str, writes: dict[str, Any], base: dict[str, list[str]] | None = None,
             village: str = VILLAGE, **extra: Any) -> dict[str, Any]:
        event = {"id": str(uuid.uuid4()), "type": "household_edit", "device_id": self.device_id,
                 "hlc": self.hlc(), "household_id": household_id, "village": village, "set": writes}
        if base:
            event["base"] = base
        event.update(extra)
        return event

    def push(self, events: list[dict[str, Any]], expect: int = 200) -> dict[str, Any]:
        response = self.client.post("/api/v1/sync/push", headers=self.headers,
                                    json={"device_id": self.device_id, "hlc": self.hlc(), "events": events})
        assert response.status_code == expect, response.get_json()
        return response.get_json()

    def pull_all(self, limit: int = 500) -> list[dict[str, Any]]:
        changes: list[dict[str, Any]] = []
        while True:
            query = {"limit": limit}
            if self.cursor:
                query["since"] = self.cursor
            response = self.client.get("/api/v1/sync/pull", headers=self.headers, query_string=query)
            assert response.status_code == 200, response.get_json()
            body = response.get_json()
            changes.extend(body["changes"])
            self.known.update(households_in(body["changes"]))
            self.cursor = body["next"]
            if not body["has_more"]:
                return changes


def statuses(reply: dict[str, Any]) -> list[str]:
    return [result["status"] for result in reply["results"]]


def households_in(changes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The latest pulled state of each household."""
    latest: dict[str, dict[str, Any]] = {}
    for change in changes:
        if change["type"] == "household":
            latest[change["id"]] = change
    return latest


def listed(client: Any, path: str, headers: dict[str, str], **query: Any) -> list[dict[str, Any]]:
    """Every item of a paged list (``{"items", "next"}``), following ``next`` to the last page."""
    items: list[dict[str, Any]] = []
    after = None
    while True:
        response = client.get(path, headers=headers, query_string={**query, **({"after": after} if after else {})})
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert set(body) == {"items", "next"}, body
        items.extend(body["items"])
        after = body["next"]
        if after is None:
            return items


#: A form declaring the household fields the sync scenarios edit: a household edit may write only
#: fields some published form (or the register, or the status marks) declares.
HOUSEHOLD_FORM = {
    "settings": {"form_id": "rumah_tangga_uji", "version": "1",
                 "title": {"id": "Rumah tangga (uji)", "en": "Household (test)"}, "default_language": "id"},
    "fields": [
        {"type": "text", "name": "head_name", "label": {"id": "Nama kepala keluarga", "en": "Head of family"},
         "save_to": "head_name"},
        {"type": "text", "name": "notes", "label": {"id": "Catatan", "en": "Notes"}, "save_to": "notes"},
        {"type": "decimal", "name": "land_area_ha", "label": {"id": "Luas lahan (ha)", "en": "Land (ha)"},
         "save_to": "land_area_ha"},
        {"type": "repeat", "name": "members", "label": {"id": "Anggota", "en": "Members"}, "save_to": "members",
         "fields": [{"type": "text", "name": "member_name", "label": {"id": "Nama", "en": "Name"}, "save_to": "name"},
                    {"type": "text", "name": "relation", "label": {"id": "Hubungan", "en": "Relation"},
                     "save_to": "relation"}]},
    ],
    "choices": {},
}


def publish_household_form(client: Any) -> None:
    """Publish HOUSEHOLD_FORM to every village, as an admin would (the ``users`` fixture's admin)."""
    admin = login(client, "admin")
    form_id = HOUSEHOLD_FORM["settings"]["form_id"]
    assert client.post("/api/v1/forms", json=HOUSEHOLD_FORM, headers=admin).status_code == 201
    assert client.post(f"/api/v1/forms/{form_id}/versions/1/publish", headers=admin).status_code == 200
    assert client.put(f"/api/v1/forms/{form_id}/assignment", json={"all": True}, headers=admin).status_code == 200
