"""Watermark polling of a system's own database tables.

ERP and PDM packages rarely call anyone; the integration reads their tables for rows changed
since the last poll. The watermark (a change counter or a last-modified timestamp) is returned
to the caller, who stores it in the hub store in the same transaction as the messages it
produced, so a restart resumes exactly where the last committed poll stopped.

Timestamps are not unique: several rows may share ``AEDAT 2026-11-24 09:30:00``. Reading
``> watermark LIMIT n`` could cut such a group in half and the next poll (``>`` the same value)
would skip the rest. The batch is therefore trimmed back to the last complete watermark value,
and if one value alone fills the batch, that whole group is read regardless of the limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Select, column, literal_column, select, table
from sqlalchemy.ext.asyncio import AsyncConnection

from connectors.common.base import Connector
from connectors.common.errors import Rejection, reject
from contracts.envelope import Envelope

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _ident(name: str, what: str) -> str:
    # Names reach SQL as identifiers, never as values; refuse anything that is not one.
    if not _IDENT.match(name):
        raise ValueError(f"{what} {name!r} is not a plain SQL identifier")
    return name


def _select(tbl: str, wm: str, last: Any, limit: int | None, equal: bool = False) -> Select[Any]:
    t = table(_ident(tbl, "table"))
    wcol: Any = column(_ident(wm, "watermark column"))
    # All columns: the poller does not know a system's schema, the row mapper does.
    q: Select[Any] = select(literal_column("*")).select_from(t)
    if last is not None:
        q = q.where(wcol == last if equal else wcol > last)
    q = q.order_by(wcol)
    if limit is not None:
        q = q.limit(limit)
    return q


def _trim(
    rows: list[dict[str, Any]], wm: str, limit: int
) -> tuple[list[dict[str, Any]], Any, bool]:
    """(rows to keep, their watermark, whether the tie group must be read whole)."""
    if len(rows) < limit or not rows:
        return rows, rows[-1][wm] if rows else None, False
    last = rows[-1][wm]
    kept = [r for r in rows if r[wm] != last]
    if kept:
        return kept, kept[-1][wm], False
    return rows, last, True


def poll_changes_sync(
    conn: Connection, table_name: str, watermark_column: str, last_watermark: Any, limit: int = 500
) -> tuple[list[dict[str, Any]], Any]:
    """Rows with watermark > last_watermark, oldest first, and the watermark to store."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    result = conn.execute(_select(table_name, watermark_column, last_watermark, limit))
    rows = [dict(r._mapping) for r in result]
    kept, new_wm, whole = _trim(rows, watermark_column, limit)
    if whole:
        result = conn.execute(_select(table_name, watermark_column, new_wm, None, equal=True))
        kept = [dict(r._mapping) for r in result]
    return kept, (new_wm if kept else last_watermark)


async def poll_changes(
    conn: AsyncConnection,
    table_name: str,
    watermark_column: str,
    last_watermark: Any,
    limit: int = 500,
) -> tuple[list[dict[str, Any]], Any]:
    """Async twin of :func:`poll_changes_sync` for the hub's async engine."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    result = await conn.execute(_select(table_name, watermark_column, last_watermark, limit))
    rows = [dict(r._mapping) for r in result]
    kept, new_wm, whole = _trim(rows, watermark_column, limit)
    if whole:
        result = await conn.execute(_select(table_name, watermark_column, new_wm, None, equal=True))
        kept = [dict(r._mapping) for r in result]
    return kept, (new_wm if kept else last_watermark)


def row_to_native(row: Mapping[str, Any]) -> dict[str, Any]:
    """A simulator table row: the native record is kept whole in the ``payload`` column."""
    payload = row.get("payload")
    if payload is None:
        raise reject("payload", None, "polled row must carry the native record")
    try:
        data = json.loads(payload)
    except (TypeError, json.JSONDecodeError) as exc:
        raise reject("payload", str(payload)[:80], f"must be a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise reject("payload", type(data).__name__, "must be a JSON object")
    return data


def rows_to_envelopes(
    connector: Connector,
    entity: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    to_native: Callable[[Mapping[str, Any]], dict[str, Any]] = row_to_native,
    version_column: str | None = "change_seq",
) -> list[Envelope | Rejection]:
    """Polled rows as envelopes; the change counter becomes the source version, so a stale
    re-read of an older row can never overwrite a newer one downstream."""
    from contracts.errors import ContractError

    out: list[Envelope | Rejection] = []
    for row in rows:
        try:
            native = to_native(row)
            version = row.get(version_column) if version_column else None
            envelopes = connector.to_envelopes(
                entity, native, source_version=int(version) if version is not None else None
            )
        except ContractError as exc:
            r = Rejection.of(
                exc,
                system=connector.system,
                entity=entity,
                raw=json.dumps(dict(row), ensure_ascii=False, default=str).encode(),
                source="poll",
                position=None,
            )
            connector.status.rejected(entity, r.reason)
            out.append(r)
        else:
            connector.status.accepted(entity)
            out.extend(envelopes)
    return out


async def poll_envelopes(
    conn: AsyncConnection,
    connector: Connector,
    entity: str,
    last_watermark: Any,
    limit: int = 500,
) -> tuple[list[Envelope | Rejection], Any]:
    """Poll the table behind ``connector.binding(entity)`` and map what changed."""
    b = connector.inbound(entity)
    if b.table is None:
        raise ValueError(f"{connector.system}.{entity} has no table to poll")
    rows, wm = await poll_changes(conn, b.table, b.watermark_column, last_watermark, limit)
    return rows_to_envelopes(connector, entity, rows), wm
