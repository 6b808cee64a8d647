"""The delivery flow of one target system: ``outbound.<system>`` -> the ``deliveries`` queue.

It only writes rows, in the batch's store transaction (ledger, dead letters and all, as every
flow); the HTTP call is the deliverer's, after the commit. So a slow or failing target never
holds a Kafka batch, a partition or another system back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event

from contracts import topics
from hub.core.processor import FlowContext, FlowSpec, Item
from hub.delivery import queue


def spec(system: str, on_enqueued: Callable[[], None] | None = None) -> FlowSpec:
    """``on_enqueued`` runs after a commit that queued something (wakes the deliverer)."""

    async def handle(ctx: FlowContext, items: list[Item]) -> None:
        if await queue.enqueue(ctx.session, system, items) and on_enqueued is not None:
            notify = on_enqueued

            def committed(_session: Any) -> None:
                notify()

            event.listen(ctx.session.sync_session, "after_commit", committed, once=True)

    return FlowSpec(name=queue.flow_name(system), topics=[topics.outbound(system)], handle=handle)
