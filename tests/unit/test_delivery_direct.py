"""Messages the hub's flows send to a system it delivers to are queued in the flow's own batch
transaction (decision 54): no outbox row, no ``outbound.<system>`` hop, and still exactly
once, in per-key order, rolled back with a failing message, echoes suppressed."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import select

from connectors.common.sink import DeliveryResult, Outcome
from contracts import topics
from contracts.envelope import Envelope
from flows.sync.config import load_config
from flows.sync.master import second_copy_policy
from hub.core.errors import PermanentError
from hub.core.inbound import InboundRecord
from hub.core.processor import BatchProcessor, FlowContext, FlowSpec, Item
from hub.delivery import queue, xref
from hub.delivery.flow import DirectDelivery
from hub.delivery.policy import Decision, Verdict
from hub.replay import FlowTarget
from hub.settings import Settings
from hub.store.delivery_models import KEY_LEN, PENDING, SUPPRESSED, Delivery, Xref
from hub.store.models import DeadLetter, OutboxRow
from hub.sync_unparker import Unparker
from tests.helpers import customer_env
from tests.unit.test_sync_unparker_retry import parked_order


async def send_on(ctx: FlowContext, items: list[Item]) -> None:
    """A sync-like flow: each message to ERP and DRP under the key the body names."""
    for item in items:
        env = item.env
        if env.body.get("name") == "boom":
            ctx.emit(topics.outbound("erp"), env.caused(), key="G-boom")
            raise PermanentError("field 'body.name' value 'boom': refused by the test rule")
        key = str(env.body.get("key") or env.source_id)
        ctx.emit(topics.outbound("erp"), env.caused(), key=key)
        ctx.emit(topics.outbound("drp"), env.caused(), key=key)


def rec(env: Envelope, offset: int) -> InboundRecord:
    return InboundRecord("golden.customer", 0, offset, env.to_bytes(), env.key.encode())


def card(i: int, key: str, *, name: str | None = None) -> Envelope:
    env = customer_env(i, name=name)
    return env.model_copy(update={"body": {**env.body, "key": key}})


class Woken(list[str]):
    def __call__(self, system: str) -> None:
        self.append(system)


def processor(sessions: Any, woken: Woken) -> BatchProcessor:
    # ERP is delivered by this hub, DRP is not (its topic has consumers elsewhere)
    route = DirectDelivery(["erp"], woken)
    spec = FlowSpec("sync.test", ["golden.customer"], send_on, validate_body=False)
    return BatchProcessor(spec, sessions, max_message_bytes=100_000, route=route)


async def rows(sessions: Any) -> tuple[list[Any], list[Any]]:
    async with sessions() as s:
        deliveries = list(await s.scalars(select(Delivery).order_by(Delivery.id)))
        outbox = list(await s.scalars(select(OutboxRow).order_by(OutboxRow.id)))
    return deliveries, outbox


async def test_a_message_to_a_delivered_system_is_queued_not_published(sessions: Any) -> None:
    woken = Woken()
    a = card(1, "G-1")
    await processor(sessions, woken).process([rec(a, 0)])
    deliveries, outbox = await rows(sessions)
    [d] = deliveries
    assert (d.system, d.key, d.seq, d.status) == ("erp", "G-1", 1, PENDING)
    sent = Envelope.from_bytes(d.envelope.encode())
    assert sent.causation_id == a.message_id and str(sent.message_id) == d.message_id
    assert d.topic == topics.outbound("erp")
    # no Kafka partition: a dead letter made of it must not point at a record of outbound.erp
    assert (d.partition, d.offset) == (-1, -1)
    # the system it does not deliver still gets its topic; ERP's topic gets nothing
    assert [(o.topic, o.key) for o in outbox] == [(topics.outbound("drp"), b"G-1")]
    assert woken == ["erp"], "the deliverer is woken once the batch committed"


async def test_a_key_keeps_its_order_and_a_redelivered_batch_is_queued_once(
    sessions: Any,
) -> None:
    woken = Woken()
    p = processor(sessions, woken)
    first, second = card(1, "G-7"), card(2, "G-7")
    await p.process([rec(first, 0)])
    await p.process([rec(second, 1)])
    await p.process([rec(first, 0), rec(second, 1)])  # Kafka redelivers: the ledger skips it
    deliveries, _ = await rows(sessions)
    causes = [Envelope.from_bytes(d.envelope.encode()).causation_id for d in deliveries]
    assert causes == [first.message_id, second.message_id]
    assert [d.seq for d in deliveries] == [1, 2]


async def test_a_failing_message_queues_nothing_and_the_others_are_queued(sessions: Any) -> None:
    woken = Woken()
    good, bad = card(1, "G-1"), card(2, "G-2", name="boom")
    stats = await processor(sessions, woken).process([rec(bad, 0), rec(good, 1)])
    assert (stats.applied, stats.dead_lettered) == (1, 1)
    deliveries, _ = await rows(sessions)
    assert [d.key for d in deliveries] == ["G-1"], "the failed message's send was rolled back"
    async with sessions() as s:
        assert (await s.scalar(select(DeadLetter.message_id))) == str(bad.message_id)


async def test_an_echo_is_recorded_suppressed_and_wakes_nobody(sessions: Any) -> None:
    woken = Woken()
    env = customer_env(1, system="erp")  # came from ERP: its caused message must not go back
    await processor(sessions, woken).process([rec(env.model_copy(update={"body": {}}), 0)])
    deliveries, _ = await rows(sessions)
    assert [d.status for d in deliveries] == [SUPPRESSED]
    assert woken == []


async def test_a_key_the_queue_refuses_goes_to_the_topic_to_be_dead_lettered(
    sessions: Any,
) -> None:
    woken = Woken()
    long_key = "G-" + "x" * KEY_LEN
    await processor(sessions, woken).process([rec(card(1, long_key), 0)])
    deliveries, outbox = await rows(sessions)
    assert deliveries == []
    assert sorted(o.topic for o in outbox) == [topics.outbound("drp"), topics.outbound("erp")]


async def test_the_deliverers_quarantine_of_a_second_copy_is_queued_directly(
    sessions: Any,
) -> None:
    gid = f"G-{uuid.uuid4().hex[:8]}"
    golden = customer_env(1, system="erp").model_copy(
        update={"body": {"kind": "organization", "name": "甲"}}
    )
    item = Item(
        InboundRecord(topics.outbound("crm"), 0, 1, golden.to_bytes(), gid.encode()), golden, None
    )
    async with sessions() as s, s.begin():
        await queue.enqueue(s, "crm", [item])
    async with sessions() as s, s.begin():
        [job] = await queue.claim(s, "crm", "w1", 10, lease_s=30, now=datetime.now(UTC))
    async with sessions() as s, s.begin():  # the clerk's own copy was linked meanwhile
        await xref.link_if_absent(s, "customer", gid, "crm", "KH-CLERK")
    result = DeliveryResult(Outcome.delivered, "crm", "customer", 201, "KH-HUB")
    policy = second_copy_policy(load_config().master)
    async with sessions() as s, s.begin():
        await queue.finish(
            s,
            job,
            "w1",
            result,
            Decision(Verdict.delivered),
            now=datetime.now(UTC),
            second_copy=policy,
            direct=True,
        )
    deliveries, outbox = await rows(sessions)
    dup = xref.duplicate_key(gid, "crm", "KH-HUB")
    assert outbox == []
    [quarantine] = [d for d in deliveries if d.key == dup]
    assert quarantine.status == PENDING
    body = json.loads(quarantine.envelope)["body"]
    assert body["frozen"] is True and "KH-CLERK" in body["attributes"]["quarantine"]


async def test_an_order_the_unparker_releases_is_queued_like_the_flows_next_version(
    sessions: Any, monkeypatch: Any
) -> None:
    """The order flow queues an order's later versions directly: a released one that took the
    topic could reach the queue after them, and its older version would win in ERP."""
    now = datetime.now(UTC)
    async with sessions() as s, s.begin():
        s.add(Xref(entity="customer", key="G-1", system="erp", local_id="K1", updated_at=now))
        s.add(parked_order(now))
    woken = Woken()
    unparker = Unparker(sessions, load_config(), route=DirectDelivery(["erp"], woken))
    order = customer_env(1)
    pages = iter([(1, 7), (0, 7)])

    async def release(ctx: FlowContext, limit: int, at: datetime, after: int = 0) -> Any:
        if after == 0:
            ctx.emit(topics.outbound("erp"), order.caused(), key="crm:SO1")
        return next(pages)

    [router] = unparker.routers
    monkeypatch.setattr(router, "release", release)
    assert await unparker.pass_once(force=True) == 1
    deliveries, outbox = await rows(sessions)
    assert [(d.system, d.key, d.status) for d in deliveries] == [("erp", "crm:SO1", PENDING)]
    assert outbox == [] and woken == ["erp"]


async def test_a_replay_into_a_flow_queues_its_messages_as_the_live_flow_does(
    sessions: Any,
) -> None:
    """A replay for real through the sync flow, forced: what it sends to ERP is queued the
    way the live flow's messages of the same key are (an older event replayed after a live
    one must not take a slower path and overtake, nor be overtaken by, the live one)."""
    woken = Woken()
    hub = SimpleNamespace(
        settings=Settings(),
        relay=None,
        delivery=SimpleNamespace(route=lambda: DirectDelivery(["erp"], woken)),
    )
    run = SimpleNamespace(hub=hub, sessions=sessions, job=SimpleNamespace(id="J1"))
    spec = FlowSpec("sync.test", ["golden.customer"], send_on, validate_body=False)
    target = FlowTarget(cast(Any, run), spec, force=True)
    await target.deliver([rec(card(1, "G-9"), 0)])
    deliveries, outbox = await rows(sessions)
    assert [(d.system, d.key) for d in deliveries] == [("erp", "G-9")]
    assert [o.topic for o in outbox] == [topics.outbound("drp")]
    assert target.report()["applied"] == 1
