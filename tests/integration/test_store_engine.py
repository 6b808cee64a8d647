"""The store engine's PostgreSQL sessions plan each statement for its parameters (decision 31):
with PostgreSQL's default, a 500-id ledger lookup fell to a generic plan made while the ledger
was small, 300 ms instead of 5 ms (bench/ledger_plans.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from hub.store import db


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_postgres_sessions_plan_each_statement_for_its_parameters(store_url: str) -> None:
    engine = db.create_engine(store_url)
    try:
        async with db.sessionmaker(engine)() as s:
            assert await s.scalar(text("SHOW plan_cache_mode")) == "force_custom_plan"
    finally:
        await engine.dispose()
