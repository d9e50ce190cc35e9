"""JSON Schema (as OpenAI callers write it) to the Schema object Gemini's responseSchema and parameters accept."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mindroute.providers.errors import UnsupportedParameter

GEMINI_TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
}
# Copied as they are: Gemini's Schema has them under the same names and meanings.
_COPIED = (
    "format",
    "description",
    "title",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minProperties",
    "maxProperties",
    "default",
    "example",
)
# Read here (or only annotations that change no answer), never copied as such.
_HANDLED = {
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "items",
    "nullable",
    "anyOf",
    "oneOf",
    "allOf",
    "propertyOrdering",
    "additionalProperties",
    "$ref",
    "$defs",
    "definitions",
    "$schema",
    "$id",
    "$comment",
    "strict",
}
_REF_PREFIXES = ("#/$defs/", "#/definitions/")


def refuse(path: str, why: str) -> UnsupportedParameter:
    return UnsupportedParameter(f"{path}: the Gemini protocol's schema cannot express {why}", path)


def gemini_schema(schema: Any, path: str) -> dict[str, Any]:
    """`schema` (a JSON Schema) as a Gemini Schema object; `path` names it in OpenAI's terms
    ("response_format.json_schema.schema", "tools[0].function.parameters") so a refusal's `param`
    names the exact part Gemini cannot express. $refs into $defs/definitions are inlined."""
    root = schema if isinstance(schema, Mapping) else {}
    return _translate(schema, path, root, ())


def _resolve(ref: Any, path: str, root: Mapping[str, Any], seen: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(ref, str) or not ref.startswith(_REF_PREFIXES):
        raise refuse(f"{path}.$ref", "a $ref outside #/$defs/... and #/definitions/...")
    if ref in seen:
        raise refuse(f"{path}.$ref", f"a recursive schema ({ref} refers to itself)")
    target: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        target = target.get(part) if isinstance(target, Mapping) else None
    if not isinstance(target, Mapping):
        raise refuse(f"{path}.$ref", f"a $ref to a missing definition ({ref})")
    return target


def _merged(base: Mapping[str, Any], key: str, branch: Any, path: str) -> dict[str, Any]:
    """`base` without `key`, with `branch`'s keywords added (the base's own keywords win)."""
    if not isinstance(branch, Mapping):
        raise refuse(f"{path}.{key}[0]", "a branch that is not a schema object")
    merged = {k: v for k, v in branch.items()}
    merged.update({k: v for k, v in base.items() if k != key})
    return merged


def _translate(schema: Any, path: str, root: Mapping[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(schema, Mapping):
        raise refuse(path, "a schema that is not an object")
    if "$ref" in schema:
        ref = schema["$ref"]
        target = _resolve(ref, path, root, seen)
        merged = dict(target)
        merged.update({k: v for k, v in schema.items() if k != "$ref"})  # the siblings (a description) win
        return _translate(merged, path, root, (*seen, ref))
    for key in ("oneOf", "allOf"):
        if key in schema:
            branches = schema[key]
            if not isinstance(branches, list) or len(branches) != 1:
                raise refuse(f"{path}.{key}", f"{key} with several branches")
            return _translate(_merged(schema, key, branches[0], path), path, root, seen)
    for key in schema:
        if key not in _HANDLED and key not in _COPIED:
            raise refuse(f"{path}.{key}", f"the keyword {key}")
    out: dict[str, Any] = {}
    nullable = schema.get("nullable") is True
    kind = schema.get("type")
    if isinstance(kind, list):
        others = [k for k in kind if k != "null"]
        if len(others) != 1:
            raise refuse(f"{path}.type", 'a type list other than [<type>, "null"]')
        nullable = nullable or len(others) < len(kind)
        kind = others[0]
    if kind is not None:
        if not isinstance(kind, str) or kind.lower() not in GEMINI_TYPES:
            raise refuse(f"{path}.type", f"the type {kind!r}")
        out["type"] = GEMINI_TYPES[kind.lower()]
    for key in _COPIED:
        if key in schema:
            out[key] = schema[key]
    enum = schema.get("enum")
    if "const" in schema:
        enum = [schema["const"]]
    if enum is not None:
        if not isinstance(enum, list) or not all(isinstance(v, str) for v in enum):
            raise refuse(f"{path}.{'const' if 'const' in schema else 'enum'}", "enum values other than strings")
        out.setdefault("type", "STRING")
        if out["type"] != "STRING":
            raise refuse(f"{path}.enum", "an enum of a type other than string")
        out["enum"] = list(enum)
    if "anyOf" in schema:
        branches = schema["anyOf"]
        if not isinstance(branches, list) or not branches:
            raise refuse(f"{path}.anyOf", "an anyOf that is not a list of schemas")
        kept = []
        for i, branch in enumerate(branches):
            if isinstance(branch, Mapping) and branch.get("type") == "null" and len(branch) == 1:
                nullable = True  # Optional[X]: anyOf [X, {"type": "null"}]
            else:
                kept.append((i, branch))
        if len(kept) == 1 and not out.get("type"):
            one = _translate(kept[0][1], f"{path}.anyOf[{kept[0][0]}]", root, seen)
            out = {**one, **out}
        elif kept:
            out["anyOf"] = [_translate(branch, f"{path}.anyOf[{i}]", root, seen) for i, branch in kept]
    if "additionalProperties" in schema and schema["additionalProperties"] is not False:
        raise refuse(f"{path}.additionalProperties", "objects with properties beyond the declared ones")
    if "properties" in schema:
        properties = schema["properties"]
        if not isinstance(properties, Mapping):
            raise refuse(f"{path}.properties", "properties that are not an object")
        out["properties"] = {
            name: _translate(sub, f"{path}.properties.{name}", root, seen) for name, sub in properties.items()
        }
        ordering = schema.get("propertyOrdering")
        out["propertyOrdering"] = list(ordering) if isinstance(ordering, list) else list(properties)
        out.setdefault("type", "OBJECT")
    if "required" in schema:
        required = schema["required"]
        if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
            raise refuse(f"{path}.required", "a required that is not a list of names")
        out["required"] = list(required)
    if "items" in schema:
        if not isinstance(schema["items"], Mapping):
            raise refuse(f"{path}.items", "items other than one schema (tuple validation)")
        out["items"] = _translate(schema["items"], f"{path}.items", root, seen)
        out.setdefault("type", "ARRAY")
    if out.get("type") == "OBJECT" and not out.get("properties"):
        raise refuse(f"{path}.properties", "an object without declared properties (any object)")
    if "type" not in out and "anyOf" not in out:
        raise refuse(path, "a schema without a type (any value)")
    if nullable:
        out["nullable"] = True
    return out


def is_empty_object(schema: Mapping[str, Any] | None) -> bool:
    """A tool's parameters that declare no argument: none at all, {}, or an object with no properties."""
    if not schema:
        return True
    if schema.get("type") not in (None, "object") or schema.get("properties"):
        return False
    return all(key in ("type", "properties", "additionalProperties", "required", "$schema", "strict") for key in schema)
