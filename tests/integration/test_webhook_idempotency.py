"""A webhook retried with its Idempotency-Key gets the first answer and publishes nothing
again (decision 56): another body under the key is refused, simultaneous retries publish
once, the answers survive a restart of the hub and expire after their retention."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from hub.runtime import Hub
from hub.store.models import OutboxRow
from tests.conftest import AUTH
from tests.integration.test_ingest import api_hub, crm_customers

pytestmark = pytest.mark.integration

URL = "/connectors/crm/customer"


async def published(hub: Hub) -> int:
    """Records the webhook handed to the outbox for canonical topics."""
    assert hub.sessions is not None
    async with hub.sessions() as s:
        q = select(func.count()).select_from(OutboxRow).where(OutboxRow.topic.like("canonical.%"))
        return int(await s.scalar(q) or 0)


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def test_the_same_key_with_another_body_is_refused_and_keys_are_per_system(
    broker: str, store_url: str
) -> None:
    one, two = crm_customers(2)
    async with (
        api_hub(broker, store_url) as (hub, url),
        httpx.AsyncClient(base_url=url, headers=AUTH) as c,
    ):
        first = await c.post(URL, json=one, headers=keyed("k-1"))
        assert first.status_code == 202, first.text
        other = await c.post(URL, json=two, headers=keyed("k-1"))
        assert other.status_code == 422
        assert "'k-1'" in other.json()["detail"]
        assert "different request" in other.json()["detail"]
        assert await published(hub) == 1
        # the key names one request of one system: the DRP may use it too
        dealer = {"dealer_name": "广州市恒润电器贸易有限公司", "region": "HN", "grade": "A",
                  "status": "1", "dealer_code": "JXS-GD-0001"}  # fmt: skip
        drp = await c.post("/connectors/drp/distributor", json=dealer, headers=keyed("k-1"))
        assert drp.status_code == 202, drp.text
        assert "Idempotent-Replayed" not in drp.headers
        assert await published(hub) == 2


async def test_simultaneous_retries_publish_once(broker: str, store_url: str) -> None:
    batch = crm_customers(3)
    async with (
        api_hub(broker, store_url) as (hub, url),
        httpx.AsyncClient(base_url=url, headers=AUTH) as c,
    ):
        answers = await asyncio.gather(
            *(c.post(URL, json=batch, headers=keyed("storm")) for _ in range(8))
        )
        assert [a.status_code for a in answers] == [202] * 8
        assert len({tuple(a.json()["message_ids"]) for a in answers}) == 1
        assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 7
        assert await published(hub) == 3


async def test_answers_survive_a_restart_and_expire_after_their_retention(
    broker: str, store_url: str
) -> None:
    batch = crm_customers(2)
    async with (
        api_hub(broker, store_url) as (hub, url),
        httpx.AsyncClient(base_url=url, headers=AUTH) as c,
    ):
        first = await c.post(URL, json=batch, headers=keyed("k-restart"))
        answered_at = time.monotonic()
        assert first.status_code == 202, first.text
        assert await published(hub) == 2
    async with (
        api_hub(broker, store_url) as (hub, url),
        httpx.AsyncClient(base_url=url, headers=AUTH) as c,
    ):
        again = await c.post(URL, json=batch, headers=keyed("k-restart"))
        assert (again.status_code, again.json()) == (202, first.json())
        assert again.headers["Idempotent-Replayed"] == "true"
        assert await published(hub) == 2
    await asyncio.sleep(max(0.0, answered_at + 2.0 - time.monotonic()))
    async with (
        api_hub(broker, store_url, webhook_idempotency_retention_s=1.5) as (hub, url),
        httpx.AsyncClient(base_url=url, headers=AUTH) as c,
    ):
        late: Any = await c.post(URL, json=batch, headers=keyed("k-restart"))
        assert late.status_code == 202, late.text
        assert "Idempotent-Replayed" not in late.headers
        assert await published(hub) == 4  # a new request after the retention
        # and its answer is kept again for its retries
        retry = await c.post(URL, json=batch, headers=keyed("k-restart"))
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert await published(hub) == 4
