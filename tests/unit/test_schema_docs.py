"""Every key of the configuration's JSON Schema carries a description and an example, so an
editor explains each key; a key added to the schema without docs fails here."""

from __future__ import annotations

import jsonschema

from reconciler.config import config_json_schema
from reconciler.config.schema_docs import SCHEMA_DOCS, _generic, apply_schema_docs, schema_properties


def test_every_property_has_a_description_and_examples() -> None:
    schema = config_json_schema()
    missing = [
        path for path, prop in schema_properties(schema) if not prop.get("description") or not prop.get("examples")
    ]
    assert missing == [], f"add these to reconciler/config/schema_docs.py: {missing}"


def test_no_documented_path_is_stale() -> None:
    paths = {path for path, _ in schema_properties(config_json_schema())}
    reachable = paths | {generic for path in paths if (generic := _generic(path))}
    assert sorted(set(SCHEMA_DOCS) - reachable) == []


def test_examples_of_leaf_keys_are_valid_values() -> None:
    """An editor offers the example as a completion, so it must pass the schema itself."""
    schema = config_json_schema()
    for path, prop in schema_properties(schema):
        validator = jsonschema.Draft202012Validator({**prop, "$defs": schema["$defs"]})
        for example in prop["examples"]:
            errors = [error.message for error in validator.iter_errors(example)]
            assert errors == [], f"{path}: example {example!r}: {errors}"


def test_apply_schema_docs_reaches_shared_and_nested_definitions() -> None:
    schema = {
        "type": "object",
        "properties": {"instances": {"type": "array", "items": {"$ref": "#/$defs/I"}}},
        "$defs": {"I": {"properties": {"name": {"type": "string"}}}},
    }
    apply_schema_docs(schema)
    assert schema["$defs"]["I"]["properties"]["name"]["description"] == SCHEMA_DOCS["resources[].name"][0]
