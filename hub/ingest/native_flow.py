"""The raw-topic flow: `{system}.{entity}.native` records from systems that publish to Kafka
themselves, mapped by their connector to canonical envelopes."""

from __future__ import annotations

from contracts import topics
from contracts.envelope import Envelope
from contracts.errors import ContractError
from hub.core.errors import PermanentError
from hub.core.inbound import InboundRecord
from hub.core.processor import FlowContext, FlowSpec, Item
from hub.ingest.store import stable_id

NAME = "native"


def native_topics() -> dict[str, tuple[str, str]]:
    from connectors.registry import CONNECTORS

    return {
        topics.native(system, name): (system, name)
        for system, conn in CONNECTORS.items()
        for name in conn.inbound_entities
    }


def _decode(rec: InboundRecord) -> Envelope:
    """A raw record has no envelope: its identity for the ledger is its place in the log."""
    from connectors.registry import CONNECTORS

    system, name = native_topics()[rec.topic]
    if rec.value is None:
        raise ContractError("value", None, "a native record must have a value")
    binding = CONNECTORS[system].binding(name)
    # A re-driven copy lands at a new offset; its identity is the dead letter it re-drives,
    # so re-driving the same dead letter twice is a duplicate for the ledger.
    redriven = rec.header("eai.redrive.dead_letter_id")
    identity = ("redrive", redriven) if redriven else (rec.topic, rec.partition, rec.offset)
    return Envelope(
        message_id=stable_id("native", *identity),
        entity=binding.entity,
        source_system=system,
        source_id=f"{rec.topic}@{rec.partition}:{rec.offset}",
    )


async def handle(ctx: FlowContext, items: list[Item]) -> None:
    from connectors.common.errors import Rejection
    from connectors.registry import CONNECTORS

    for item in items:
        system, name = native_topics()[item.rec.topic]
        results = CONNECTORS[system].decode(name, item.rec.value or b"", source="kafka")
        bad = [r for r in results if isinstance(r, Rejection)]
        if bad:
            raise PermanentError("; ".join(r.reason for r in bad), stage="validate")
        for i, env in enumerate(results):
            assert isinstance(env, Envelope)
            env = env.model_copy(update={"message_id": stable_id(item.env.message_id, i)})
            ctx.emit(topics.canonical(env.entity), env)


def spec() -> FlowSpec:
    return FlowSpec(
        name=NAME,
        topics=sorted(native_topics()),
        handle=handle,
        validate_body=False,
        journal=True,
        decode=_decode,
    )
