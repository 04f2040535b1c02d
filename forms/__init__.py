"""The form-definition language: definitions, expressions, answers and Indonesian identifier checks."""

from forms.answers import AnswerReport, household_writes, validate_answers
from forms.definition import (
    Definition,
    DefinitionError,
    FieldRef,
    MediaQuestion,
    check_new_version,
    definition_hash,
    media_answers,
    media_question,
    validate_definition,
)
from forms.expressions import Context, Expression, ExpressionError, parse
from forms.fieldtypes import FIELD_TYPES, FieldType, field_type
from forms.household import HouseholdField, HouseholdFields, household_field_catalog
from forms.identifiers import (
    NikInfo,
    area_contains,
    check_area_code,
    check_kk,
    check_nik,
    check_village_code,
    parse_nik,
)

__all__ = [
    "FIELD_TYPES",
    "AnswerReport",
    "Context",
    "Definition",
    "DefinitionError",
    "Expression",
    "ExpressionError",
    "FieldRef",
    "FieldType",
    "HouseholdField",
    "HouseholdFields",
    "MediaQuestion",
    "NikInfo",
    "area_contains",
    "check_area_code",
    "check_kk",
    "check_new_version",
    "check_nik",
    "check_village_code",
    "definition_hash",
    "field_type",
    "household_field_catalog",
    "household_writes",
    "media_answers",
    "media_question",
    "parse",
    "parse_nik",
    "validate_answers",
    "validate_definition",
]
