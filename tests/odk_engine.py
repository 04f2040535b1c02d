"""Running ODK's own form engine (@getodk/xforms-engine under Node and jsdom, tests/odk/) on an XForm."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from forms.xform import NEW_MEMBERS, roster_fields, saves_household

ODK_DIR = Path(__file__).parent / "odk"
RUNNER = ODK_DIR / "fill.mjs"


def engine_available() -> bool:
    return shutil.which("node") is not None and (ODK_DIR / "node_modules" / "@getodk" / "xforms-engine").is_dir()


def needs_engine(test: Callable[..., Any]) -> Callable[..., Any]:
    """A test that drives ODK's form engine. Without the engine it fails rather than skips: the engine is
    the real client these tests stand on, and ./scripts/test installs it."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> Any:
        if not engine_available():
            pytest.fail("ODK's form engine is not installed: ./scripts/test installs it into tests/odk "
                        "(it needs Node 20 and npm)")
        return test(*args, **kwargs)

    return run


def fill(xform: bytes | str, answers: dict[str, Any] | None = None, *, repeats: dict[str, int] | None = None,
         attachments: dict[str, str] | None = None, language: str | None = None) -> dict[str, Any]:
    """Load `xform`, add repeat rows, set answers by node reference, and return what the engine made:
    `{"status", "xml" (the submission), "files", "problems", "tree", "violations"}`."""
    job = {"xform": xform.decode("utf-8") if isinstance(xform, bytes) else xform, "answers": answers or {},
           "repeats": repeats or {}, "attachments": attachments or {}, "language": language}
    done = subprocess.run(["node", str(RUNNER)], input=json.dumps(job).encode(), capture_output=True,
                          timeout=120, cwd=ODK_DIR, check=False)
    if done.returncode != 0:
        raise AssertionError(f"the ODK engine failed: {done.stderr.decode(errors='replace')[-3000:]}")
    return json.loads(done.stdout)


def leaves(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The engine's nodes by reference."""
    return {node["ref"]: node for node in result["tree"]}


SAMPLE_POINT = {"latitude": -6.93, "longitude": 107.675, "altitude": 700, "accuracy": 5}


def sample_answers(definition, overrides: dict[str, Any] | None = None, rows: int = 2
                   ) -> tuple[dict[str, Any], dict[str, int]]:
    """Answers for every question of a kunjung definition, keyed by the XForm node reference, and the
    rows to add to each repeat: what an officer tapping through the form in Collect would give."""
    overrides = overrides or {}
    answers: dict[str, Any] = {}
    repeats: dict[str, int] = {}
    choices = definition.choices
    roster = definition.roster if roster_fields(definition) and saves_household(definition) else None

    def value(spec):
        if spec["name"] in overrides:
            return overrides[spec["name"]]
        kind = spec["type"]
        if kind == "text":
            return f"Contoh {spec['name']}"
        if kind == "integer":
            return 1
        if kind == "decimal":
            return 1.5
        if kind == "date":
            return "2026-11-22"
        if kind == "datetime":
            return "2026-11-22T10:00:00.000+07:00"
        if kind == "geopoint":
            return SAMPLE_POINT
        if kind == "select_one":
            return choices[spec["list"]][0]["name"]
        if kind == "select_multiple":
            return [choices[spec["list"]][-1]["name"]]
        return None

    def walk(fields, prefix):
        for spec in fields:
            kind = spec["type"]
            if kind == "group":
                walk(spec.get("fields") or (), f"{prefix}/{spec['name']}")
            elif kind == "repeat":
                if spec["name"] == roster:
                    # the roster's rows are the household's known members plus the new ones asked for
                    answers[f"{prefix}/{NEW_MEMBERS}"] = rows
                else:
                    repeats[f"{prefix}/{spec['name']}"] = rows
                for row in range(1, rows + 1):
                    walk(spec.get("fields") or (), f"{prefix}/{spec['name']}[{row}]")
            elif kind not in ("note", "calculate") and not spec.get("calculation"):
                answer = value(spec)
                if answer is not None:
                    answers[f"{prefix}/{spec['name']}"] = answer

    walk(definition.data["fields"], f"/{definition.form_id}")
    return answers, repeats
