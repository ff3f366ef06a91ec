"""The OpenAI-compatible adapter's request and reply shaping (its server behaviour is in
tests/contract/test_openai_compat.py)."""

from __future__ import annotations

import json

from generation.openai_compat import response_format, strict_json

SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}


def test_json_schema_is_sent_in_openais_strict_form() -> None:
    assert response_format(SCHEMA, "json_schema") == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": SCHEMA, "strict": True},
    }
    assert response_format(SCHEMA, "json_object") == {"type": "json_object", "schema": SCHEMA}


def test_raw_control_characters_in_strings_are_escaped() -> None:
    raw = '{"title": "check\nthe pods"}'
    assert json.loads(strict_json(raw)) == {"title": "check\nthe pods"}
    assert strict_json('{"title": "ok"}') == '{"title": "ok"}'


def test_json_that_does_not_parse_is_left_for_the_caller() -> None:
    assert strict_json('{"title": "cut off') == '{"title": "cut off'
