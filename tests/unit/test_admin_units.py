"""Pure parts of the admin features: merge patch, replay planning and gates, audit redaction,
tokens; and the first-start admin token against a real SQLite store."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import select

from hub.api.audit import bounded, redact
from hub.api.auth import (
    BOOTSTRAP_NAME,
    Role,
    ensure_admin_token,
    hash_token,
    new_token,
    print_bootstrap_token,
)
from hub.core.inbound import InboundRecord
from hub.redrive import is_topic, merge_patch, redrive_headers
from hub.replay import PartitionPlan, gate, key_matches, plan_partition, source_system_of
from hub.store.admin_models import ApiToken

# RFC 7386, appendix A
RFC7386 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC7386)
def test_merge_patch_follows_rfc7386(target: Any, patch: Any, result: Any) -> None:
    before = repr(target)
    assert merge_patch(target, patch) == result
    assert repr(target) == before, "the target is not modified"


def test_redrive_headers_drop_error_and_old_redrive_headers() -> None:
    from datetime import UTC, datetime

    original = [
        ["eai.message_id", "m1"],
        ["eai.error.reason", "bad"],
        ["eai.redrive.attempt", "1"],
        ["trace", "x"],
    ]
    out = dict(redrive_headers(original, 7, 2, "ops", datetime(2026, 1, 1, tzinfo=UTC), True))
    assert out["eai.message_id"] == b"m1" and out["trace"] == b"x"
    assert "eai.error.reason" not in out
    assert out["eai.redrive.attempt"] == b"2"
    assert out["eai.redrive.dead_letter_id"] == b"7"
    assert out["eai.redrive.patched"] == b"true"


def test_topic_names() -> None:
    assert is_topic("canonical.customer") and is_topic("crm.customer.native")
    assert not is_topic("webhook:crm.customer") and not is_topic("..") and not is_topic("")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # (from, to, begin, end, journal_end) -> (next, stop, begin, journal_stop)
        ((0, None, 0, 10, 10), (0, 10, 0, 0)),  # all on the broker
        ((0, None, 6, 10, 10), (0, 10, 6, 6)),  # retention: 0..5 from the journal
        ((2, 8, 6, 10, 10), (2, 8, 6, 6)),
        ((7, None, 6, 10, 10), (7, 10, 6, 6)),  # nothing from the journal
        ((0, None, None, None, 5), (0, 5, None, 5)),  # the broker lacks the topic
        ((0, 3, None, None, 5), (0, 3, None, 3)),
        ((12, None, 0, 10, None), (12, 12, 0, 0)),  # past the end: nothing
        ((None, None, None, None, None), (0, 0, None, 0)),
    ],
)
def test_plan_partition(args: tuple[Any, ...], expected: tuple[Any, ...]) -> None:
    p = plan_partition(0, *args)
    assert (p.next, p.stop, p.begin, p.journal_stop) == expected
    assert PartitionPlan.from_json(p.to_json()) == p


def test_time_gate_has_offsets_for_times_semantics() -> None:
    plan = PartitionPlan(0, 0, 100, 0)
    seen = [gate(plan, ts, 1000, 2000) for ts in (900, 1000, 950, 1500, 2000, 1200)]
    # skip until the first record at/after the start (then later ones count even if older),
    # stop at the first record at/after the end
    assert seen == [False, True, True, True, None, True]


def test_key_and_source_filters() -> None:
    assert key_matches(None, None)
    assert key_matches("crm:C1", b"crm:C1") and not key_matches("crm:C1", b"crm:C10")
    assert key_matches("crm:C*", b"crm:C10") and not key_matches("crm:C*", b"erp:C1")
    rec = InboundRecord("t", 0, 0, b'{"source_system": "erp"}')
    assert source_system_of(rec) == "erp"
    rec = InboundRecord("t", 0, 0, b"{}", headers=(("eai.source_system", b"crm"),))
    assert source_system_of(rec) == "crm"
    assert source_system_of(InboundRecord("t", 0, 0, b"not json")) is None


def test_redact_and_bound_audit_params() -> None:
    params = {"name": "x", "token": "eai_secret", "nested": [{"Authorization": "Bearer y"}]}
    out = redact(params)
    assert out == {"name": "x", "token": "***", "nested": [{"Authorization": "***"}]}
    big = bounded({"patch": "x" * 100_000})
    assert big["truncated"] is True and len(big["head"]) == 2000


def test_tokens_are_random_prefixed_and_hashed() -> None:
    a, b = new_token(), new_token()
    assert a != b and a.startswith("eai_") and len(a) >= 40
    assert hash_token(a) == hashlib.sha256(a.encode()).hexdigest()
    assert Role.admin.allows(Role.operator) and not Role.viewer.allows(Role.operator)


async def test_first_start_creates_one_admin_token(sessions: Any, capsys: Any) -> None:
    token = await ensure_admin_token(sessions, None)
    assert token is not None and token.startswith("eai_")
    assert await ensure_admin_token(sessions, None) is None, "only on the first start"
    print_bootstrap_token(token)
    assert token in capsys.readouterr().err
    async with sessions() as s:
        rows = list((await s.execute(select(ApiToken))).scalars())
    assert [(r.name, r.role) for r in rows] == [(BOOTSTRAP_NAME, "admin")]
    assert rows[0].token_hash == hash_token(token) and token not in rows[0].hint


async def test_configured_admin_token_is_stored_hashed(sessions: Any) -> None:
    configured = "my-configured-admin-token-0123456789"
    assert await ensure_admin_token(sessions, configured) is None
    assert await ensure_admin_token(sessions, configured) is None
    async with sessions() as s:
        rows = list((await s.execute(select(ApiToken))).scalars())
    assert len(rows) == 1 and rows[0].token_hash == hash_token(configured)
    assert configured not in (rows[0].hint + rows[0].name)


async def test_a_changed_configured_admin_token_replaces_the_old_one(sessions: Any) -> None:
    old, new = "first-configured-admin-token-0123456", "second-configured-admin-token-98765"
    assert await ensure_admin_token(sessions, old) is None
    minted = await ensure_admin_token(sessions, None)  # a bootstrap token is never touched
    assert minted is None, "an admin token exists: nothing minted"
    assert await ensure_admin_token(sessions, new) is None
    async with sessions() as s:
        rows = {r.token_hash: r for r in (await s.execute(select(ApiToken))).scalars()}
    assert rows[hash_token(old)].revoked_at is not None, "the old value no longer works"
    assert rows[hash_token(new)].revoked_at is None
    assert await ensure_admin_token(sessions, new) is None
    async with sessions() as s:
        active = (
            await s.execute(select(ApiToken.token_hash).where(ApiToken.revoked_at.is_(None)))
        ).scalars()
        assert list(active) == [hash_token(new)]
