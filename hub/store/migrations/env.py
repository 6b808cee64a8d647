"""Alembic environment: run against the connection handed over by hub.store.db.migrate,
or against EAI_DATABASE_URL when invoked from the alembic command line."""

from __future__ import annotations

import asyncio

from alembic import context

from hub.store.models import Base

target_metadata = Base.metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    from hub.settings import get_settings
    from hub.store.db import create_engine

    async def _main() -> None:
        engine = create_engine(get_settings().database_url)
        async with engine.begin() as conn:
            await conn.run_sync(_run)
        await engine.dispose()

    asyncio.run(_main())
