"""GET /golden/{entity} at scale: newest change first from an index, the count capped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import insert, text

from hub.api.admin import bootstrap_admin, install
from hub.api.app import create_app
from hub.runtime import Hub
from hub.settings import Settings
from hub.store import db
from hub.store.identity_models import GoldenRecord
from tests.conftest import AUTH, TEST_TOKEN

pytestmark = pytest.mark.integration


async def test_golden_list_pages_newest_first_and_caps_the_count(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hub.api.golden as golden

    hub = Hub(Settings(database_url=store_url, admin_token=TEST_TOKEN), serve_api=False)
    hub.engine = db.create_engine(store_url)
    await db.migrate(hub.engine)
    hub.sessions = db.sessionmaker(hub.engine)
    try:
        await bootstrap_admin(hub)
        t0 = datetime(2026, 11, 24, tzinfo=UTC)
        rows = [
            {
                "golden_id": f"G-{i}",
                "entity": "customer",
                "profile": {},
                "record": {"name": f"公司{i}"},
                "winners": {},
                "status": "active",
                "name": f"公司{i}",
                "search_text": f"公司{i} crm:c{i:05d}",
                "member_count": 1,
                "version": 1,
                "created_at": t0,
                "updated_at": t0 + timedelta(minutes=i),
            }
            for i in range(5)
        ]
        async with hub.sessions() as s, s.begin():
            await s.execute(insert(GoldenRecord), rows)
        app = install(create_app(hub))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub", headers=AUTH) as c:
            page = (await c.get("/golden/customer", params={"limit": 2})).json()
            assert [g["golden_id"] for g in page["items"]] == ["G-4", "G-3"]
            assert (page["total"], page["total_exact"]) == (5, True)
            # shorter than a trigram: PostgreSQL searches it without the trigram index
            short = (await c.get("/golden/customer", params={"q": "司3"})).json()
            assert [g["golden_id"] for g in short["items"]] == ["G-3"], short

            monkeypatch.setattr(golden, "COUNT_CAP", 3)
            page = (await c.get("/golden/customer", params={"limit": 2, "offset": 2})).json()
            assert [g["golden_id"] for g in page["items"]] == ["G-2", "G-1"]
            assert (page["total"], page["total_exact"]) == (3, False), "more than the cap match"
            found = (await c.get("/golden/customer", params={"q": "CRM:C00003"})).json()
            assert [g["golden_id"] for g in found["items"]] == ["G-3"]
            assert (found["total"], found["total_exact"]) == (1, True)

        if hub.engine.dialect.name == "postgresql":
            query = text("SELECT indexname FROM pg_indexes WHERE tablename = 'golden_records'")
            async with hub.engine.connect() as conn:
                names = set((await conn.execute(query)).scalars())
            assert {"ix_golden_records_list", "ix_golden_records_search_trgm"} <= names
    finally:
        await hub.engine.dispose()
