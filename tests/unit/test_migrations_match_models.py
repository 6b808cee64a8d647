"""The Alembic migrations build exactly the schema the models declare.

A column added to a model without a migration works in a test that creates tables from the
models and breaks on a customer's upgraded database; this test fails instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from hub.store import db
from hub.store.models import Base


async def test_migrated_sqlite_schema_equals_the_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    engine = db.create_engine(url)
    await db.migrate(engine)
    await engine.dispose()
    sync = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with sync.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diffs: list[Any] = [d for d in compare_metadata(ctx, Base.metadata) if not _ignorable(d)]
    sync.dispose()
    assert not diffs, "models and migrations disagree:\n" + "\n".join(map(str, diffs))


def _ignorable(diff: Any) -> bool:
    # alembic_version is Alembic's own table
    return (
        isinstance(diff, tuple) and diff[0] == "remove_table" and diff[1].name == "alembic_version"
    )
