"""Decision 50: valid envelope bytes are parsed and validated in one pydantic pass; anything
else takes the checked path, with the same result or the same ContractError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import envelope as envelope_module
from contracts.envelope import Envelope
from contracts.errors import ContractError
from tests.helpers import customer_env

HEAD = (
    b'{"message_id":"6de2798f-ba9a-4de0-a18f-29d5c7fc89e4",'
    b'"occurred_at":"2026-01-01T00:00:00Z","entity":"customer","source_system":"crm",'
    b'"source_id":"1",'
)


def test_valid_bytes_skip_the_json_module(monkeypatch: pytest.MonkeyPatch) -> None:
    env = customer_env(1)

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("json.loads called for valid envelope bytes")

    monkeypatch.setattr(envelope_module.json, "loads", refuse)
    assert Envelope.from_bytes(env.to_bytes()) == env


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (HEAD + b'"body":{"x":NaN}}', "json"),
        (HEAD + b'"body":{"x":-Infinity}}', "json"),
        (b"\xff\xfe{}", "encoding"),
        (b"[1, 2]", "json"),
        (b'{"entity":', "json"),
        (HEAD + b'"body":{}, "extra": 1}', "envelope.extra"),
        (HEAD.replace(b'"crm"', b'"CRM"') + b'"body":{}}', "envelope.source_system"),
    ],
)
def test_refused_bytes_get_the_checked_error(raw: bytes, field: str) -> None:
    with pytest.raises(ContractError) as fast:
        Envelope.from_bytes(raw)
    with pytest.raises(ContractError) as checked:
        Envelope._from_bytes_checked(raw)
    assert (fast.value.field, fast.value.reason) == (checked.value.field, checked.value.reason)
    assert fast.value.field.startswith(field)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(), JSON, max_size=4), st.sampled_from(["1", '"1"', "1.0"]))
def test_both_paths_agree_on_valid_bytes(body: dict[str, object], version: str) -> None:
    raw = HEAD + b'"source_version":' + version.encode() + b',"body":' + json.dumps(body).encode()
    raw += b"}"
    assert Envelope.from_bytes(raw) == Envelope._from_bytes_checked(raw)
