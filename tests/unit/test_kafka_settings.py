"""External broker settings become the right client options."""

from __future__ import annotations

from hub.broker.kafka import client_kwargs, idempotence
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
