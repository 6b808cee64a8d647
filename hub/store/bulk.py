"""Bulk writes on tables, past the ORM's unit of work (decision 50).

The hot paths of the chain write whole batches of plain dictionaries: an ORM bulk
``insert(Model)`` / ``update(Model)`` with a list of them runs the ORM's bulk persistence
(mapper lookups, per-row bookkeeping, RETURNING of ids nobody reads on inserts), measured at
a sizable share of the hub's CPU per customer. The same statements against the ``Table``
are plain executemany calls with the same column defaults and ``onupdate`` values (both are
Core features of the columns), so the rows written are the same.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

# The name of the primary-key parameter of `update_by_id`: not a column name, since Core
# reserves a column's own name for its SET value.
_ID = "b_id"


def table_of(model: Any) -> Table:
    """The Core table of a mapped class."""
    return cast(Table, model.__table__)


async def insert_rows(session: AsyncSession, model: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT every row (all with the same keys), as one executemany."""
    if rows:
        await session.execute(insert(table_of(model)), rows)


async def update_by_id(session: AsyncSession, model: Any, rows: list[dict[str, Any]]) -> None:
    """UPDATE each row by its ``id`` with the other keys of its dictionary, as the ORM's bulk
    update by primary key does: rows grouped by their set of keys, one executemany per
    group (rows of one group are updated in their given order)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        cols = tuple(k for k in row if k != "id")
        params = {k: row[k] for k in cols}
        params[_ID] = row["id"]
        groups.setdefault(cols, []).append(params)
    t = table_of(model)
    for cols, group in groups.items():
        if not cols:
            continue
        stmt = update(t).where(t.c.id == bindparam(_ID)).values({c: bindparam(c) for c in cols})
        await session.execute(stmt, group)
