"""The cross-reference table: a record's canonical key <-> its local id in each system.

``key`` is the key the record travels under on ``outbound.<system>`` (a golden id such as
``G-...``, or ``crm:C00001`` for records without a golden record). The deliverer records the
id a system answers; the sync flows record ids they learn from inbound records. All functions
run in the caller's session and transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub.store.bulk import table_of
from hub.store.delivery_models import Xref

log = logging.getLogger(__name__)

# A second record of one canonical record in one system (a clerk typed it again, or the hub
# created a copy while the system's own record was being linked) travels under
# ``<key>~dup~<system>:<local id>``: linked, so that nothing quoting it is orphaned, and
# quarantined in that system.
DUPLICATE_MARK = "~dup~"


def duplicate_key(key: str, system: str, local_id: str) -> str:
    return f"{key}{DUPLICATE_MARK}{system}:{local_id}"


async def local_id(session: AsyncSession, entity: str, key: str, system: str) -> str | None:
    """The id ``system`` knows the record ``key`` by, or None if it does not have it yet."""
    value: str | None = await session.scalar(
        select(Xref.local_id).where(Xref.entity == entity, Xref.key == key, Xref.system == system)
    )
    return value


async def local_ids(
    session: AsyncSession, system: str, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """``local_id`` for many (entity, key) pairs in one query."""
    wanted = list(set(pairs))
    if not wanted:
        return {}
    rows = await session.execute(
        select(Xref.entity, Xref.key, Xref.local_id).where(
            Xref.system == system, tuple_(Xref.entity, Xref.key).in_(wanted)
        )
    )
    return {(e, k): lid for e, k, lid in rows.tuples()}


async def key_for(session: AsyncSession, entity: str, system: str, local_id: str) -> str | None:
    """The canonical key of the record ``system`` knows as ``local_id``."""
    value: str | None = await session.scalar(
        select(Xref.key).where(
            Xref.entity == entity, Xref.system == system, Xref.local_id == local_id
        )
    )
    return value


async def record(
    session: AsyncSession, entity: str, key: str, system: str, local_id: str
) -> str | None:
    """Remember that ``system`` knows ``key`` as ``local_id`` (insert or move).

    Returns None when recorded. If that local id already belongs to *another* key, nothing
    changes and that other key is returned: two canonical records landed on one target record
    (the target matched them by its own natural key), which an operator must look at; moving
    the id silently would cut the first record off from its target.
    """
    owner = await key_for(session, entity, system, local_id)
    if owner is not None:
        return None if owner == key else owner
    stmt = _upsert(session).values(
        entity=entity, key=key, system=system, local_id=local_id, updated_at=datetime.now(UTC)
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["entity", "key", "system"],
        set_={"local_id": stmt.excluded.local_id, "updated_at": stmt.excluded.updated_at},
    )
    try:
        async with session.begin_nested():
            await session.execute(stmt)
    except IntegrityError:
        # Another transaction gave this local id to another key between our read and write.
        owner = await key_for(session, entity, system, local_id)
        if owner is not None and owner != key:
            return owner
        raise
    return None


async def link_if_absent(
    session: AsyncSession, entity: str, key: str, system: str, local_id: str
) -> str:
    """Link ``key`` to ``local_id`` in ``system`` unless the key is linked there already, and
    return the local id the key has now. Two writers link keys: the sync flow (from a member
    a system typed) and the deliverer (from the id a system gave a record the hub created).
    Each decided from what it read earlier; an upsert would let the later one cut the
    other's record off. On PostgreSQL ON CONFLICT waits for a concurrent insert of the same
    key to commit and then sees it."""
    stmt = _upsert(session).values(
        entity=entity, key=key, system=system, local_id=local_id, updated_at=datetime.now(UTC)
    )
    await session.execute(stmt.on_conflict_do_nothing(index_elements=["entity", "key", "system"]))
    current = await session.scalar(
        select(Xref.local_id)
        .where(Xref.entity == entity, Xref.key == key, Xref.system == system)
        .execution_options(populate_existing=True)
    )
    return str(current) if current is not None else local_id


async def insert_absent_many(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """``link_if_absent`` for many rows in one statement (the caller reads back what each key
    has now): keys already linked in that system keep their local id."""
    if rows:
        stmt = _upsert(session).on_conflict_do_nothing(index_elements=["entity", "key", "system"])
        await session.execute(stmt, rows)


async def holders(
    session: AsyncSession, ids: Iterable[tuple[str, str, str]]
) -> dict[tuple[str, str, str], str]:
    """The key holding each (entity, system, local_id), for those that have one."""
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = await session.execute(
        select(Xref.entity, Xref.system, Xref.local_id, Xref.key).where(
            tuple_(Xref.entity, Xref.system, Xref.local_id).in_(wanted)
        )
    )
    return {(e, s, lid): k for e, s, lid, k in rows.tuples()}


async def upsert_many(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert or move many cross-references (entity, key, system, local_id, updated_at) in
    one statement. The caller has checked that no other key holds those local ids; a race
    that breaks this raises IntegrityError (the caller retries row by row)."""
    if not rows:
        return
    stmt = _upsert(session)
    stmt = stmt.on_conflict_do_update(
        index_elements=["entity", "key", "system"],
        set_={"local_id": stmt.excluded.local_id, "updated_at": stmt.excluded.updated_at},
    )
    await session.execute(stmt, rows)


def _upsert(session: AsyncSession) -> Any:
    """An INSERT of the table with the store's ON CONFLICT: Core, not the ORM's bulk insert
    (decision 50), the same rows."""
    table = table_of(Xref)
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


async def systems_of(session: AsyncSession, entity: str, key: str) -> dict[str, str]:
    """{system: local id} of every system that knows ``key``."""
    rows = await session.execute(
        select(Xref.system, Xref.local_id).where(Xref.entity == entity, Xref.key == key)
    )
    return {system: lid for system, lid in rows.tuples()}


async def forget(session: AsyncSession, entity: str, key: str, system: str) -> None:
    await session.execute(
        delete(Xref).where(Xref.entity == entity, Xref.key == key, Xref.system == system)
    )
