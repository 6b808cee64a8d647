"""Pure delivery rules: echo suppression, the retry schedule, outcome -> decision, targets."""

from __future__ import annotations

import pytest

from connectors.common.sink import DeliveryResult, Outcome
from contracts.envelope import Entity, Envelope, Op
from hub.delivery.config import DeliveryConfig, parse_targets
from hub.delivery.policy import RETRY_AFTER_CAP_S, Verdict, backoff_delay, decide, is_echo


def env(source: str = "crm", trace: tuple[str, ...] = (), op: Op = Op.upsert) -> Envelope:
    return Envelope(
        entity=Entity.customer, op=op, source_system=source, source_id="C1", trace=trace
    )


# ----------------------------------------------------------------------------- echo
def test_a_change_never_goes_back_to_its_source() -> None:
    assert is_echo(env("crm"), "crm")
    assert not is_echo(env("crm"), "erp")


def test_a_change_that_visited_a_system_is_not_sent_there_again() -> None:
    e = env("hub", trace=("crm", "erp"))
    assert is_echo(e, "crm") and is_echo(e, "erp")
    assert not is_echo(e, "drp")


def test_caused_messages_carry_the_origin_on_their_trace() -> None:
    from_crm = env("crm").caused(source_system="hub")
    assert from_crm.trace == ("crm",)
    assert is_echo(from_crm, "crm") and not is_echo(from_crm, "oa")


@pytest.mark.parametrize("op", [Op.status, Op.decide])
def test_replies_go_back_to_the_system_on_the_trace(op: Op) -> None:
    # ERP's order status back to the CRM that took the order; a decision back to the asker.
    assert not is_echo(env("erp", trace=("crm",), op=op), "crm")
    # ...but never to the system that made the reply.
    assert is_echo(env("erp", trace=("crm",), op=op), "erp")


# ----------------------------------------------------------------------------- backoff
def test_backoff_doubles_to_the_cap_with_equal_jitter() -> None:
    low = [backoff_delay(n, 0.5, 10.0, rand=lambda: 0.0) for n in range(1, 9)]
    high = [backoff_delay(n, 0.5, 10.0, rand=lambda: 1.0) for n in range(1, 9)]
    assert low == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert high == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_backoff_jitter_spreads_keys_that_failed_together() -> None:
    import random

    rng = random.Random(7)
    delays = {round(backoff_delay(3, 0.5, 10.0, rand=rng.random), 6) for _ in range(50)}
    assert len(delays) > 40
    assert all(1.0 <= d <= 2.0 for d in delays)


def test_retry_after_is_a_floor_with_a_cap() -> None:
    assert backoff_delay(1, 0.5, 10.0, retry_after=7.0, rand=lambda: 0.0) == 7.0
    assert backoff_delay(5, 0.5, 10.0, retry_after=0.1, rand=lambda: 1.0) == 8.0
    assert backoff_delay(1, 0.5, 10.0, retry_after=1e9) == RETRY_AFTER_CAP_S


def test_backoff_survives_absurd_attempt_counts() -> None:
    assert backoff_delay(10_000, 0.5, 60.0, rand=lambda: 1.0) == 60.0
    with pytest.raises(ValueError):
        backoff_delay(0, 0.5, 60.0)


# ----------------------------------------------------------------------------- decide
def result(outcome: Outcome, reason: str = "", retry_after: float | None = None) -> DeliveryResult:
    return DeliveryResult(outcome, "crm", "customer", reason=reason, retry_after=retry_after)


def test_decisions_for_each_outcome() -> None:
    assert (
        decide(result(Outcome.delivered), 1, 8, initial_s=1, max_s=30).verdict is Verdict.delivered
    )
    assert (
        decide(result(Outcome.duplicate), 3, 8, initial_s=1, max_s=30).verdict is Verdict.delivered
    )
    retry = decide(
        result(Outcome.transient, "HTTP 503", retry_after=4), 2, 8, initial_s=1, max_s=30
    )
    assert (retry.verdict, retry.delay_s, retry.reason) == (Verdict.retry, 4.0, "HTTP 503")
    dead = decide(
        result(Outcome.permanent, "HTTP 404 from crm: no customer X"), 1, 8, initial_s=1, max_s=30
    )
    assert dead.verdict is Verdict.dead and dead.error_class == "DeliveryRefused"
    assert "HTTP 404" in dead.reason and "attempt 1" in dead.reason


def test_the_last_attempt_dead_letters_with_the_last_error_and_the_count() -> None:
    seventh = decide(result(Outcome.transient, "timeout"), 7, 8, initial_s=1, max_s=30)
    assert seventh.verdict is Verdict.retry
    d = decide(result(Outcome.transient, "timeout after 10s"), 8, 8, initial_s=1, max_s=30)
    assert d.verdict is Verdict.dead and d.error_class == "DeliveryRetriesExhausted"
    assert d.reason == "timeout after 10s (gave up after 8 attempts)"


# ----------------------------------------------------------------------------- config
def test_targets_parse_and_systems_without_url_are_skipped() -> None:
    got = parse_targets(" crm=http://127.0.0.1:8101/ , erp=https://erp.example:443,pdm=,")
    assert got == {"crm": "http://127.0.0.1:8101", "erp": "https://erp.example:443"}
    assert parse_targets("") == {}


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("crm", "expected system=url"),
        ("sap=http://x", "unknown system 'sap'"),
        ("crm=ftp://x", r"must be http\(s\)"),
        ("crm=http://a,crm=http://b", "given twice"),
    ],
)
def test_bad_targets_are_start_up_errors(text: str, fault: str) -> None:
    with pytest.raises(ValueError, match=fault):
        parse_targets(text)


def test_config_from_settings_reads_only_delivery_fields() -> None:
    class S:
        delivery_targets = "oa=http://127.0.0.1:8104"
        delivery_max_attempts = 3
        batch_size = 7

    c = DeliveryConfig.from_settings(S())
    assert c.targets == {"oa": "http://127.0.0.1:8104"} and c.max_attempts == 3
    assert c.concurrency == DeliveryConfig().concurrency


def test_lease_must_outlive_the_call_timeout() -> None:
    with pytest.raises(ValueError, match="delivery_lease_s"):
        DeliveryConfig(timeout_s=10, lease_s=10)
    with pytest.raises(ValueError, match="backoff"):
        DeliveryConfig(backoff_initial_ms=5000, backoff_max_ms=100)


def test_a_retry_timeout_makes_the_budget_time_not_attempts() -> None:
    # ninth attempt, two minutes into a ten-minute budget: max_attempts no longer applies
    ninth = decide(
        result(Outcome.transient, "HTTP 503"),
        9,
        8,
        initial_s=1,
        max_s=300,
        failing_for_s=120,
        retry_timeout_s=600,
    )
    assert ninth.verdict is Verdict.retry
    late = decide(
        result(Outcome.transient, "connection refused"),
        12,
        8,
        initial_s=1,
        max_s=300,
        failing_for_s=601,
        retry_timeout_s=600,
    )
    assert late.verdict is Verdict.dead and late.error_class == "DeliveryRetriesExhausted"
    assert late.reason.startswith("connection refused (gave up after 12 attempts")
    assert "retry timeout 600s" in late.reason


def test_the_last_wait_of_a_retry_timeout_ends_at_the_deadline() -> None:
    d = decide(
        result(Outcome.transient, "timeout"),
        10,
        8,
        initial_s=1,
        max_s=300,
        rand=lambda: 1.0,
        failing_for_s=590,
        retry_timeout_s=600,
    )
    assert d.verdict is Verdict.retry and d.delay_s == 10.0


def test_a_permanent_refusal_is_dead_at_once_even_with_a_retry_timeout() -> None:
    d = decide(
        result(Outcome.permanent, "HTTP 422"),
        1,
        8,
        initial_s=1,
        max_s=30,
        retry_timeout_s=3600,
    )
    assert d.verdict is Verdict.dead and d.error_class == "DeliveryRefused"


def test_a_retry_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="delivery_retry_timeout_s"):
        DeliveryConfig(retry_timeout_s=0)
