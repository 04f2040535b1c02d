"""A push's answer is what its schema dumps: the compiled dump (server.api.base.compiled_dump) against marshmallow."""

from __future__ import annotations

import marshmallow as ma
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.api.base import compiled_dump
from server.api.sync import PushReplySchema, dump_push_reply

TEXT = st.text(max_size=8)
# What a verdict's values may be, and what a careless caller might put there: numbers where text is
# declared, None, keys the schema does not declare (a flag's "value", a constraint's "constraint").
LOOSE = st.one_of(st.none(), TEXT, st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False),
                  st.booleans())
TEXTS = st.lists(st.one_of(st.none(), TEXT, st.integers(0, 9)), max_size=3)
FLAG = st.fixed_dictionaries({}, optional={
    "code": LOOSE, "path": LOOSE, "message": LOOSE, "paths": st.one_of(st.none(), TEXTS),
    "distance_m": st.one_of(st.none(), st.integers(0, 10**6), st.floats(0, 1e6)), "value": LOOSE, "constraint": TEXT})
ERRORS = st.dictionaries(st.one_of(TEXT, st.integers(0, 3)), st.one_of(st.none(), TEXTS), max_size=3)
RESULT = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.none(), TEXT), "status": st.sampled_from(["applied", "duplicate", "rejected"]),
    "code": st.one_of(st.none(), st.sampled_from(["clock_skew", "stale_base", "invalid", "id_reused"])),
    "message": LOOSE, "errors": st.one_of(st.none(), ERRORS), "server_time": st.one_of(st.none(), TEXT),
    "flags": st.one_of(st.none(), st.lists(st.one_of(st.none(), FLAG), max_size=3)), "hlc": TEXT})
REPLY = st.fixed_dictionaries({"results": st.lists(RESULT, max_size=4), "server_hlc": TEXT},
                              optional={"extra": TEXT})


@settings(max_examples=200, deadline=None)
@given(REPLY)
def test_the_phone_gets_the_push_answer_the_schema_would_dump(reply):
    expected = PushReplySchema().dump(reply)
    got = dump_push_reply(reply)
    assert got == expected
    # the same keys in the same order, at every level a phone reads
    assert list(got) == list(expected)
    for mine, theirs in zip(got["results"], expected["results"], strict=True):
        assert list(mine) == list(theirs)
        for flag, their_flag in zip(mine.get("flags") or [], theirs.get("flags") or [], strict=True):
            assert (flag is None and their_flag is None) or list(flag) == list(their_flag)


def test_an_outside_village_flag_keeps_its_distance_and_drops_what_the_schema_does_not_declare():
    reply = {"results": [{"id": "v1", "status": "applied", "flags": [
        {"code": "outside_village", "message": "Di luar desa", "distance_m": 1234, "path": "house_location"},
        {"code": "unknown_choice", "path": "floor", "message": "bukan pilihan", "value": "9"}]}],
        "server_hlc": "1763790000000-0001"}
    assert dump_push_reply(reply) == {"results": [{"id": "v1", "status": "applied", "flags": [
        {"code": "outside_village", "path": "house_location", "message": "Di luar desa", "distance_m": 1234.0},
        {"code": "unknown_choice", "path": "floor", "message": "bukan pilihan"}]}],
        "server_hlc": "1763790000000-0001"}
    assert isinstance(dump_push_reply(reply)["results"][0]["flags"][0]["distance_m"], float)


class _WithHook(ma.Schema):
    name = ma.fields.String()

    @ma.post_dump
    def shout(self, data, **kwargs):
        return {key: value.upper() for key, value in data.items()}


class _WithBoolean(ma.Schema):
    confirmed = ma.fields.Boolean()


class _WithRenamedAccessor(ma.Schema):
    items = ma.fields.List(ma.fields.String())


@pytest.mark.parametrize("schema", [_WithHook(), _WithBoolean(), _WithRenamedAccessor()])
def test_a_schema_the_compiler_cannot_reproduce_is_refused_when_compiled(schema):
    # post_dump hooks, Boolean's truthy sets and a field named like a dict method ("items", which
    # marshmallow would read with getattr when missing) are marshmallow's own: refused, not guessed.
    with pytest.raises(TypeError):
        compiled_dump(schema)
