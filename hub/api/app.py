"""The admin API (FastAPI): health, readiness, AsyncAPI, metrics, flows."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Response
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub import metrics

if TYPE_CHECKING:
    from hub.runtime import Hub

log = logging.getLogger(__name__)


MONITOR_TTL_S = 5.0  # /topics and the store gauges of /metrics: refreshed behind, this old


def create_app(hub: Hub) -> FastAPI:
    # Swagger UI and ReDoc served by the hub itself (fastapi-offline bundles Swagger UI 5, which
    # renders OpenAPI 3.1): plants' networks often reach no CDN, and /docs was a blank page.
    app = FastAPIOffline(
        title="eai-hub admin API",
        version="0.1.0",
        description="Monitor flows and connectors, dead letters, replay; see docs/.",
    )
    app.state.hub = hub
    from hub.api.admin import install
    from hub.api.auth import Role, require
    from hub.api.urges import router as urges_router
    from hub.ingest.webhook import router as webhook_router

    viewer = [Depends(require(Role.viewer))]
    # each webhook route carries its own auth: operator to push records, viewer to read status
    app.include_router(webhook_router)
    app.include_router(
        urges_router, dependencies=viewer, max_body_size=hub.settings.api_max_body_bytes
    )
    from hub.api.golden import router as golden_router
    from hub.api.parked import router as parked_router

    app.include_router(parked_router, dependencies=viewer)

    # Each golden route carries its own auth: viewer to read, audited operator to change.
    app.include_router(golden_router, max_body_size=hub.settings.api_max_body_bytes)
    from hub.api.dashboard import router as dashboard_router

    app.include_router(dashboard_router)  # the page is public; it holds no data
    install(app)
    asyncapi_doc: dict[str, Any] = {}

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["health"], dependencies=viewer)
    async def ready() -> JSONResponse:
        """Readiness: broker and store reachable."""
        checks = await hub.ready()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/asyncapi.json", tags=["contracts"], dependencies=viewer)
    async def asyncapi() -> dict[str, Any]:
        """AsyncAPI 3.0 document of every topic the hub uses."""
        if not asyncapi_doc:
            from hub.asyncapi import build

            asyncapi_doc.update(build())
        return asyncapi_doc

    from hub.api.cache import Coalesced

    # The store's counts behind the gauges: three queries per scrape, one a scan of the dead
    # letters, repeated by every dashboard that polls /metrics; now at most MONITOR_TTL_S old.
    gauges_cache: Coalesced[None] = Coalesced(ttl_s=MONITOR_TTL_S)

    # Each refresh starts one Kafka consumer per consumer group: CPU in this event loop that
    # every other request waits behind, so not more often than every MONITOR_TTL_S.
    topics_cache: Coalesced[list[dict[str, Any]]] = Coalesced(ttl_s=MONITOR_TTL_S)

    @app.get("/metrics", tags=["monitoring"], response_class=Response, dependencies=viewer)
    async def prometheus() -> Response:
        """Prometheus text format; the metric names are in docs/operations.md."""
        await gauges_cache.get(lambda: refresh_gauges(hub))
        try:
            # eai_consumer_lag is set from the same (shared, cached) broker round as /topics.
            # Bounded well below Prometheus' default scrape_timeout (10 s).
            await asyncio.wait_for(
                topics_cache.get(_topics), min(5.0, hub.settings.kafka_connect_timeout_s)
            )
        except Exception as exc:  # a scrape must still answer when the broker does not
            log.warning("consumer lag not refreshed: %s: %s", type(exc).__name__, exc)
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/topics", tags=["monitoring"], dependencies=viewer)
    async def list_topics() -> list[dict[str, Any]]:
        """Every topic and partition with its true end offset (correct on the embedded broker
        too) and, for each flow consuming it, the offset its consumer group committed (all
        workers together) and the lag. Refreshed in the background once it is five seconds
        old, so no caller waits for the broker round; after a pause of more than fifty seconds
        the next caller waits for a fresh one."""
        return await topics_cache.get(_topics)

    async def _topics() -> list[dict[str, Any]]:
        from hub.broker.kafka import committed_offsets, topic_end_offsets

        parts = await topic_end_offsets(hub.settings, hub.bootstrap)
        groups = {f"{hub.settings.group_prefix}.{r.name}": r for r in hub.runners}
        from aiokafka import TopicPartition

        wanted = {
            gid: [
                TopicPartition(p.topic, p.partition)
                for p in parts
                if p.topic in r.processor.spec.topics
            ]
            for gid, r in groups.items()
        }
        committed = await committed_offsets(hub.settings, hub.bootstrap, wanted)
        consumers: dict[str, list[tuple[str | None, str | None]]] = {}
        for gid, r in groups.items():
            for t in r.processor.spec.topics:
                consumers.setdefault(t, []).append((r.name, gid))
        out: list[dict[str, Any]] = []
        for p in parts:
            for flow, group in consumers.get(p.topic, [(None, None)]):
                pos = committed.get(group, {}).get((p.topic, p.partition)) if group else None
                lag = None
                if flow is not None:
                    lag = p.end_offset - (pos or 0)
                    metrics.CONSUMER_LAG.labels(flow, p.topic, str(p.partition)).set(lag)
                out.append(
                    {
                        "topic": p.topic,
                        "partition": p.partition,
                        "end_offset": p.end_offset,
                        "flow": flow,
                        "position": pos,
                        "lag": lag,
                    }
                )
        return out

    @app.get("/flows", tags=["monitoring"], dependencies=viewer)
    async def flows() -> list[dict[str, Any]]:
        """Each flow with its counters, last error and committed positions."""
        out = []
        for r in hub.runners:
            m = r.metrics
            out.append(
                {
                    "name": r.name,
                    "topics": r.processor.spec.topics,
                    "consumed": m.consumed,
                    "applied": m.applied,
                    "duplicates": m.duplicates,
                    "dead_lettered": m.dead_lettered,
                    "retries": m.retries,
                    "last_error": m.last_error,
                    "positions": [
                        {"topic": t, "partition": p, "offset": o}
                        for (t, p), o in sorted(m.positions.items())
                    ],
                }
            )
        return out

    @app.get("/deliveries", tags=["monitoring"], dependencies=viewer)
    async def deliveries() -> list[dict[str, Any]]:
        """Per target system: delivered, failed, retrying, dead, pending, suppressed (echoes),
        oldest pending age; ``process`` holds this worker's own counters."""
        if hub.delivery is not None and hub.delivery.sessions is not None:
            return await hub.delivery.status()
        from hub.delivery import delivery_status

        assert hub.sessions is not None
        return await delivery_status(hub.sessions)

    return app


async def refresh_gauges(hub: Hub) -> None:
    from sqlalchemy import func, select

    from hub.store.models import DeadLetter, OutboxRow
    from hub.store.sync_models import Parked

    if hub.sessions is None:
        return
    async with hub.sessions() as s:
        parked = await s.scalar(select(func.count()).select_from(Parked))
        pending = await s.scalar(
            select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None))
        )
        dead = await s.scalar(
            select(func.count()).select_from(DeadLetter).where(DeadLetter.status == "new")
        )
    metrics.OUTBOX_PENDING.set(pending or 0)
    metrics.DEAD_LETTERS.set(dead or 0)
    metrics.PARKED.set(parked or 0)
