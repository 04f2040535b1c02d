"""Rules that have one home: a second spelling of them anywhere in the product fails here."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = [path for package in ("server", "sync", "forms") for path in sorted((ROOT / package).rglob("*.py"))]

# Each rule: what a second copy looks like, and the one module allowed to spell it.
RULES = {
    # A Kemendagri code pattern (two-digit segments, a village serial from 1xxx to 3xxx) or
    # "code inside area" written as a prefix test: forms.identifiers.Area owns both.
    "area": (re.compile(r"\[123\]|\{2\}\\\.|\\d\{2\}\\\.|startswith\(\w+ \+ \"\.\"\)|\.startswith\(.*\+ \"\.\"\)"),
             {"forms/identifiers.py"}),
    # Sorted-key JSON for hashes and duplicate checks: sync.values owns it (canonical_json, and
    # canonical_bytes spelling its very bytes through orjson: tests/test_jsonio.py).
    "canonical JSON": (re.compile(r"sort_keys\s*=\s*True|OPT_SORT_KEYS"), {"sync/values.py"}),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_is_spelt_once(rule):
    pattern, home = RULES[rule]
    found = []
    for path in PRODUCT:
        name = path.relative_to(ROOT).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line) and name not in home:
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, f"{rule} is spelt outside {sorted(home)}:\n" + "\n".join(found)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_guard_sees_a_second_copy(rule):
    """The patterns must match the copies they exist to catch, or the test above proves nothing."""
    copies = {"area": ['VILLAGE = re.compile(r"^[1-9]\\d\\.\\d{2}\\.\\d{2}\\.[123]\\d{3}$")',
                       'return code == area or code.startswith(area + ".")'],
              "canonical JSON": ['json.dumps(value, sort_keys=True)', 'orjson.dumps(v, option=orjson.OPT_SORT_KEYS)']}
    pattern, _ = RULES[rule]
    assert all(pattern.search(copy) for copy in copies[rule])


# The distribution that provides each top-level module the product imports, where the names differ.
DISTRIBUTIONS = {"argon2": "argon2-cffi", "re2": "google-re2", "jwt": "pyjwt",
                 "flask_jwt_extended": "flask-jwt-extended", "flask_smorest": "flask-smorest",
                 "swagger_ui_bundle": "swagger-ui-bundle", "PIL": "pillow"}


def _declared() -> set[str]:
    text = (ROOT / "setup.cfg").read_text(encoding="utf-8")
    block = text.split("install_requires =", 1)[1].split("\n\n", 1)[0]
    return {re.split(r"[<>=!~ ;\[]", line.strip(), maxsplit=1)[0].lower()
            for line in block.splitlines() if line.strip() and not line.strip().startswith("#")}


def test_every_library_the_product_imports_is_declared_and_every_declared_one_is_used():
    imported = set()
    for path in PRODUCT:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    ours = {"server", "sync", "forms", "__future__"}
    third_party = {name for name in imported - ours if name not in sys.stdlib_module_names}
    needed = {DISTRIBUTIONS.get(name, name).lower().replace("_", "-") for name in third_party}
    # gunicorn serves the app and is started by name, never imported by it; lxml is what openpyxl
    # streams write-only XLSX exports with (without it openpyxl builds them in memory).
    assert needed | {"gunicorn", "lxml"} == _declared()
