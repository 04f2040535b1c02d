"""sync.values.canonical_bytes spells exactly what sync.values.canonical_json spells (every event hash)."""

from __future__ import annotations

import json
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.eventlog import body_hash
from server.jsonio import loads
from sync.values import canonical_bytes, canonical_json

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
NUMBERS = st.one_of(st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
                    st.floats(min_value=-1e-3, max_value=1e-3), st.floats(min_value=1e15, max_value=1e17))
JSON = st.recursive(st.none() | st.booleans() | NUMBERS | TEXT,
                    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=5),
                    max_leaves=40)


@settings(max_examples=600, deadline=None)
@given(JSON)
def test_canonical_bytes_are_canonical_json_for_any_json_value(value):
    assert canonical_bytes(value) == canonical_json(value).encode("utf-8")


def test_every_character_as_text_and_as_key_is_spelt_alike():
    everything = "".join(chr(cp) for cp in range(0x110000) if not 0xD800 <= cp < 0xE000)
    pieces = [everything[i:i + 64] for i in range(0, len(everything), 64)]
    value = {piece: [piece, len(piece)] for piece in pieces}
    assert canonical_bytes(value) == canonical_json(value).encode("utf-8")


def test_floats_of_every_magnitude_are_spelt_alike():
    floats = [struct.unpack("<d", struct.pack("<Q", (exponent << 52) | 0x5A5A5A5A5A5A5))[0]
              for exponent in range(1, 2047)]
    values = [f for f in floats if math.isfinite(f)] + [5e-324, 1e-5, 1e-4, 1e16, 1e15, -0.0, 0.1 + 0.2]
    for value in values:
        assert canonical_bytes({"x": value}) == canonical_json({"x": value}).encode("utf-8"), value


def test_what_canonical_json_refuses_is_refused_alike():
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="JSON compliant"):
            canonical_json([value])
        with pytest.raises(ValueError, match="JSON compliant"):
            canonical_bytes([value])
    assert canonical_bytes([2**70]) == canonical_json([2**70]).encode("utf-8")  # beyond orjson's integers


def test_a_body_hash_is_the_sha256_of_its_canonical_json():
    import hashlib

    body = {"id": "e1", "answers": {"x": 1e-7, "nama": "Siti Aminah", "n": 3, "ok": None}, "geotag": {"lat": -6.93}}
    assert body_hash(body) == hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


@pytest.mark.parametrize("text", [
    b'{"n": 123456789012345678901234567890}', b'[-99999999999999999999]', b'{"a": [1, {"b": 18446744073709551616}]}',
    b'{"s": "1234567890123456789", "n": 1}', b'{"n": 123456789012345678}', b'{"f": 1.5e300, "n": 0.0000001}',
])
def test_a_body_is_read_as_the_standard_library_reads_it_integers_beyond_64_bits_exactly(text):
    assert loads(text) == json.loads(text)
    assert canonical_json(loads(text)) == canonical_json(json.loads(text))
