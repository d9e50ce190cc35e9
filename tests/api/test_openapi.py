"""The OpenAPI description and the request parser read one field table: every field the parser reads is
in the schema and every schema field is read, with the same constraints."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mindroute.http.chat_request import REFUSED_FIELDS, REQUEST_FIELDS, InvalidChatRequest, chat_from_body
from mindroute.http.openapi import OPENAPI

SCHEMA = OPENAPI["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
MINIMAL = {"model": "P/m", "messages": [{"role": "user", "content": "hi"}]}
# A valid value of each field: the parser must take them all at once.
VALID = {
    "model": "P/m",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
    "stream_options": {"include_usage": True},
    "max_tokens": 5,
    "max_completion_tokens": 6,
    "temperature": 1,
    "top_p": 0.5,
    "stop": ["a", "b"],
    "n": 1,
    "user": "u1",
}


class RecordingBody(dict):
    """A request body that remembers which of its fields the parser read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


def refused_param(body: dict[str, Any]) -> str | None:
    with pytest.raises(InvalidChatRequest) as refused:
        chat_from_body(body)
    return refused.value.param


def test_the_fields_the_parser_reads_are_the_schema_s_and_the_refused_ones():
    body = RecordingBody(VALID)
    parsed = chat_from_body(body)
    assert parsed.include_usage and parsed.user == "u1" and parsed.request.max_tokens == 6
    # max_completion_tokens wins: max_tokens is read when it is absent.
    older = RecordingBody({k: v for k, v in VALID.items() if k != "max_completion_tokens"})
    assert chat_from_body(older).request.max_tokens == 5
    assert body.read | older.read == set(SCHEMA["properties"]) | set(REFUSED_FIELDS)
    assert set(VALID) == set(SCHEMA["properties"])
    assert not set(REFUSED_FIELDS) & set(SCHEMA["properties"])


def test_the_schema_s_required_fields_are_the_ones_the_parser_requires():
    assert SCHEMA["required"] == ["model", "messages"]
    for name in SCHEMA["required"]:
        body = {k: v for k, v in MINIMAL.items() if k != name}
        assert refused_param(body) == name
    for name in set(SCHEMA["properties"]) - set(SCHEMA["required"]):
        chat_from_body({**MINIMAL, name: None})  # optional: null is the same as absent


@pytest.mark.parametrize("field", [f for f in REQUEST_FIELDS if f.minimum is not None or f.maximum is not None])
def test_numeric_bounds_in_the_schema_are_the_parser_s(field):
    schema = SCHEMA["properties"][field.name]
    assert (schema.get("minimum"), schema.get("maximum")) == (field.minimum, field.maximum)
    for edge in (schema.get("minimum"), schema.get("maximum")):
        if edge is not None:
            chat_from_body({**MINIMAL, field.name: edge})
    if "minimum" in schema:
        assert refused_param({**MINIMAL, field.name: schema["minimum"] - 1}) == field.name
    if "maximum" in schema:
        assert refused_param({**MINIMAL, field.name: schema["maximum"] + 0.5}) == field.name


def test_list_lengths_and_constants_in_the_schema_are_the_parser_s():
    stop = next(s for s in SCHEMA["properties"]["stop"]["oneOf"] if s["type"] == "array")
    chat_from_body({**MINIMAL, "stop": ["x"] * stop["maxItems"]})
    assert refused_param({**MINIMAL, "stop": ["x"] * (stop["maxItems"] + 1)}) == "stop"
    assert SCHEMA["properties"]["messages"]["minItems"] == 1
    assert refused_param({**MINIMAL, "messages": []}) == "messages"
    n = SCHEMA["properties"]["n"]["const"]
    chat_from_body({**MINIMAL, "n": n})
    assert refused_param({**MINIMAL, "n": n + 1}) == "n"


def test_every_field_is_described_and_the_document_is_json():
    assert all(spec.get("description") for spec in SCHEMA["properties"].values())
    assert json.loads(json.dumps(OPENAPI)) == OPENAPI
