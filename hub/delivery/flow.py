"""The delivery flow of one target system: ``outbound.<system>`` -> the ``deliveries`` queue.

It only writes rows, in the batch's store transaction (ledger, dead letters and all, as every
flow); the HTTP call is the deliverer's, after the commit. So a slow or failing target never
holds a Kafka batch, a partition or another system back.

The hub's own flows do not go through the topic for the systems it delivers to
(``DirectDelivery``, decision 54): what they emit to ``outbound.<system>`` is queued in their
own batch transaction, which is exactly what this flow would have done one Kafka hop later.
The topic keeps what comes from elsewhere: re-drives and replays of it, and producers outside
the hub's flows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import topics
from hub.core.outbox import add_rows, envelope_values
from hub.core.processor import FlowContext, FlowSpec, Item, Routed
from hub.delivery import queue
from hub.store.delivery_models import KEY_LEN


def spec(system: str, on_enqueued: Callable[[], None] | None = None) -> FlowSpec:
    """``on_enqueued`` runs after a commit that queued something (wakes the deliverer)."""

    async def handle(ctx: FlowContext, items: list[Item]) -> None:
        if await queue.enqueue(ctx.session, system, items):
            _wake_after_commit(ctx.session, on_enqueued)

    return FlowSpec(name=queue.flow_name(system), topics=[topics.outbound(system)], handle=handle)


def _wake_after_commit(session: AsyncSession, notify: Callable[[], None] | None) -> None:
    if notify is None:
        return
    wake = notify

    def committed(_session: Any) -> None:
        wake()

    event.listen(session.sync_session, "after_commit", committed, once=True)


class DirectDelivery:
    """``outbound.<system>`` of the systems this hub delivers to, queued in the emitting
    transaction (``hub.core.processor.DirectRoute``). Every worker of one deployment runs
    with the same targets, so a key's messages take one path and keep their order."""

    def __init__(self, systems: Iterable[str], wake: Callable[[str], None]) -> None:
        self.systems = {topics.outbound(s): s for s in systems}
        self.topics = frozenset(self.systems)
        self.wake = wake

    async def write(self, session: AsyncSession, routed: list[Routed]) -> None:
        by_system: dict[str, list[Item]] = {}
        refused = []
        for msg in routed:
            if len(msg.key) > KEY_LEN:
                # the queue refuses it (a permanent error, which here would fail the emitting
                # batch for ever); through the topic the delivery flow dead-letters it
                refused.append(envelope_values(msg.topic, msg.env, msg.key))
                continue
            by_system.setdefault(self.systems[msg.topic], []).append(queue.routed_item(msg))
        await add_rows(session, refused)
        for system, items in by_system.items():
            if await queue.enqueue(session, system, items):
                _wake_after_commit(session, functools.partial(self.wake, system))
