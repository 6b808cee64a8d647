"""The store behind identity resolution: a per-batch prefetch that the pure `Resolver` runs on,
the bulk write-back, and the golden-record writes shared with the operator actions.

`BatchIndex` implements both `CandidateIndex` and `ClusterStore` over what one batch needs,
read in ONE statement (one per 500 of each input for a large batch) whatever the size of the
store, because a one-record batch pays per round trip far more than per row:

1. the members (cross-references) of the batch's (system, id) pairs, the cross-references the
   sync flow left for records the hub created, and the batch's own source records;
2. the counts of the batch's blocking keys: a key held by more than `cap` golden ids is hot
   and ignored, so its postings are never read (nor written any more);
3. the postings of the other keys, which are then complete: the in-memory view has exactly
   the semantics of `InMemoryIndex` (keys past the cap ignored for good; candidates ordered as
   `resolver.rank_candidates` does: key families shared, then the rarest key shared, then
   keys shared, then golden id);
4. the profiles of every golden id met in 1-3 and of the ids new records would get.

The Resolver then decides record after record in memory, seeing the effects of earlier records
of the same batch, exactly as the batch command does: streaming and batch give the same
clusters for the same input order. The golden records the batch changed that already existed
are then read in one statement (`golden_state`: stored record, members, their source records).
What changed is written back (`write_batch`; on PostgreSQL one statement of data-modifying
CTEs fed by one JSON parameter per table, elsewhere one statement per table): profiles (with
an optimistic version check, so concurrent workers and operators never overwrite each other:
a conflict is a TransientError and the batch is redone), new postings and count increments,
members, review rows, identity events, and the core's outbox rows the flow hands over.
Statements are built once per shape and cached, since building them cost more CPU than running
them; on PostgreSQL they are driver SQL sent to asyncpg straight (decision 47).

Keys longer than the column are stored as a prefix plus their SHA-1 (`store_key`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    BindParameter,
    CompoundSelect,
    Executable,
    Integer,
    Select,
    String,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    join,
    literal_column,
    null,
    or_,
    select,
    tuple_,
    union,
    union_all,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import topics
from contracts.envelope import Entity, Envelope, Op
from flows.identity.blocking import blocking_keys
from flows.identity.normalize import fold
from flows.identity.profile import Profile, build_profile, merge_profiles
from flows.identity.resolver import golden_id_for, rank_candidates
from flows.identity.survivorship import MemberRecord, Survived, SurvivorshipConfig, survive
from hub.core.errors import TransientError
from hub.core.outbox import add_rows
from hub.store.db import insert_ignoring_conflicts, pg_driver
from hub.store.delivery_models import Xref
from hub.store.identity_models import (
    ACCEPTED,
    ACTIVE,
    BLOCK_KEY_LEN,
    OPEN,
    REJECTED,
    RETIRED,
    BlockKey,
    BlockKeyCount,
    GoldenMember,
    GoldenRecord,
    IdentityEvent,
    ReviewItem,
)
from hub.store.models import Base, SourceRecord, UTCDateTime

CHUNK = 500
HUB_SYSTEM = "hub"  # source_system of golden-record events: the hub owns golden records
SEARCH_TEXT_MAX = 8000
Pair = tuple[str, str]


def store_key(key: str) -> str:
    """The key as stored: itself, or a prefix and its SHA-1 when longer than the column."""
    if len(key) <= BLOCK_KEY_LEN:
        return key
    return key[:150] + "#" + hashlib.sha1(key.encode("utf-8")).hexdigest()


async def _core(
    session: AsyncSession, stmt: Executable, params: Mapping[str, Any]
) -> Any:  # a Result; its rows are unpacked by position
    """Run a Core statement on the session's connection (same transaction): the session's own
    execute adds ORM bookkeeping to every statement that these reads and writes never use."""
    conn = await session.connection()
    return await conn.execute(stmt, dict(params))


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


# --------------------------------------------------------------------------- the batch view


@dataclass(slots=True)
class GoldenState:
    """A golden row as the batch read it: what the version check compares against."""

    golden_id: str
    version: int
    status: str


class BatchIndex:
    """CandidateIndex and ClusterStore over one batch's prefetch; records what changed."""

    def __init__(self, entity: str, cap: int) -> None:
        self.entity = entity
        self.cap = cap
        self._postings: dict[str, set[str] | None] = {}
        self._profiles: dict[str, Profile] = {}
        # stored profiles not parsed yet (JSON text or a dict): most candidates read are never
        # scored (only the best `max_candidates` are), so each is parsed when first asked for
        self._stored: dict[str, Any] = {}
        self.rows: dict[str, GoldenState] = {}
        self.xref: dict[Pair, str] = {}
        self.known: frozenset[Pair] = frozenset()  # pairs that had a member row when loaded
        self.sources: dict[Pair, MemberRecord] = {}  # the batch's own source records
        # the cross-reference key each of the batch's records is held under, duplicate keys
        # included: the sync flow's re-freeze reads it here, without a query of its own
        self.held_by: dict[Pair, str] = {}
        # changes
        self.dirty: set[str] = set()
        self.links: dict[Pair, str] = {}
        self.new_postings: list[tuple[str, str]] = []
        self.count_delta: Counter[str] = Counter()

    @classmethod
    async def load(
        cls,
        session: AsyncSession,
        entity: str,
        cap: int,
        pairs: Iterable[Pair],
        keys: Iterable[str],
        extra_ids: Iterable[str] = (),
    ) -> BatchIndex:
        """Everything the batch needs, in one statement per 500 of each input (one statement
        for a small batch): each round trip costs more than the rows it brings."""
        self = cls(entity, cap)
        wanted_pairs = set(pairs)
        raw_keys = sorted(set(keys))
        by_store = {store_key(k): k for k in raw_keys}
        extra = sorted(set(extra_ids))
        sids = sorted({sid for _, sid in wanted_pairs})
        ordered_pairs = sorted(wanted_pairs)
        members: list[tuple[str, str, str]] = []
        xrefs: list[tuple[str, str, str]] = []
        counts: dict[str, int] = {}
        postings: list[tuple[str, str]] = []
        goldens: dict[str, tuple[int, str, Any]] = {}
        store_keys = list(by_store)
        sizes = (len(sids), len(ordered_pairs), len(store_keys), len(extra))
        rounds = max((n + CHUNK - 1) // CHUNK for n in sizes)
        driver = await pg_driver(session)
        for i in range(rounds):
            part = slice(i * CHUNK, (i + 1) * CHUNK)
            values: dict[str, Any] = {
                "sids": sids[part],
                "pairs": ordered_pairs[part],
                "skeys": store_keys[part],
                "extra": extra[part],
            }
            if driver is not None:
                pairs_part = ordered_pairs[part]
                rows = await _pg_rows(
                    driver,
                    _PG_PREFETCH,
                    entity,
                    cap,
                    sids[part],
                    [p[0] for p in pairs_part],
                    [p[1] for p in pairs_part],
                    store_keys[part],
                    extra[part],
                )
            else:
                stmt = _prefetch_statement(*(bool(v) for v in values.values()))
                values.update(entity=entity, cap=cap)
                rows = await _core(session, stmt, values)
            for tag, a, b, c, d, n, j, _j2, t1, t2 in rows:
                if tag == "m":
                    members.append((a, b, c))
                elif tag == "x":
                    xrefs.append((a, b, c))
                elif tag == "s":
                    self.sources[(a, b)] = _member_record(a, b, j, t1, t2, c, d)
                elif tag == "k":
                    counts[by_store[a]] = int(n)
                elif tag == "p":
                    postings.append((a, c))
                else:
                    goldens[c] = (int(n), a, j)
        # members: by source_id (the leading index column), then the exact pairs
        for system, sid, gid in members:
            if (system, sid) in wanted_pairs:
                self.xref[(system, sid)] = gid
        self.known = frozenset(self.xref)
        # A record the hub itself created in a system (the sync flow sent it a golden record,
        # the cross-reference holds the id the system gave) belongs to that golden record when
        # the system publishes it back: it links there, not by matching, so it can never
        # become a second golden record or land in review.
        for system, local_id, key in sorted(xrefs):
            pair = (system, local_id)
            self.held_by[pair] = key
            adopt = key.startswith("G-") and "~" not in key
            if adopt and pair in wanted_pairs and pair not in self.known:
                self.xref[pair] = key
                self.links[pair] = key

        selective: set[str] = set()
        for key in raw_keys:
            n = counts.get(key, 0)
            if n > cap:
                self._postings[key] = None
            else:
                self._postings[key] = set()
                if n:
                    selective.add(key)
        for skey, gid in postings:
            key = by_store[skey]
            if key in selective:
                ids = self._postings[key]
                assert ids is not None
                ids.add(gid)
        # a key whose postings outgrew its count (concurrent writers) is past the cap too
        for key, ids in self._postings.items():
            if ids is not None and len(ids) > cap:
                self._postings[key] = None

        gids = set(self.xref.values()) | set(extra)
        for ids in self._postings.values():
            if ids:
                gids.update(ids)
        # the statement may bring a few more rows (members of other systems' ids, keys that
        # outgrew the cap): only the ones the batch can meet count, as if read one by one
        for gid in sorted(gids & goldens.keys()):
            version, status, profile = goldens[gid]
            self.rows[gid] = GoldenState(gid, version, status)
            if status == ACTIVE:
                self._stored[gid] = profile
        return self

    @property
    def profiles(self) -> dict[str, Profile]:
        """Profile of every active golden record the batch read or changed (all parsed)."""
        for gid in list(self._stored):
            self.get(gid)
        return self._profiles

    # CandidateIndex -------------------------------------------------------------------------

    def add(self, golden_id: str, keys: Iterable[str]) -> None:
        for key in keys:
            if key not in self._postings:
                raise KeyError(f"blocking key {key!r} was not prefetched for this batch")
            ids = self._postings[key]
            if ids is None or golden_id in ids:
                continue
            ids.add(golden_id)
            self.count_delta[key] += 1
            if len(ids) > self.cap:
                # hot from now on: ignored at lookup, its postings no longer written
                self._postings[key] = None
            else:
                self.new_postings.append((key, golden_id))

    def candidates(self, keys: Iterable[str], limit: int) -> list[str]:
        return rank_candidates(self._postings, keys, limit)

    # ClusterStore ---------------------------------------------------------------------------

    def get(self, golden_id: str) -> Profile | None:
        profile = self._profiles.get(golden_id)
        if profile is None and golden_id in self._stored:
            raw = self._stored.pop(golden_id)
            data = json.loads(raw) if isinstance(raw, str) else raw
            profile = self._profiles[golden_id] = Profile.from_dict(data)
        return profile

    def put(self, golden_id: str, profile: Profile) -> None:
        self._stored.pop(golden_id, None)
        self._profiles[golden_id] = profile
        self.dirty.add(golden_id)

    def golden_of(self, source_system: str, source_id: str) -> str | None:
        return self.xref.get((source_system, source_id))

    def link(self, source_system: str, source_id: str, golden_id: str) -> None:
        pair = (source_system, source_id)
        if self.xref.get(pair) != golden_id:
            self.xref[pair] = golden_id
            self.links[pair] = golden_id

    # write-back -----------------------------------------------------------------------------

    def posting_rows(self) -> list[dict[str, Any]]:
        """block_keys rows to insert (ignoring ones a concurrent writer inserted first)."""
        return [
            {"entity": self.entity, "key": k, "golden_id": g}
            for k, g in sorted({(store_key(k), g) for k, g in self.new_postings})
        ]

    def count_deltas(self) -> dict[str, int]:
        return {store_key(k): n for k, n in self.count_delta.items() if n}


async def add_counts(session: AsyncSession, entity: str, deltas: Mapping[str, int]) -> None:
    """block_key_counts.n += delta, inserting missing keys: one upsert statement."""
    rows = [{"entity": entity, "key": k, "n": n} for k, n in sorted(deltas.items()) if n]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    table = cast(Table, BlockKeyCount.__table__)
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
    for chunk in _chunks(rows, 2000):
        stmt = dialect_insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=["key", "entity"], set_={"n": table.c.n + stmt.excluded.n}
        )
        await session.execute(stmt, list(chunk))


async def set_postings(
    session: AsyncSession, entity: str, cap: int, golden_id: str, keys: Iterable[str]
) -> None:
    """Make the golden id's postings exactly `keys` (raw keys), keeping the counts right.

    A hot key stays hot: its count is not lowered, because its postings stopped being written
    when it went past the cap and could not be trusted again.
    """
    wanted = {store_key(k) for k in keys}
    current = set(
        (
            await session.execute(
                select(BlockKey.key).where(
                    BlockKey.entity == entity, BlockKey.golden_id == golden_id
                )
            )
        ).scalars()
    )
    removed = sorted(current - wanted)
    added = sorted(wanted - current)
    counts: dict[str, int] = {}
    for chunk in _chunks(removed + added):
        rows = await session.execute(
            select(BlockKeyCount.key, BlockKeyCount.n).where(
                BlockKeyCount.entity == entity, BlockKeyCount.key.in_(chunk)
            )
        )
        counts.update({k: int(n) for k, n in rows})
    deltas: dict[str, int] = {}
    for chunk in _chunks(removed):
        await session.execute(
            delete(BlockKey).where(
                BlockKey.entity == entity,
                BlockKey.golden_id == golden_id,
                BlockKey.key.in_(chunk),
            )
        )
    for k in removed:
        if counts.get(k, 0) <= cap:
            deltas[k] = -1
    fresh = [k for k in added if counts.get(k, 0) <= cap]
    rows_to_add = [{"entity": entity, "key": k, "golden_id": golden_id} for k in fresh]
    for chunk in _chunks(rows_to_add, 2000):
        await insert_ignoring_conflicts(session, BlockKey.__table__, list(chunk))
    for k in fresh:
        deltas[k] = deltas.get(k, 0) + 1
    await add_counts(session, entity, deltas)


# --------------------------------------------------------------------------- members, sources


# Reads that would take several round trips are one UNION ALL of tagged branches sharing this
# column layout (tag first): a one-record batch pays per round trip far more than per row.
_LAYOUT: tuple[tuple[str, Any], ...] = (
    ("a", String()),
    ("b", String()),
    ("c", String()),
    ("d", String()),
    ("n", BigInteger()),
    ("j", JSON()),
    ("j2", JSON()),
    ("t1", UTCDateTime()),
    ("t2", UTCDateTime()),
)


def _tagged(tag: str, **columns: Any) -> Select[Any]:
    """One branch: the tag, then the layout's columns, NULL where the branch has none (typed:
    PostgreSQL takes an untyped NULL for text and cannot unite that with json)."""
    return select(
        literal_column(f"'{tag}'", String()).label("tag"),
        *(
            (columns[name] if name in columns else sql_cast(null(), kind)).label(name)
            for name, kind in _LAYOUT
        ),
    )


def _source_branch(tag: str, **columns: Any) -> Select[Any]:
    return _tagged(
        tag,
        a=SourceRecord.source_system,
        b=SourceRecord.source_id,
        c=SourceRecord.last_message_id,
        d=SourceRecord.op,
        j=SourceRecord.payload,
        t1=SourceRecord.source_ts,
        t2=SourceRecord.updated_at,
        **columns,
    )


def _member_record(
    system: str,
    sid: str,
    payload: Any,
    ts: datetime | None,
    updated: datetime,
    message_id: str,
    op: str,
) -> MemberRecord:
    return MemberRecord(
        system, sid, payload or {}, ts or updated, message_id, deleted=op == Op.delete.value
    )


@functools.cache
def _prefetch_statement(sids: bool, pairs: bool, skeys: bool, extra: bool) -> CompoundSelect[Any]:
    """Members of the source ids (m), cross-references (x) and source records (s) of the
    pairs, counts (k) and the postings of keys not past the cap (p), and golden rows (g) of
    every id those name plus `extra`. Built once per shape, with expanding parameters
    (sids, pairs, skeys, extra, entity, cap): building it took longer than running it."""
    entity = bindparam("entity", type_=String())
    cap = bindparam("cap", type_=Integer())
    branches: list[Select[Any]] = []
    ids: list[Select[Any]] = []
    if sids:
        mem = (
            select(GoldenMember.source_system, GoldenMember.source_id, GoldenMember.golden_id)
            .where(
                GoldenMember.entity == entity,
                GoldenMember.source_id.in_(bindparam("sids", expanding=True)),
            )
            .cte("mem")
        )
        branches.append(_tagged("m", a=mem.c.source_system, b=mem.c.source_id, c=mem.c.golden_id))
        ids.append(select(mem.c.golden_id.label("gid")))
    if pairs:
        xr = (
            select(Xref.system, Xref.local_id, Xref.key)
            .where(
                Xref.entity == entity,
                tuple_(Xref.system, Xref.local_id).in_(bindparam("pairs", expanding=True)),
            )
            .cte("xr")
        )
        branches.append(_tagged("x", a=xr.c.system, b=xr.c.local_id, c=xr.c.key))
        ids.append(select(xr.c.key.label("gid")))
        branches.append(
            _source_branch("s").where(
                SourceRecord.entity == entity,
                tuple_(SourceRecord.source_system, SourceRecord.source_id).in_(
                    bindparam("pairs", expanding=True)
                ),
            )
        )
    if skeys:
        branches.append(
            _tagged("k", a=BlockKeyCount.key, n=BlockKeyCount.n).where(
                BlockKeyCount.entity == entity,
                BlockKeyCount.key.in_(bindparam("skeys", expanding=True)),
            )
        )
        # hot keys' postings are never read: the count decides in the statement itself
        post = (
            select(BlockKey.key, BlockKey.golden_id)
            .join(
                BlockKeyCount,
                and_(BlockKeyCount.key == BlockKey.key, BlockKeyCount.entity == BlockKey.entity),
            )
            .where(
                BlockKey.entity == entity,
                BlockKey.key.in_(bindparam("skeys", expanding=True)),
                BlockKeyCount.n <= cap,
            )
            .cte("post")
        )
        branches.append(_tagged("p", a=post.c.key, c=post.c.golden_id))
        ids.append(select(post.c.golden_id.label("gid")))
    golden = {
        "c": GoldenRecord.golden_id,
        "n": GoldenRecord.version,
        "a": GoldenRecord.status,
        "j": GoldenRecord.profile,
    }
    if ids:
        named = union(*ids).subquery("ids")
        branches.append(
            _tagged("g", **golden).select_from(
                join(GoldenRecord, named, GoldenRecord.golden_id == named.c.gid)
            )
        )
    if extra:
        branches.append(
            _tagged("g", **golden).where(
                GoldenRecord.golden_id.in_(bindparam("extra", expanding=True))
            )
        )
    return union_all(*branches)


@functools.cache
def _golden_state_statement() -> CompoundSelect[Any]:
    """Stored record and winners (r), members (m) and their source records (s) of golden ids
    (parameters: gids, expanding, and entity): built once."""
    entity = bindparam("entity", type_=String())
    gids: BindParameter[Any] = bindparam("gids", expanding=True)
    return union_all(
        _tagged(
            "r", c=GoldenRecord.golden_id, j=GoldenRecord.record, j2=GoldenRecord.winners
        ).where(GoldenRecord.golden_id.in_(gids)),
        _tagged(
            "m",
            a=GoldenMember.source_system,
            b=GoldenMember.source_id,
            c=GoldenMember.golden_id,
            n=GoldenMember.id,
            t1=GoldenMember.linked_at,
        ).where(GoldenMember.entity == entity, GoldenMember.golden_id.in_(gids)),
        _source_branch("s")
        .select_from(
            join(
                SourceRecord,
                GoldenMember,
                and_(
                    GoldenMember.entity == SourceRecord.entity,
                    GoldenMember.source_system == SourceRecord.source_system,
                    GoldenMember.source_id == SourceRecord.source_id,
                ),
            )
        )
        .where(SourceRecord.entity == entity, GoldenMember.golden_id.in_(gids)),
    )


# PostgreSQL through the driver (decision 47): the same reads as `_prefetch_statement` and
# `_golden_state_statement`, written once as driver SQL with array parameters, so that one
# text (one prepared statement) serves every batch size and SQLAlchemy's per-statement CPU is
# not spent. Same tagged layout; JSON columns come as text and are parsed in `_pg_rows`.
# The key counts are read first (`cnt`, materialized) and only the postings of keys within
# the cap are read after them: joining the other way round, the planner read every stored
# posting of the hot keys (up to `cap` each) to drop them at the join, ~10x the index pages
# of a one-record batch at 1,000,000 golden records.
_PG_SOURCE = (
    "s.source_system, s.source_id, s.last_message_id, s.op, NULL::bigint, s.payload::text, "
    "NULL::text, s.source_ts, s.updated_at"
)
_PG_PREFETCH = f"""
WITH mem AS (
    SELECT source_system, source_id, golden_id FROM golden_members
    WHERE entity = $1 AND source_id = ANY($3::varchar[])
), want AS (
    SELECT * FROM unnest($4::varchar[], $5::varchar[]) AS w(system, sid)
), xr AS (
    SELECT x.system, x.local_id, x.key FROM xrefs x
    JOIN want ON x.system = want.system AND x.local_id = want.sid
    WHERE x.entity = $1
), cnt AS MATERIALIZED (
    SELECT key, n FROM block_key_counts WHERE entity = $1 AND key = ANY($6::varchar[])
), post AS (
    SELECT b.key, b.golden_id FROM cnt JOIN block_keys b ON b.entity = $1 AND b.key = cnt.key
    WHERE cnt.n <= $2
)
SELECT 'm'::text AS tag, source_system::varchar, source_id::varchar, golden_id::varchar,
    NULL::varchar, NULL::bigint, NULL::text, NULL::text, NULL::timestamptz, NULL::timestamptz
    FROM mem
UNION ALL SELECT 'x', system, local_id, key, NULL, NULL, NULL, NULL, NULL, NULL FROM xr
UNION ALL SELECT 's', {_PG_SOURCE}
    FROM source_records s JOIN want ON s.source_system = want.system AND s.source_id = want.sid
    WHERE s.entity = $1
UNION ALL SELECT 'k', key, NULL, NULL, NULL, n, NULL, NULL, NULL, NULL FROM cnt
UNION ALL SELECT 'p', key, NULL, golden_id, NULL, NULL, NULL, NULL, NULL, NULL FROM post
UNION ALL SELECT 'g', g.status, NULL, g.golden_id, NULL, g.version, g.profile::text, NULL, NULL,
    NULL FROM golden_records g
    WHERE g.golden_id IN (
        SELECT golden_id FROM mem UNION SELECT key FROM xr UNION SELECT golden_id FROM post
        UNION SELECT unnest($7::varchar[])
    )
"""
_PG_GOLDEN_STATE = f"""
SELECT 'r'::text AS tag, NULL::varchar, NULL::varchar, golden_id::varchar, NULL::varchar,
    NULL::bigint, record::text, winners::text, NULL::timestamptz, NULL::timestamptz
    FROM golden_records WHERE golden_id = ANY($2::varchar[])
UNION ALL SELECT 'm', source_system, source_id, golden_id, NULL, id, NULL, NULL, linked_at, NULL
    FROM golden_members WHERE entity = $1 AND golden_id = ANY($2::varchar[])
UNION ALL SELECT 's', {_PG_SOURCE}
    FROM source_records s JOIN golden_members m ON m.entity = s.entity
        AND m.source_system = s.source_system AND m.source_id = s.source_id
    WHERE s.entity = $1 AND m.golden_id = ANY($2::varchar[])
"""


def _json(value: str | None) -> Any:
    return None if value is None else json.loads(value)


async def _pg_rows(driver: Any, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of a tagged driver read, JSON columns (j, j2) parsed as SQLAlchemy's JSON type
    would have, except golden profiles (tag g): `BatchIndex` parses those it is asked for."""
    return [
        (tag, a, b, c, d, n, j if tag == "g" else _json(j), _json(j2), t1, t2)
        for tag, a, b, c, d, n, j, j2, t1, t2 in await driver.fetch(sql, *args)
    ]


async def golden_state(
    session: AsyncSession, entity: str, golden_ids: Iterable[str]
) -> tuple[
    dict[str, tuple[dict[str, Any], dict[str, Any]]],
    dict[str, list[Pair]],
    dict[Pair, MemberRecord],
]:
    """Stored record and winners, members in the order they joined, and the members' latest
    source records of each golden id: what `fetch_members` and `fetch_sources` give, in one
    statement per 500 ids."""
    stored: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    joined: list[tuple[datetime, int, str, Pair]] = []
    sources: dict[Pair, MemberRecord] = {}
    driver = await pg_driver(session)
    for chunk in _chunks(sorted(set(golden_ids))):
        if driver is not None:
            rows = await _pg_rows(driver, _PG_GOLDEN_STATE, entity, list(chunk))
        else:
            values = {"entity": entity, "gids": list(chunk)}
            rows = await _core(session, _golden_state_statement(), values)
        for tag, a, b, c, d, n, j, j2, t1, t2 in rows:
            if tag == "r":
                stored[c] = (j or {}, j2 or {})
            elif tag == "m":
                joined.append((t1, int(n), c, (a, b)))
            else:
                sources[(a, b)] = _member_record(a, b, j, t1, t2, c, d)
    members: dict[str, list[Pair]] = {}
    for _, _, gid, pair in sorted(joined, key=lambda m: (m[0], m[1])):
        members.setdefault(gid, []).append(pair)
    return stored, members, sources


async def fetch_members(
    session: AsyncSession, entity: str, golden_ids: Iterable[str]
) -> dict[str, list[Pair]]:
    """Members of each golden id, in the order they joined."""
    out: dict[str, list[Pair]] = {}
    for chunk in _chunks(sorted(set(golden_ids))):
        rows = await session.execute(
            select(GoldenMember.golden_id, GoldenMember.source_system, GoldenMember.source_id)
            .where(GoldenMember.entity == entity, GoldenMember.golden_id.in_(chunk))
            .order_by(GoldenMember.linked_at, GoldenMember.id)
        )
        for gid, system, sid in rows:
            out.setdefault(gid, []).append((system, sid))
    return out


async def fetch_sources(
    session: AsyncSession, entity: str, pairs: Iterable[Pair]
) -> dict[Pair, MemberRecord]:
    """The latest accepted version of each source record (records flow's source_records)."""
    out: dict[Pair, MemberRecord] = {}
    for chunk in _chunks(list(dict.fromkeys(pairs))):
        rows = await session.execute(
            select(
                SourceRecord.source_system,
                SourceRecord.source_id,
                SourceRecord.payload,
                SourceRecord.source_ts,
                SourceRecord.updated_at,
                SourceRecord.last_message_id,
                SourceRecord.op,
            ).where(
                SourceRecord.entity == entity,
                tuple_(SourceRecord.source_system, SourceRecord.source_id).in_(chunk),
            )
        )
        for system, sid, payload, ts, updated, mid, op in rows:
            out[(system, sid)] = _member_record(system, sid, payload, ts, updated, mid, op)
    return out


def search_text(golden_id: str, members: Sequence[MemberRecord]) -> str:
    """Folded names, codes and identifier values of every member, for substring search."""
    parts: dict[str, None] = {fold(golden_id): None}
    for m in members:
        parts[fold(f"{m.source_system}:{m.source_id}")] = None
        for key in ("name", "code"):
            value = m.payload.get(key)
            if isinstance(value, str) and value.strip():
                parts[fold(value)] = None
        for ident in m.payload.get("identifiers") or ():
            if isinstance(ident, Mapping) and isinstance(ident.get("value"), str):
                parts[fold(ident["value"])] = None
    return "\n".join(parts)[:SEARCH_TEXT_MAX]


def golden_body(
    golden_id: str, survived: Survived, members: Sequence[Pair], **extra: Any
) -> dict[str, Any]:
    """Body of a golden.<entity> event: the golden record plus id, members and winners."""
    return {
        **survived.record,
        "golden_id": golden_id,
        "members": [{"source_system": s, "source_id": i} for s, i in members],
        "winners": survived.winners,
        **extra,
    }


def golden_envelope(
    entity: str,
    golden_id: str,
    version: int,
    op: Op,
    body: dict[str, Any],
    now: datetime,
    cause: Envelope | None = None,
) -> Envelope:
    """A golden-record event. Caused by a source change, it carries the cause's correlation
    and its trace extended with the origin, so the sync flow does not echo it back there."""
    if cause is not None:
        return cause.caused(
            entity=Entity(entity),
            op=op,
            source_system=HUB_SYSTEM,
            source_id=golden_id,
            source_version=version,
            source_ts=now,
            body=body,
        )
    return Envelope(
        entity=Entity(entity),
        op=op,
        source_system=HUB_SYSTEM,
        source_id=golden_id,
        source_version=version,
        source_ts=now,
        body=body,
    )


def golden_values(
    golden_id: str,
    profile: Profile,
    survived: Survived,
    members: Sequence[Pair],
    sources: Mapping[Pair, MemberRecord],
) -> dict[str, Any]:
    """Column values of a golden row derived from its state (not version, not timestamps)."""
    name = survived.record.get("name")
    live = [sources[p] for p in members if p in sources]
    return {
        "profile": profile.to_dict(),
        "record": survived.record,
        "winners": survived.winners,
        "name": name[:256] if isinstance(name, str) else None,
        "search_text": search_text(golden_id, live),
        "member_count": len(members),
        "status": ACTIVE,
        "merged_into": None,
    }


async def update_golden(
    session: AsyncSession, golden_id: str, expected_version: int, values: Mapping[str, Any]
) -> None:
    """UPDATE ... WHERE version = expected; anything else means someone else wrote first."""
    table = cast(Table, GoldenRecord.__table__)
    result = await session.execute(
        update(table)
        .where(table.c.golden_id == golden_id, table.c.version == expected_version)
        .values(**values)
    )
    if getattr(result, "rowcount", 1) != 1:
        raise TransientError(
            f"golden record {golden_id} changed concurrently (expected version "
            f"{expected_version}); the batch will be redone"
        )


@dataclass
class Writes:
    """Everything one batch writes, so that it can go to the store in one statement."""

    entity: str
    golden_inserts: list[dict[str, Any]] = field(default_factory=list)
    # (golden id, version read, new column values including the new version)
    golden_updates: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    postings: list[dict[str, Any]] = field(default_factory=list)
    count_deltas: dict[str, int] = field(default_factory=dict)
    members: list[dict[str, Any]] = field(default_factory=list)
    # (source system, source id, golden id, linked_at) of members that follow a new golden id
    relinks: list[tuple[str, str, str, datetime]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    # the core's outbox rows of the batch (FlowContext.take_outbox), written with the rest
    outbox: list[dict[str, object]] = field(default_factory=list)


async def write_batch(session: AsyncSession, w: Writes) -> None:
    """Write a batch's changes. PostgreSQL: one statement (data-modifying CTEs) whatever the
    batch holds, since a round trip costs a one-record batch more than all its rows; other
    stores (SQLite, in-process: a statement costs no round trip): one statement per table."""
    driver = await pg_driver(session) if _pg_fits(w) else None
    if driver is not None:
        await _pg_write(session, driver, w)
        return
    for gid, expected, values in w.golden_updates:
        await update_golden(session, gid, expected, values)
    await insert_rows(session, GoldenRecord, w.golden_inserts)
    for chunk in _chunks(w.postings, 2000):
        await insert_ignoring_conflicts(session, BlockKey.__table__, list(chunk))
    await add_counts(session, w.entity, w.count_deltas)
    await insert_rows(session, GoldenMember, w.members)
    for system, sid, gid, at in w.relinks:
        # a member whose golden record had vanished was resolved afresh: follow it
        await session.execute(
            update(GoldenMember)
            .where(
                GoldenMember.entity == w.entity,
                GoldenMember.source_id == sid,
                GoldenMember.source_system == system,
            )
            .values(golden_id=gid, linked_at=at)
            .execution_options(synchronize_session=False)
        )
    await insert_rows(session, ReviewItem, w.reviews)
    await insert_rows(session, IdentityEvent, w.events)
    await add_rows(session, w.outbox)


# a JSON parameter per table; past this many rows in all, fall back to per-table statements
# rather than send one very large parameter (a batch of 500 records stays well below)
_PG_MAX_ROWS = 20_000
_UPDATED = (
    "profile",
    "record",
    "winners",
    "name",
    "search_text",
    "member_count",
    "status",
    "merged_into",
    "version",
    "updated_at",
)


def _pg_fits(w: Writes) -> bool:
    parts = (
        w.golden_inserts,
        w.golden_updates,
        w.postings,
        w.members,
        w.reviews,
        w.events,
        w.outbox,
    )
    return sum(len(p) for p in parts) + len(w.count_deltas) + len(w.relinks) <= _PG_MAX_ROWS


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _recordset(
    dialect: Dialect, table: Table, param: str, columns: Sequence[str], extra: str = ""
) -> str:
    """`json_to_recordset($n) AS r(col type, ...)` typed like the table's columns (`param` is
    the placeholder, `$n`)."""
    defs = [f'"{c}" {table.c[c].type.compile(dialect=dialect)}' for c in columns]
    if extra:
        defs.append(extra)
    return f"json_to_recordset({param}::json) AS r({', '.join(defs)})"


# (CTE name, table, what follows the INSERT ... SELECT), in the order the other stores write
_PG_INSERTS: tuple[tuple[str, str, str], ...] = (
    ("ins_golden", "golden_records", ""),
    ("ins_keys", "block_keys", " ON CONFLICT DO NOTHING"),
    (
        "add_counts",
        "block_key_counts",
        " ON CONFLICT (key, entity) DO UPDATE SET n = block_key_counts.n + excluded.n",
    ),
    ("ins_members", "golden_members", ""),
    ("ins_reviews", "review_queue", ""),
    ("ins_events", "identity_events", ""),
)
_RELINKED = ("source_system", "source_id", "golden_id", "linked_at")
# the core's outbox rows, when the flow writes them with its own (decision 47): arrays, since
# key and value are bytes; in the order emitted
_OUTBOX = (
    "outbox AS (INSERT INTO outbox (topic, key, value, headers, created_at, attempts) "
    "SELECT topic, key, value, headers, created_at, attempts FROM unnest({}::varchar[], "
    "{}::bytea[], {}::bytea[], {}::json[], {}::timestamptz[], {}::integer[]) "
    "WITH ORDINALITY AS r(topic, key, value, headers, created_at, attempts, i) ORDER BY i)"
)
_OUTBOX_COLUMNS = ("topic", "key", "value", "headers", "created_at", "attempts")


@functools.lru_cache(maxsize=256)
def _pg_write_sql(
    dialect: Dialect,
    updates: bool,
    inserts: tuple[tuple[str, tuple[str, ...]], ...],
    relinks: bool,
    outbox: bool,
) -> tuple[str, tuple[str, ...]]:
    """The one write statement for a shape of batch (which tables get rows, which columns),
    as driver SQL and the names of its parameters in order: built once per shape, so the
    driver's prepared statement is reused too."""
    tables = {t.name: t for t in Base.metadata.sorted_tables}
    names: list[str] = []

    def param(name: str) -> str:
        names.append(name)
        return f"${len(names)}"

    ctes: list[str] = []
    if updates:
        sets = ", ".join(f'"{c}" = r."{c}"' for c in _UPDATED)
        source = _recordset(
            dialect,
            tables["golden_records"],
            param("upd"),
            ["golden_id", *_UPDATED],
            "expected integer",
        )
        ctes.append(
            f"upd AS (UPDATE golden_records AS g SET {sets} FROM {source} "
            "WHERE g.golden_id = r.golden_id AND g.version = r.expected RETURNING 1)"
        )
    present = dict(inserts)
    for name, table, tail in _PG_INSERTS:
        if name not in present:
            continue
        columns = present[name]
        listed = ", ".join(f'"{c}"' for c in columns)
        selected = ", ".join(f'r."{c}"' for c in columns)
        source = _recordset(dialect, tables[table], param(name), columns)
        ctes.append(
            f"{name} AS (INSERT INTO {table} ({listed}) SELECT {selected} FROM {source}{tail})"
        )
    if relinks:
        source = _recordset(dialect, tables["golden_members"], param("relink"), _RELINKED)
        ctes.append(
            "relink AS (UPDATE golden_members AS m SET golden_id = r.golden_id, "
            f"linked_at = r.linked_at FROM {source} "
            f"WHERE m.entity = {param('entity')}::varchar AND m.source_id = r.source_id "
            "AND m.source_system = r.source_system)"
        )
    if outbox:
        ctes.append(_OUTBOX.format(*(param(f"outbox.{c}") for c in _OUTBOX_COLUMNS)))
    counted = "(SELECT count(*) FROM upd)" if updates else "0"
    return f"WITH {', '.join(ctes)} SELECT {counted}", tuple(names)


async def _pg_write(session: AsyncSession, driver: Any, w: Writes) -> None:
    rows: dict[str, list[dict[str, Any]]] = {
        "ins_golden": w.golden_inserts,
        "ins_keys": w.postings,
        "add_counts": [
            {"key": k, "entity": w.entity, "n": n} for k, n in sorted(w.count_deltas.items())
        ],
        "ins_members": w.members,
        "ins_reviews": w.reviews,
        "ins_events": w.events,
    }
    params: dict[str, Any] = {
        name: json.dumps(r, default=_json_default, ensure_ascii=False)
        for name, r in rows.items()
        if r
    }
    if w.golden_updates:
        updates = [{"golden_id": g, "expected": v, **values} for g, v, values in w.golden_updates]
        params["upd"] = json.dumps(updates, default=_json_default, ensure_ascii=False)
    if w.relinks:
        relinks = [dict(zip(_RELINKED, r, strict=True)) for r in w.relinks]
        params["relink"] = json.dumps(relinks, default=_json_default, ensure_ascii=False)
        params["entity"] = w.entity
    for column in _OUTBOX_COLUMNS:
        values = [row[column] for row in w.outbox]
        if column == "headers":
            values = [json.dumps(v) for v in values]
        params[f"outbox.{column}"] = values
    if not (any(rows.values()) or w.golden_updates or w.relinks or w.outbox):
        return
    shape = tuple((name, tuple(r[0])) for name, r in rows.items() if r)
    sql, names = _pg_write_sql(
        session.get_bind().dialect,
        bool(w.golden_updates),
        shape,
        bool(w.relinks),
        bool(w.outbox),
    )
    updated = await driver.fetchval(sql, *(params[n] for n in names))
    if updated != len(w.golden_updates):
        # all of it is rolled back with the batch's transaction, which is redone
        raise TransientError(
            f"{len(w.golden_updates) - int(updated)} of golden records "
            f"{[g for g, _, _ in w.golden_updates]} changed concurrently; the batch will be redone"
        )


# --------------------------------------------------------------------------- operator actions


class StewardError(Exception):
    """An operator action that cannot be done as asked; `status` is the HTTP status to use."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_SPLIT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:eai-hub:golden-record:split")


@dataclass
class Outcome:
    """What an operator action did: golden ids touched, events to publish through the outbox."""

    golden_ids: list[str] = field(default_factory=list)
    events: list[tuple[str, Envelope]] = field(default_factory=list)  # (topic, envelope)


class Steward:
    """Merge, unmerge and review decisions, in the caller's transaction.

    Each action locks the golden rows it changes (FOR UPDATE on PostgreSQL; SQLite writers are
    serialized anyway), moves members, rebuilds the affected golden records from their members'
    latest source records (profile, postings, survivorship), bumps their versions (so a flow
    batch that read them before is redone), writes identity events and returns the
    golden.<entity> events for the outbox. Every action can be undone by another: unmerge undoes
    a merge, merge undoes an unmerge, and a merge back restores the first golden id.
    """

    def __init__(
        self,
        session: AsyncSession,
        entity: str,
        *,
        cap: int,
        default_country: str = "86",
        limit: int = 12,
        rules: SurvivorshipConfig | None = None,
        actor: str,
        now: datetime,
    ) -> None:
        self.s = session
        self.entity = entity
        self.cap = cap
        self.default_country = default_country
        self.limit = limit
        self.rules = rules or SurvivorshipConfig()
        self.actor = actor
        self.now = now

    async def _lock(self, golden_ids: Iterable[str]) -> dict[str, GoldenRecord]:
        ids = sorted(set(golden_ids))
        rows = (
            await self.s.execute(
                select(GoldenRecord)
                .where(GoldenRecord.golden_id.in_(ids))
                .order_by(GoldenRecord.golden_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalars()
        found = {r.golden_id: r for r in rows}
        for gid in ids:
            row = found.get(gid)
            if row is None or row.entity != self.entity:
                raise StewardError(404, f"no {self.entity} golden record {gid}")
        return found

    async def _rebuild(self, row: GoldenRecord) -> tuple[Survived, list[Pair]]:
        members = (await fetch_members(self.s, self.entity, [row.golden_id])).get(row.golden_id, [])
        sources = await fetch_sources(self.s, self.entity, members)
        profile: Profile | None = None
        keys: set[str] = set()
        for pair in members:
            src = sources.get(pair)
            if src is None:
                continue
            p = build_profile(self.entity, src.payload, self.default_country, pair[0])
            if p.usable():
                keys |= blocking_keys(p)
            profile = p if profile is None else merge_profiles(profile, p, self.limit)
        profile = profile or Profile(self.entity)
        await set_postings(self.s, self.entity, self.cap, row.golden_id, keys)
        survived = survive(self.entity, [sources[p] for p in members if p in sources], self.rules)
        for name, value in golden_values(
            row.golden_id, profile, survived, members, sources
        ).items():
            setattr(row, name, value)
        row.version += 1
        row.updated_at = self.now
        return survived, members

    async def _retire(self, row: GoldenRecord, into: str) -> None:
        await set_postings(self.s, self.entity, self.cap, row.golden_id, ())
        row.status = RETIRED
        row.merged_into = into
        row.member_count = 0
        row.version += 1
        row.updated_at = self.now

    def _event(
        self,
        kind: str,
        golden_id: str,
        other: str | None,
        evidence: dict[str, Any],
        pair: Pair | None = None,
    ) -> None:
        self.s.add(
            IdentityEvent(
                entity=self.entity,
                kind=kind,
                golden_id=golden_id,
                other_golden_id=other,
                source_system=pair[0] if pair else None,
                source_id=pair[1] if pair else None,
                evidence=evidence,
                message_id=None,
                actor=self.actor,
                at=self.now,
            )
        )

    def _emit(
        self,
        out: Outcome,
        op: Op,
        row: GoldenRecord,
        body: dict[str, Any],
        evidence: dict[str, Any],
    ) -> None:
        # issue 4: every merge and split on the topic says who decided it and why
        body = {**body, "evidence": {"decided_by": self.actor, **evidence}}
        env = golden_envelope(self.entity, row.golden_id, row.version, op, body, self.now)
        out.events.append((topics.golden(self.entity), env))
        out.golden_ids.append(row.golden_id)

    async def _move(self, pairs: Sequence[Pair], to: str, action: str) -> None:
        for chunk in _chunks(list(pairs)):
            await self.s.execute(
                update(GoldenMember)
                .where(
                    GoldenMember.entity == self.entity,
                    or_(
                        *(
                            and_(GoldenMember.source_id == sid, GoldenMember.source_system == sys)
                            for sys, sid in chunk
                        )
                    ),
                )
                .values(golden_id=to, action=action, linked_at=self.now)
                .execution_options(synchronize_session=False)
            )

    async def resolve_active(self, golden_id: str) -> str:
        """Follow merged_into from a retired golden id to the active one that absorbed it."""
        seen: set[str] = set()
        gid = golden_id
        while gid not in seen:
            seen.add(gid)
            row = await self.s.get(GoldenRecord, gid)
            if row is None or row.entity != self.entity:
                raise StewardError(404, f"no {self.entity} golden record {golden_id}")
            if row.status == ACTIVE or row.merged_into is None:
                return gid
            gid = row.merged_into
        raise StewardError(409, f"golden record {golden_id} is merged in a cycle")

    async def merge(
        self, golden_ids: Sequence[str], into: str | None = None, reason: str | None = None
    ) -> Outcome:
        ids = list(dict.fromkeys(golden_ids))
        if len(ids) < 2:
            raise StewardError(400, "merge needs at least two distinct golden ids")
        if into is not None and into not in ids:
            raise StewardError(400, f"into {into} must be one of the golden ids merged")
        rows = await self._lock(ids)
        for gid in ids:
            if rows[gid].status != ACTIVE:
                raise StewardError(
                    409, f"golden record {gid} is {rows[gid].status}; merge active records only"
                )
        # the oldest keeps its id: systems have stored it longest
        survivor_id = into or min(ids, key=lambda g: (rows[g].created_at, g))
        survivor = rows[survivor_id]
        others = [rows[g] for g in ids if g != survivor_id]
        moved: dict[str, list[Pair]] = await fetch_members(
            self.s, self.entity, [o.golden_id for o in others]
        )
        for other in others:
            await self._move(moved.get(other.golden_id, []), survivor_id, "manual_merge")
        out = Outcome()
        for other in others:
            await self._retire(other, survivor_id)
            evidence = {
                "reason": reason,
                "members": [list(p) for p in moved.get(other.golden_id, [])],
            }
            self._event("merge", survivor_id, other.golden_id, evidence)
        survived, members = await self._rebuild(survivor)
        merged_from = [o.golden_id for o in others]
        why = {"action": "merge", "reason": reason}
        self._emit(
            out,
            Op.merge,
            survivor,
            golden_body(survivor_id, survived, members, merged_from=merged_from),
            {**why, "merged_from": merged_from},
        )
        for other in others:
            body = {"golden_id": other.golden_id, "merged_into": survivor_id, "members": []}
            self._emit(out, Op.merge, other, body, {**why, "merged_into": survivor_id})
        await self._close_reviews(survivor_id, merged_from)
        return out

    async def _close_reviews(self, survivor: str, merged: Sequence[str]) -> None:
        """Open review items between records now in one golden record are settled."""
        group = [survivor, *merged]
        await self.s.execute(
            update(ReviewItem)
            .where(
                ReviewItem.entity == self.entity,
                ReviewItem.status == OPEN,
                ReviewItem.golden_id.in_(group),
                ReviewItem.candidate_id.in_(group),
            )
            .values(status=ACCEPTED, decided_by=self.actor, decided_at=self.now)
            .execution_options(synchronize_session=False)
        )

    async def unmerge(self, golden_id: str, pair: Pair, reason: str | None = None) -> Outcome:
        rows = await self._lock([golden_id])
        row = rows[golden_id]
        if row.status != ACTIVE:
            raise StewardError(409, f"golden record {golden_id} is {row.status}")
        members = (await fetch_members(self.s, self.entity, [golden_id])).get(golden_id, [])
        if pair not in members:
            raise StewardError(404, f"{pair[0]}/{pair[1]} is not a member of {golden_id}")
        if len(members) < 2:
            raise StewardError(409, f"{golden_id} has a single member: nothing to split off")
        target = await self._split_target(golden_id, pair, row.version)
        target_row = await self.s.get(GoldenRecord, target, with_for_update=True)
        if target_row is None:
            target_row = GoldenRecord(
                golden_id=target,
                entity=self.entity,
                profile={},
                record={},
                winners={},
                status=ACTIVE,
                search_text="",
                member_count=0,
                version=0,
                created_at=self.now,
                updated_at=self.now,
            )
            self.s.add(target_row)
        target_row.status = ACTIVE
        target_row.merged_into = None
        await self._move([pair], target, "unmerge")
        await self.s.flush()
        out = Outcome()
        survived, kept = await self._rebuild(row)
        split, split_members = await self._rebuild(target_row)
        self._event("unmerge", golden_id, target, {"reason": reason}, pair)
        why = {
            "action": "unmerge",
            "reason": reason,
            "member": {"source_system": pair[0], "source_id": pair[1]},
        }
        self._emit(out, Op.unmerge, row, golden_body(golden_id, survived, kept), why)
        self._emit(
            out,
            Op.unmerge,
            target_row,
            golden_body(target, split, split_members, split_from=golden_id),
            why,
        )
        return out

    async def _split_target(self, golden_id: str, pair: Pair, version: int) -> str:
        """The golden id a split-off record gets: its own (first-member) id when that is free
        or retired, so that unmerge after merge restores the original ids; otherwise a new
        deterministic one."""
        own = golden_id_for(self.entity, pair[0], pair[1])
        if own != golden_id:
            existing = await self.s.get(GoldenRecord, own)
            if existing is None or existing.status == RETIRED:
                return own
        name = f"{self.entity}/{pair[0]}/{pair[1]}/split/{golden_id}/{version}"
        return "G-" + str(uuid.uuid5(_SPLIT_NAMESPACE, name))

    async def decide_review(
        self, review_id: int, accept: bool, reason: str | None = None
    ) -> tuple[ReviewItem, Outcome]:
        item = await self.s.get(ReviewItem, review_id, with_for_update=True)
        if item is None or item.entity != self.entity:
            raise StewardError(404, f"no review item {review_id}")
        if item.status != OPEN:
            raise StewardError(409, f"review item {review_id} is already {item.status}")
        item.decided_by = self.actor
        item.decided_at = self.now
        pair = (item.source_system, item.source_id)
        out = Outcome()
        if not accept:
            item.status = REJECTED
            self._event(
                "review",
                item.golden_id,
                item.candidate_id,
                {"review_id": review_id, "decision": "rejected", "reason": reason},
                pair,
            )
            return item, out
        item.status = ACCEPTED
        current = await self.s.scalar(
            select(GoldenMember.golden_id).where(
                GoldenMember.entity == self.entity,
                GoldenMember.source_system == pair[0],
                GoldenMember.source_id == pair[1],
            )
        )
        if current is None:
            raise StewardError(409, f"{pair[0]}/{pair[1]} is not linked to a golden record")
        target = await self.resolve_active(item.candidate_id)
        evidence = {
            "review_id": review_id,
            "decision": "accepted",
            "score": item.score,
            "reason": reason,
        }
        if current == target:
            self._event("review", target, current, evidence, pair)
            return item, out
        members = (await fetch_members(self.s, self.entity, [current])).get(current, [])
        if members == [pair]:
            # the record is its golden record's only member: merge that golden record
            merged = await self.merge([target, current], into=target, reason="review accepted")
            self._event("review", target, current, evidence, pair)
            return item, merged
        rows = await self._lock([current, target])
        await self._move([pair], target, "review_accept")
        await self.s.flush()
        survived, kept = await self._rebuild(rows[target])
        left, left_members = await self._rebuild(rows[current])
        self._event("merge", target, current, evidence, pair)
        why = {
            "action": "review accepted",
            **evidence,
            "member": {"source_system": pair[0], "source_id": pair[1]},
            "match": item.evidence,
        }
        self._emit(out, Op.merge, rows[target], golden_body(target, survived, kept), why)
        self._emit(out, Op.unmerge, rows[current], golden_body(current, left, left_members), why)
        return item, out


async def count_active(session: AsyncSession, entity: str) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(GoldenRecord)
            .where(GoldenRecord.entity == entity, GoldenRecord.status == ACTIVE)
        )
        or 0
    )


async def insert_rows(session: AsyncSession, model: Any, rows: list[dict[str, Any]]) -> None:
    # a Core insert of the table: the ORM's bulk insert would add RETURNING of the ids and
    # its per-row bookkeeping, which nobody reads here
    table = model.__table__
    for chunk in _chunks(rows, 1000):
        await session.execute(insert(table), list(chunk))
