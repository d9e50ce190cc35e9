"""JSON Schema to Gemini's Schema object: what translates, what is inlined, and what is refused with its path."""

from __future__ import annotations

from typing import Any

import pytest

from mindroute.providers.errors import UnsupportedParameter
from mindroute.providers.gemini_schema import gemini_schema, is_empty_object
from tests.providers.fake_gemini import check_schema

PATH = "response_format.json_schema.schema"


def test_an_object_schema_gets_gemini_types_and_the_properties_order() -> None:
    schema = {
        "type": "object",
        "title": "Weather",
        "properties": {
            "zeta": {"type": "string", "description": "last letter first", "minLength": 1, "maxLength": 9},
            "alpha": {"type": "integer", "minimum": 0, "maximum": 10, "format": "int32"},
            "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}, "minItems": 1},
            "ok": {"type": "boolean"},
            "ratio": {"type": "number"},
        },
        "required": ["zeta", "alpha"],
        "additionalProperties": False,  # Gemini objects never add properties
    }
    assert gemini_schema(schema, PATH) == {
        "type": "OBJECT",
        "title": "Weather",
        "properties": {
            "zeta": {"type": "STRING", "description": "last letter first", "minLength": 1, "maxLength": 9},
            "alpha": {"type": "INTEGER", "minimum": 0, "maximum": 10, "format": "int32"},
            "tags": {"type": "ARRAY", "items": {"type": "STRING", "pattern": "^[a-z]+$"}, "minItems": 1},
            "ok": {"type": "BOOLEAN"},
            "ratio": {"type": "NUMBER"},
        },
        "propertyOrdering": ["zeta", "alpha", "tags", "ok", "ratio"],
        "required": ["zeta", "alpha"],
    }


def test_null_in_a_type_list_or_an_anyof_is_nullable() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"anyOf": [{"type": "integer"}, {"type": "null"}], "description": "optional"},
            "c": {"anyOf": [{"type": "integer"}, {"type": "string", "enum": ["x", "y"]}]},
        },
    }
    assert gemini_schema(schema, PATH)["properties"] == {
        "a": {"type": "STRING", "nullable": True},
        "b": {"type": "INTEGER", "description": "optional", "nullable": True},
        "c": {"anyOf": [{"type": "INTEGER"}, {"type": "STRING", "enum": ["x", "y"]}]},
    }


def test_refs_into_defs_and_definitions_are_inlined_with_their_siblings() -> None:
    schema = {
        "type": "object",
        "properties": {
            "home": {"$ref": "#/$defs/Address", "description": "where they live"},
            "unit": {"$ref": "#/definitions/Unit"},
            "work": {"oneOf": [{"$ref": "#/$defs/Address"}]},
        },
        "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        "definitions": {"Unit": {"enum": ["C", "F"]}},
    }
    address = {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "propertyOrdering": ["city"]}
    assert gemini_schema(schema, PATH)["properties"] == {
        "home": {**address, "description": "where they live", "required": ["city"]},
        "unit": {"type": "STRING", "enum": ["C", "F"]},
        "work": {**address, "required": ["city"]},
    }


def test_a_string_const_is_a_one_value_enum() -> None:
    assert gemini_schema({"const": "yes"}, PATH) == {"type": "STRING", "enum": ["yes"]}


@pytest.mark.parametrize(
    ("schema", "param"),
    [
        (
            {"type": "object", "properties": {"tags": {"type": "object", "additionalProperties": {"type": "string"}}}},
            f"{PATH}.properties.tags.additionalProperties",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": True},
            f"{PATH}.additionalProperties",
        ),
        ({"type": "object", "patternProperties": {"^x": {"type": "string"}}}, f"{PATH}.patternProperties"),
        ({"type": "object", "properties": {"x": {"not": {"type": "string"}}}}, f"{PATH}.properties.x.not"),
        ({"type": "string", "if": {"minLength": 2}, "then": {"maxLength": 3}}, f"{PATH}.if"),
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, f"{PATH}.oneOf"),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "dependentSchemas": {}},
            f"{PATH}.dependentSchemas",
        ),
        ({"type": "array", "items": [{"type": "string"}]}, f"{PATH}.items"),
        ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, f"{PATH}.uniqueItems"),
        ({"type": "integer", "enum": [1, 2]}, f"{PATH}.enum"),
        ({"type": "object"}, f"{PATH}.properties"),
        ({"type": ["string", "integer"]}, f"{PATH}.type"),
        ({"type": "null"}, f"{PATH}.type"),
        ({"description": "anything"}, PATH),
        ({"$ref": "https://example.com/schema.json"}, f"{PATH}.$ref"),
        ({"$ref": "#/$defs/Missing"}, f"{PATH}.$ref"),
        (
            {
                "type": "object",
                "properties": {"root": {"$ref": "#/$defs/Node"}},
                "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
            },
            f"{PATH}.properties.root.properties.next.$ref",
        ),
    ],
)
def test_what_gemini_cannot_express_is_refused_naming_the_part(schema: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        gemini_schema(schema, PATH)
    assert caught.value.param == param
    assert caught.value.message.startswith(param + ": the Gemini protocol's schema cannot express ")
    assert caught.value.status_code == 400


def test_tool_paths_name_the_tool() -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        gemini_schema({"type": "object", "properties": {"x": {"not": {}}}}, "tools[2].function.parameters")
    assert caught.value.param == "tools[2].function.parameters.properties.x.not"


def test_the_fake_accepts_every_translation_and_refuses_raw_json_schema() -> None:
    """The fake checks what Gemini checks, so the translated schema passes and the untranslated one does not."""
    schema = {
        "type": "object",
        "properties": {
            "when": {"type": ["string", "null"], "format": "date-time"},
            "where": {"$ref": "#/$defs/Place"},
            "items": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "number"}]}},
        },
        "required": ["where"],
        "additionalProperties": False,
        "$defs": {"Place": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
    assert check_schema(gemini_schema(schema, PATH), "generation_config.response_schema") is None
    problem = check_schema(schema, "generation_config.response_schema")
    assert problem is not None and "Unknown name" in problem


@pytest.mark.parametrize(
    ("schema", "empty"),
    [
        (None, True),
        ({}, True),
        ({"type": "object", "properties": {}}, True),
        ({"type": "object", "properties": {}, "additionalProperties": False, "required": []}, True),
        ({"type": "object", "properties": {"a": {"type": "string"}}}, False),
        ({"type": "object", "patternProperties": {"x": {}}}, False),
    ],
)
def test_parameters_that_declare_no_argument_are_empty(schema: dict[str, Any] | None, empty: bool) -> None:
    assert is_empty_object(schema) is empty
