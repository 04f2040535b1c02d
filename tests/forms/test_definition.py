"""Tests of form-definition validation: every rule reports its path, and the Definition helpers."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forms.definition import (
    Definition,
    DefinitionError,
    check_new_version,
    definition_hash,
    validate_definition,
)


def errors_of(data: Any) -> dict[str, list[str]]:
    with pytest.raises(DefinitionError) as info:
        validate_definition(data)
    return info.value.errors


def assert_error(data: Any, path: str, words: str) -> None:
    errors = errors_of(data)
    assert path in errors, errors
    assert any(words in message for message in errors[path]), errors[path]


def minimal(*fields: dict[str, Any], choices: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "settings": {
            "form_id": "f",
            "version": "1",
            "title": {"id": "Formulir", "en": "Form"},
            "default_language": "id",
        },
        "fields": list(fields) or [text("a")],
    }
    if choices is not None:
        data["choices"] = choices
    return data


def text(name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "name": name, "label": {"id": name, "en": name}, **extra}


def field(kind: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "name": name, "label": {"id": name, "en": name}, **extra}


YESNO = {
    "yesno": [{"name": "1", "label": {"id": "Ya", "en": "Yes"}}, {"name": "2", "label": {"id": "Tidak", "en": "No"}}]
}


# ---------------------------------------------------------------------------
# The household form and the Definition helpers


def test_the_household_form_is_valid(household_definition):
    assert isinstance(household_definition, Definition)
    assert household_definition.form_id == "verval_rumah_tangga"
    assert household_definition.version == "2025010101"
    assert household_definition.title["en"] == "Household verification"
    assert household_definition.default_language == "id"


def test_fields_iterate_with_their_paths_and_repeats(household_definition):
    refs = {ref.name: ref for ref in household_definition.iter_fields()}
    assert refs["head_name"].path == "fields[0]"
    assert refs["floor_area"].path == "fields[4].fields[0]"
    assert refs["floor_area"].groups == ("rumah",)
    assert refs["floor_area"].repeat is None
    assert refs["age"].path == "fields[6].fields[2]"
    assert refs["age"].repeat == "members"
    assert [ref.name for ref in household_definition.iter_fields()][:5] == [
        "head_name",
        "no_kk",
        "kecamatan",
        "desa",
        "rumah",
    ]


def test_lookups(household_definition):
    d = household_definition
    assert d.field("age")["type"] == "integer"
    assert d.field("nope") is None
    assert "age" in d
    assert "nope" not in d
    assert d.repeat_of("age") == "members"
    assert d.repeat_of("head_name") is None
    assert d.repeat_of("nope") is None
    assert d.roster == "members"
    assert d.choice_names("yesno") == frozenset({"1", "2"})
    assert [ref.name for ref in d.answer_fields("members")] == ["name", "nik", "age", "sex", "pregnant"]
    assert "rumah" not in [ref.name for ref in d.answer_fields()]
    assert "floor_area" in [ref.name for ref in d.answer_fields()]
    assert d.expression("age", "constraint").references == frozenset()
    assert d.expression("member_count", "calculation").references == frozenset({"members"})
    assert d.expression("head_name", "relevant") is None
    assert d.expression("nope", "relevant") is None


def test_save_to_map(household_definition):
    assert household_definition.save_to_map == {
        "head_name": "head_name",
        "no_kk": "no_kk",
        "floor_area": "floor_area",
        "name": "members/{row}/name",
        "nik": "members/{row}/nik",
        "age": "members/{row}/age",
        "sex": "members/{row}/sex",
        "member_count": "member_count",
    }


def test_a_form_without_roster_or_save_to():
    definition = validate_definition(minimal(field("date", "d", default="today()"), text("t", default="Jl. Merdeka")))
    assert definition.roster is None
    assert definition.save_to_map == {}
    assert definition.expression("d", "default").functions == frozenset({"today"})
    assert definition.expression("t", "default") is None
    assert repr(definition) == "Definition('f', version='1', fields=2)"


def test_validation_copies_the_input(household_data):
    definition = validate_definition(household_data)
    household_data["fields"][0]["name"] = "changed"
    assert definition.field("head_name") is not None
    assert definition.to_dict()["fields"][0]["name"] == "head_name"


def test_warnings_do_not_fail_validation(household_definition):
    # The village choices have no English label: recommended, not required.
    assert "choices.desa[0].label" in household_definition.warnings
    data = minimal(text("a", colour="blue"), choices=copy.deepcopy(YESNO))
    warnings = validate_definition(data).warnings
    assert "fields[0].colour" in warnings
    assert "choices.yesno" in warnings  # unused list


# ---------------------------------------------------------------------------
# Structure


def test_not_an_object():
    assert errors_of([1, 2]) == {"": ["a form definition must be a JSON object"]}


def test_missing_top_level_keys():
    errors = errors_of({})
    assert "settings" in errors
    assert "fields" in errors


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"form_id": "bad-id"}, "settings.form_id", "identifier"),
        ({"form_id": "1abc"}, "settings.form_id", "identifier"),
        ({"form_id": "a" * 65}, "settings.form_id", "at most 64"),
        ({"form_id": None}, "settings.form_id", "null"),
        ({"version": "v 1"}, "settings.version", "letters, digits"),
        ({"version": 3}, "settings.version", "Not a valid string"),
        ({"title": "Formulir"}, "settings.title", "texts by language"),
        ({"title": {"en": "Form"}}, "settings.title.id", "Indonesian text is required"),
        ({"title": {"id": "F", "EN!": "x"}}, "settings.title.EN!", "language code"),
        ({"title": {"id": "F", "en": 3}}, "settings.title.en", "must be a string"),
        ({"default_language": "Indonesian"}, "settings.default_language", "language code"),
    ],
)
def test_settings_problems(change, path, words):
    data = minimal()
    data["settings"].update(change)
    assert_error(data, path, words)


def test_missing_settings_keys():
    data = minimal()
    data["settings"] = {}
    errors = errors_of(data)
    for key in ("form_id", "version", "title", "default_language"):
        assert f"settings.{key}" in errors


def test_settings_not_an_object():
    data = minimal()
    data["settings"] = "f"
    assert_error(data, "settings", "must be an object")


@pytest.mark.parametrize(
    ("fields", "path", "words"),
    [
        ("text", "fields", "must be a list"),
        ([], "fields", "at least one field"),
        (["text"], "fields[0]", "must be an object"),
        ([{"name": "a", "label": {"id": "A"}}], "fields[0].type", "Missing data"),
        ([{"type": "photo", "name": "a", "label": {"id": "A"}}], "fields[0].type", "must be one of"),
        ([{"type": "text", "label": {"id": "A"}}], "fields[0].name", "Missing data"),
        ([text("a.b")], "fields[0].name", "identifier"),
        ([text("a$")], "fields[0].name", "identifier"),
        ([text("1a")], "fields[0].name", "identifier"),
        ([text("umur anak")], "fields[0].name", "identifier"),
        ([text("a" * 65)], "fields[0].name", "at most 64"),
        ([text("_id")], "fields[0].name", "reserved"),
        ([{"type": "text", "name": "a"}], "fields[0].label", "label is required"),
        ([text("a", label={"en": "A"})], "fields[0].label.id", "Indonesian text is required"),
        ([text("a", label={"id": "  "})], "fields[0].label.id", "Indonesian text is required"),
        ([text("a", hint="petunjuk")], "fields[0].hint", "texts by language"),
        ([text("a", required="yes")], "fields[0].required", "true or false"),
        ([text("a", relevant=True)], "fields[0].relevant", "Not a valid string"),
        ([text("a", constraint_message="x")], "fields[0].constraint_message", "texts by language"),
        ([text("a", fields=[text("b")])], "fields[0].fields", "only a group or a repeat"),
        ([field("group", "g")], "fields[0].fields", "needs its fields"),
        ([field("repeat", "r", fields=[])], "fields[0].fields", "at least one field"),
        ([field("group", "g", fields=[text("x", type="nope")])], "fields[0].fields[0].type", "must be one of"),
        ([{"type": "calculate", "name": "c"}], "fields[0].calculation", "needs a calculation"),
        ([field("group", "g", fields=[text("b")], default="x")], "fields[0].default", "no default"),
    ],
)
def test_field_problems(fields, path, words):
    assert_error(
        minimal(*fields) if isinstance(fields, list) and fields else {**minimal(), "fields": fields}, path, words
    )


def _deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "path", "words"),
    [
        (float("nan"), "fields[0].colour", "must be finite"),
        ({"x": float("inf")}, "fields[0].colour.x", "must be finite"),
        ({1: "x"}, "fields[0].colour", "keys must be strings"),
        ({"a", "b"}, "fields[0].colour", "set is not a JSON value"),
        (_deep(5000), "fields[0].colour" + "[0]" * 125, "nested more than 128 levels"),
    ],
)
def test_values_that_are_not_json_are_refused_before_anything_else(value, path, words):
    # Even under keys kunjung does not know: the definition is stored and hashed whole.
    assert_error(minimal(text("a", colour=value)), path, words)


def test_calculate_group_and_repeat_need_no_label():
    validate_definition(
        minimal(
            {"type": "calculate", "name": "c", "calculation": "1 + 1"},
            {"type": "group", "name": "g", "fields": [text("a")]},
            {"type": "repeat", "name": "r", "fields": [text("b")]},
        )
    )


def test_other_languages_are_allowed_in_labels():
    validate_definition(minimal(text("a", label={"id": "Nama", "en": "Name", "su": "Wasta", "jv": "Jeneng"})))


def test_children_of_a_badly_named_group_are_still_checked():
    data = minimal(field("group", "bad-name", fields=[text("ok"), text("also bad")]))
    errors = errors_of(data)
    assert "fields[0].name" in errors
    assert "fields[0].fields[1].name" in errors


def test_nesting_is_bounded():
    inner: dict[str, Any] = text("leaf")
    for depth in range(40):
        inner = {"type": "group", "name": f"g{depth}", "fields": [inner]}
    errors = errors_of(minimal(inner))
    assert any("nested more than" in message for messages in errors.values() for message in messages)


# ---------------------------------------------------------------------------
# Names and choices


def test_duplicate_field_names_anywhere_in_the_form():
    data = minimal(text("name"), field("repeat", "members", fields=[text("age"), text("name")]))
    assert_error(data, "fields[1].fields[1].name", "duplicate field name 'name' (first at fields[0])")


def test_duplicate_names_between_a_group_and_a_field():
    data = minimal(field("group", "rumah", fields=[text("a")]), text("rumah"))
    assert_error(data, "fields[1].name", "duplicate")


def test_select_without_list():
    assert_error(
        minimal(field("select_one", "q"), choices=YESNO), "fields[0].list", "needs the name of its choice list"
    )


def test_select_with_unknown_list():
    data = minimal(text("a"), field("select_multiple", "q", list="nope"), choices=YESNO)
    assert_error(data, "fields[1].list", "unknown choice list 'nope'")


def test_list_or_choice_filter_on_a_non_select():
    assert_error(minimal(text("a", list="yesno"), choices=YESNO), "fields[0].list", "only select_one")
    assert_error(minimal(text("a", choice_filter="1 = 1")), "fields[0].choice_filter", "only select_one")


def test_duplicate_choice_names():
    choices = copy.deepcopy(YESNO)
    choices["yesno"].append({"name": "1", "label": {"id": "Ya lagi"}})
    data = minimal(field("select_one", "q", list="yesno"), choices=choices)
    assert_error(data, "choices.yesno[2].name", "duplicate choice name '1' (first at choices.yesno[0])")


@pytest.mark.parametrize(
    ("choices", "path", "words"),
    [
        ({"yesno": []}, "choices.yesno", "non-empty list"),
        ({"yesno": "1 2"}, "choices.yesno", "non-empty list"),
        ({"yes-no": [{"name": "1", "label": {"id": "Ya"}}]}, "choices.yes-no", "identifier"),
        ({"yesno": ["1"]}, "choices.yesno[0]", "must be an object"),
        ({"yesno": [{"label": {"id": "Ya"}}]}, "choices.yesno[0].name", "Missing data"),
        ({"yesno": [{"name": 1, "label": {"id": "Ya"}}]}, "choices.yesno[0].name", "Not a valid string"),
        ({"yesno": [{"name": "", "label": {"id": "Ya"}}]}, "choices.yesno[0].name", "Length"),
        ({"yesno": [{"name": "ya betul", "label": {"id": "Ya"}}]}, "choices.yesno[0].name", "cannot contain spaces"),
        ({"yesno": [{"name": "1"}]}, "choices.yesno[0].label", "Missing data"),
        ({"yesno": [{"name": "1", "label": {"en": "Yes"}}]}, "choices.yesno[0].label.id", "Indonesian"),
        ({"yesno": [{"name": "1", "label": {"id": "Ya"}, "region": ["32"]}]}, "choices.yesno[0].region", "extra"),
    ],
)
def test_choice_problems(choices, path, words):
    assert_error(minimal(field("select_one", "q", list="yesno"), choices=choices), path, words)


def test_choices_not_an_object():
    assert_error({**minimal(), "choices": []}, "choices", "must be an object")


# ---------------------------------------------------------------------------
# Expressions


@pytest.mark.parametrize("key", ["relevant", "constraint", "calculation", "choice_filter"])
def test_unparseable_expressions_are_reported_at_their_key(key):
    extra = {key: "${a} >"}
    kind = "select_one" if key == "choice_filter" else "text"
    data = minimal(text("a"), field(kind, "b", list="yesno", **extra) if kind == "select_one" else text("b", **extra))
    data["choices"] = YESNO
    assert_error(data, f"fields[1].{key}", "cannot parse expression: unexpected end of expression (at position 6)")


def test_unknown_functions_are_reported():
    assert_error(minimal(text("a", relevant="jr:choice-name(${a}, 'x')")), "fields[0].relevant", "unknown function")


def test_references_to_missing_fields():
    data = minimal(text("a"), field("repeat", "r", fields=[text("b", relevant="${a} != '' and ${nope} = 1")]))
    assert_error(data, "fields[1].fields[0].relevant", "refers to ${nope}, which is not a field of this form")


def test_references_to_groups_have_no_value():
    data = minimal(field("group", "g", fields=[text("a")]), text("b", relevant="${g} = ''"))
    assert_error(data, "fields[1].relevant", "is a group")


def test_bare_names_outside_a_choice_filter():
    assert_error(minimal(text("a"), text("b", relevant="a = 'x'")), "fields[1].relevant", "write ${a}")


def test_choice_filter_columns_must_exist():
    choices = {
        "desa": [
            {"name": "d1", "label": {"id": "D1"}, "kecamatan": "k1"},
            {"name": "d2", "label": {"id": "D2"}, "kecamatan": "k2"},
        ]
    }
    good = minimal(
        text("kec"), field("select_one", "desa", list="desa", choice_filter="kecamatan = ${kec}"), choices=choices
    )
    validate_definition(good)
    bad = copy.deepcopy(good)
    bad["fields"][1]["choice_filter"] = "kabupaten = ${kec}"
    assert_error(bad, "fields[1].choice_filter", "'kabupaten' is not a column of choice list 'desa'")


def test_circular_calculations():
    data = minimal(
        {"type": "calculate", "name": "a", "calculation": "${b} + 1"},
        {"type": "calculate", "name": "b", "calculation": "${c} * 2"},
        {"type": "calculate", "name": "c", "calculation": "${a} - 1"},
        {"type": "calculate", "name": "d", "calculation": "${a} + 1"},  # depends on the cycle, not part of it
    )
    errors = errors_of(data)
    for index in range(3):
        assert any("${a} → ${b} → ${c} → ${a}" in m for m in errors[f"fields[{index}].calculation"])
    assert "fields[3].calculation" not in errors


def test_a_calculation_that_refers_to_itself():
    assert_error(
        minimal({"type": "calculate", "name": "a", "calculation": "${a} + 1"}), "fields[0].calculation", "itself"
    )


def test_cycles_through_defaults():
    data = minimal(
        field("integer", "a", default="${b} + 1"),
        {"type": "calculate", "name": "b", "calculation": "${a} * 2"},
    )
    errors = errors_of(data)
    assert "fields[0].default" in errors
    assert "fields[1].calculation" in errors


def test_relevance_on_another_fields_value_is_not_a_cycle():
    validate_definition(
        minimal(
            field("integer", "a", relevant="${b} = 1"),
            {"type": "calculate", "name": "b", "calculation": "${c} + 1"},
            field("integer", "c", relevant="${a} > 1"),
        )
    )


@pytest.mark.parametrize(
    ("extra_field", "words"),
    [
        (text("q", relevant="${loc} > 3"), "cannot compare ${loc} (geopoint)"),
        (text("q", relevant="${loc} = 3"), "cannot compare ${loc} (geopoint) with a number"),
        (text("q", relevant="${bansos} + 1 > 2"), "cannot do arithmetic on ${bansos} (select_multiple)"),
        (text("q", relevant="${members} > 0"), "${members} (repeat)"),
        (text("q", relevant="${age} > 17"), "${age} (nodeset)"),
        (text("q", relevant="count(${loc}) > 0"), "count() cannot take ${loc}"),
    ],
)
def test_impossible_comparisons_and_arithmetic(extra_field, words):
    data = minimal(
        field("geopoint", "loc"),
        field("select_multiple", "bansos", list="yesno"),
        field("repeat", "members", fields=[field("integer", "age")]),
        extra_field,
        choices=YESNO,
    )
    assert_error(data, "fields[3].relevant", words)


def test_static_types_inside_the_repeat_row():
    # Inside the row, ${age} is one number; count() of the repeat works anywhere.
    validate_definition(
        minimal(
            field(
                "repeat",
                "members",
                fields=[field("integer", "age"), text("school", relevant="${age} >= 7 and count(${members}) > 0")],
            ),
            {"type": "calculate", "name": "total_age", "calculation": "sum(${age})"},
        )
    )


def test_constraint_on_the_current_value_is_typed():
    assert_error(minimal(field("geopoint", "loc", constraint=". > 0")), "fields[0].constraint", "'.' (geopoint)")
    validate_definition(minimal(field("integer", "n", constraint=". >= 0 and . <= 120")))


# ---------------------------------------------------------------------------
# Defaults


@pytest.mark.parametrize(
    ("kind", "default", "ok"),
    [
        ("integer", 3, True),
        ("integer", "3", True),
        ("integer", "tiga", False),
        ("integer", True, False),
        ("decimal", "2.5", True),
        ("decimal", "x", False),
        ("date", "2024-02-29", True),
        ("date", "2023-02-29", False),
        ("date", 20240229, False),
        ("datetime", "2024-02-29T10:00:00+07:00", True),
        ("text", "Jl. Merdeka", True),
        ("text", {"a": 1}, False),
        ("select_one", "1", True),
        ("select_one", "3", False),
        ("select_multiple", "1 2", True),
        ("select_multiple", ["1", "2"], True),
        ("select_multiple", ["1", 2], False),
        ("select_multiple", "1 3", False),
    ],
)
def test_literal_defaults_must_fit_the_type(kind, default, ok):
    extra = {"list": "yesno"} if kind.startswith("select") else {}
    data = minimal(field(kind, "q", default=default, **extra), choices=YESNO)
    if ok:
        validate_definition(data)
    else:
        assert "fields[0].default" in errors_of(data)


def test_dynamic_defaults_are_expressions():
    validate_definition(minimal(field("date", "d", default="today()")))
    assert_error(minimal(field("date", "d", default="today(")), "fields[0].default", "cannot parse")
    assert_error(minimal(field("text", "t", default="${nope}")), "fields[0].default", "refers to ${nope}")


# ---------------------------------------------------------------------------
# save_to


@pytest.mark.parametrize(
    "target",
    ["Head_Name", "head.name", "$head", "head name", "head\x00name", "1head", "_head", "h" * 65, "kepala-keluarga", ""],
)
def test_save_to_must_be_a_household_field_name(target):
    assert_error(minimal(text("a", save_to=target)), "fields[0].save_to", "household field name")


def test_save_to_accepts_snake_case_up_to_64():
    validate_definition(minimal(text("a", save_to="h" * 64), text("b", save_to="no_kk_2")))


@pytest.mark.parametrize("kind", ["group", "note"])
def test_groups_and_notes_cannot_save(kind):
    extra = {"fields": [text("x")]} if kind == "group" else {}
    assert_error(minimal(field(kind, "g", save_to="g", **extra)), "fields[0].save_to", "no value to save")


def test_a_repeat_saves_only_to_members():
    data = minimal(field("repeat", "r", save_to="people", fields=[text("x")]))
    assert_error(data, "fields[0].save_to", "can only save to 'members'")


def test_two_fields_saving_to_the_same_target():
    data = minimal(text("a", save_to="head_name"), text("b", save_to="head_name"))
    assert_error(data, "fields[1].save_to", "fields[0] already saves to household field 'head_name'")


def test_two_roster_fields_saving_to_the_same_member_field():
    data = minimal(field("repeat", "members", fields=[text("a", save_to="name"), text("b", save_to="name")]))
    assert_error(data, "fields[0].fields[1].save_to", "already saves to member field 'name'")


def test_a_household_field_and_a_member_field_may_share_a_name():
    validate_definition(
        minimal(text("a", save_to="name"), field("repeat", "members", fields=[text("b", save_to="name")]))
    )


def test_the_roster_is_implied_by_its_save_to_children(household_data):
    del household_data["fields"][6]["save_to"]
    assert validate_definition(household_data).roster == "members"


def test_only_one_repeat_can_be_the_roster():
    data = minimal(
        field("repeat", "members", fields=[text("a", save_to="name")]),
        field("repeat", "others", fields=[text("b", save_to="age")]),
    )
    assert_error(data, "fields[1]", "only one repeat can be the household roster")
    data = minimal(
        field("repeat", "members", save_to="members", fields=[text("a")]),
        field("repeat", "others", save_to="members", fields=[text("b")]),
    )
    assert_error(data, "fields[1]", "only one repeat")


def test_member_fields_are_saved_only_from_the_roster_itself():
    data = minimal(field("repeat", "members", fields=[field("repeat", "visits", fields=[text("a", save_to="visit")])]))
    assert_error(data, "fields[0].fields[0].fields[0].save_to", "not a nested repeat")
    data = minimal(field("repeat", "outer", fields=[field("repeat", "members", save_to="members", fields=[text("a")])]))
    assert_error(data, "fields[0].fields[0].save_to", "cannot be inside another repeat")


def test_members_is_reserved_for_the_roster():
    assert_error(minimal(text("a", save_to="members")), "fields[0].save_to", "household roster")


def test_calculations_can_save():
    data = minimal({"type": "calculate", "name": "c", "calculation": "1", "save_to": "score"})
    assert validate_definition(data).save_to_map == {"c": "score"}


def test_every_problem_is_collected_at_once():
    data = minimal(
        text("a.b"),
        field("select_one", "q", list="nope"),
        text("r", relevant="${zz} = 1"),
        text("s", save_to="Bad"),
    )
    errors = errors_of(data)
    assert set(errors) == {"fields[0].name", "fields[1].list", "fields[2].relevant", "fields[3].save_to"}


def test_definition_error_message_counts_the_problems():
    with pytest.raises(DefinitionError, match="2 problems in the form definition; fields"):
        validate_definition(minimal(text("a.b"), text("c.d")))
    with pytest.raises(DefinitionError, match="1 problem in"):
        validate_definition(minimal(text("a.b")))


# ---------------------------------------------------------------------------
# Hashes and versions


def test_definition_hash_is_sha256_of_canonical_json(household_data):
    canonical = json.dumps(household_data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert definition_hash(household_data) == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert "²" in canonical  # UTF-8, not \u escapes


def test_definition_hash_ignores_key_order_and_whitespace(household_data):
    reordered = json.loads(json.dumps(household_data, indent=4, sort_keys=False))
    reordered["settings"] = dict(reversed(list(reordered["settings"].items())))
    assert definition_hash(reordered) == definition_hash(household_data)
    assert definition_hash(validate_definition(household_data)) == definition_hash(household_data)
    assert validate_definition(household_data).hash == definition_hash(household_data)


def test_definition_hash_changes_with_content(household_data):
    before = definition_hash(household_data)
    household_data["fields"][0]["label"]["en"] = "Head of family"
    assert definition_hash(household_data) != before


def test_a_new_version_may_add_fields(household_data):
    new = copy.deepcopy(household_data)
    new["settings"]["version"] = "2025020101"
    new["fields"].append(text("phone"))
    assert check_new_version(household_data, new) == {}
    assert check_new_version(validate_definition(household_data), validate_definition(new)) == {}


def test_a_new_version_may_not_change_a_fields_type(household_data):
    new = copy.deepcopy(household_data)
    new["settings"]["version"] = "2"
    new["fields"][6]["fields"][2]["type"] = "text"  # members.age: integer -> text
    errors = check_new_version(household_data, new)
    assert list(errors) == ["fields[6].fields[2].type"]
    assert "was integer" in errors["fields[6].fields[2].type"][0]


def test_a_new_version_keeps_fields_in_or_out_of_repeats(household_data):
    new = copy.deepcopy(household_data)
    new["settings"]["version"] = "2"
    head = new["fields"].pop(0)
    new["fields"][5]["fields"].append(head)
    errors = check_new_version(household_data, new)
    assert "fields[5].fields[5].name" in errors


def test_a_new_version_needs_the_same_form_id_and_another_version(household_data):
    errors = check_new_version(household_data, copy.deepcopy(household_data))
    assert "settings.version" in errors
    other = copy.deepcopy(household_data)
    other["settings"]["form_id"] = "lain"
    other["settings"]["version"] = "2"
    assert "settings.form_id" in check_new_version(household_data, other)


def test_check_new_version_reads_malformed_json_leniently():
    assert "settings.form_id" in check_new_version({"fields": "x"}, {"settings": {"form_id": "f"}, "fields": [1, {}]})


# ---------------------------------------------------------------------------
# Properties

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
_FIELD = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "integer", "select_one", "group", "repeat", "calculate", "bogus"]),
     "name": st.sampled_from(["a", "b", "c", "bad name", "_id"])},
    optional={"label": _JSON | st.just({"id": "A"}), "relevant": st.text(max_size=12) | st.just("${a} > 1"),
              "calculation": st.sampled_from(["${a}", "${b} + 1", "1"]), "list": st.just("yesno"),
              "save_to": st.sampled_from(["a", "members", "Bad"]), "fields": st.lists(_JSON, max_size=2) | _JSON,
              "required": _JSON, "default": _JSON},
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(_FIELD, max_size=5), _JSON)
def test_validation_only_ever_raises_definition_error(fields, noise):
    data = minimal(*fields, choices=YESNO) if fields else {"settings": noise, "fields": noise, "choices": noise}
    try:
        definition = validate_definition(data)
    except DefinitionError as exc:
        errors = exc.errors
        assert errors
    else:
        errors = {}
        assert definition_hash(definition) == definition_hash(data)
    assert all(isinstance(path, str) and messages for path, messages in errors.items())


# ---------------------------------------------------------------------------
# Keys a store would read as operators or paths


@pytest.mark.parametrize(
    ("where", "path"),
    [
        (lambda d: d["settings"].__setitem__("$where", "1"), "settings"),
        (lambda d: d["settings"].__setitem__("a.b", "1"), "settings"),
        (lambda d: d["fields"][0].__setitem__("$set", {"x": 1}), "fields[0]"),
        (lambda d: d["fields"][0]["label"].__setitem__("en.GB", "Name"), "fields[0].label"),
        (lambda d: d["fields"][0].__setitem__("extra", {"deep": {"$gt": ""}}), "fields[0].extra.deep"),
        (lambda d: d["choices"]["yn"][0].__setitem__("kec.code", "32"), "choices.yn[0]"),
        (lambda d: d.__setitem__("$comment", "x"), ""),
        (lambda d: d["fields"][0].__setitem__("note\x00", "x"), "fields[0]"),
    ],
)
def test_definition_keys_with_dollar_or_dot_are_refused_with_their_path(where, path):
    data = minimal(
        {"type": "text", "name": "nama", "label": {"id": "Nama"}},
        {"type": "select_one", "name": "s", "label": {"id": "S"}, "list": "yn"},
        choices={"yn": [{"name": "1", "label": {"id": "Ya"}}]},
    )
    where(data)
    errors = errors_of(data)
    assert list(errors) == [path]
    assert "may not start with '$' or contain '.' or NUL" in errors[path][0]


def test_integers_a_store_cannot_hold_are_refused():
    data = minimal({"type": "integer", "name": "n", "label": {"id": "N"}, "default": 2**64})
    assert errors_of(data) == {"fields[0].default": ["integers must fit in 64 bits to be stored"]}
