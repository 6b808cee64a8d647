"""External broker settings become the right client options."""

from __future__ import annotations

from hub.broker.kafka import client_kwargs, fetch_max_wait_ms, idempotence
from hub.settings import Settings


def test_sasl_scram_over_tls_is_configured() -> None:
    s = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="hub",
        kafka_sasl_password="s3cret",  # type: ignore[arg-type]
    )
    kw = client_kwargs(s, "kafka-1:9093,kafka-2:9093")
    assert kw["bootstrap_servers"] == "kafka-1:9093,kafka-2:9093"
    assert kw["security_protocol"] == "SASL_SSL"
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("hub", "s3cret")
    assert kw["ssl_context"] is not None
    assert "s3cret" not in repr(s), "the password never shows in a settings dump"


def test_plaintext_has_no_tls_or_sasl() -> None:
    kw = client_kwargs(Settings(), "127.0.0.1:9092")
    assert "ssl_context" not in kw and "sasl_mechanism" not in kw


def test_idempotence_is_off_only_for_the_embedded_broker() -> None:
    assert idempotence(Settings(), tansu=False) is True
    assert idempotence(Settings(), tansu=True) is False
    assert idempotence(Settings(kafka_idempotence="off"), tansu=False) is False


def test_the_embedded_broker_gets_a_short_fetch_wait() -> None:
    """Tansu holds a fetch for its whole wait even when records arrive meanwhile (decision 54:
    133 ms per hop at the median at 500 ms, 14 ms at 50); Apache Kafka answers at once, so it
    keeps the client's default; a configured value wins on both."""
    assert fetch_max_wait_ms(Settings(), tansu=True) == 50
    assert fetch_max_wait_ms(Settings(), tansu=False) == 500
    tuned = Settings(kafka_fetch_max_wait_ms=200)
    assert fetch_max_wait_ms(tuned, tansu=True) == fetch_max_wait_ms(tuned, tansu=False) == 200
