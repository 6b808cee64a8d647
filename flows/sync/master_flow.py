"""The master-data sync flow: ``golden.customer`` / ``golden.material`` -> ``outbound.<system>``.

Per golden event, in the batch's store transaction:

1. learns cross-references from the members: a member ``crm/KH000001`` of ``G-1`` means CRM
   knows ``G-1`` as ``KH000001`` (the first member a system has wins; a later one from the same
   system is a re-entered duplicate there and is quarantined in that system);
2. plans the body with ``master.plan`` (field ownership, quarantine of deleted and merged-away
   records) against what was sent before (``sync_state``);
3. emits the body to ``outbound.<system>`` of every subscriber except the origin, keyed by the
   golden id; the delivery runtime turns that into a create or an update by the
   cross-reference and records the id a system gives.

The flow consumes golden events only. A duplicate copy that its clerk edits is frozen again
by ``MasterSyncFlow.refreeze``, which the hub lends to the identity flow: that flow consumes
every accepted change anyway and reads the change's cross-reference in its prefetch
(decision 65).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import topics
from contracts.envelope import Envelope, Op
from flows.sync import master
from flows.sync.config import MasterSync, SyncConfig
from hub.core.processor import FlowContext, FlowSpec, Item
from hub.delivery import xref
from hub.store.bulk import insert_rows
from hub.store.delivery_models import Xref
from hub.store.identity_models import GoldenMember
from hub.store.models import RecordEvent
from hub.store.sync_models import SyncState

NAME = "sync.master"
CHUNK = 1000  # keys per IN (...) query
CHANGES_PREFIX = "changes."
DUPLICATE_MARK = xref.DUPLICATE_MARK
duplicate_key = xref.duplicate_key


def _members(body: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for m in body.get("members") or []:
        if isinstance(m, dict) and m.get("source_system") and m.get("source_id"):
            out.append((str(m["source_system"]), str(m["source_id"])))
    return out


def _xref_row(entity: str, key: str, system: str, local_id: str) -> dict[str, Any]:
    return {
        "entity": entity,
        "key": key,
        "system": system,
        "local_id": local_id,
        "updated_at": datetime.now(UTC),
    }


def _fresh(env: Envelope, entity: str, key: str, body: dict[str, Any]) -> Envelope:
    """A hub-made change (quarantine): no trace, so it may go to any system, even the one the
    cause came from (the record it freezes there is not the cause's)."""
    return Envelope(
        entity=env.entity,
        op=Op.upsert,
        source_system=master.HUB,
        source_id=key,
        source_ts=env.source_ts,
        correlation_id=env.correlation_id or env.message_id,
        body=body,
    )


@dataclass
class _Batch:
    """What a batch's events need from the store, read in a few queries up front and kept
    current as the batch writes (only this flow writes xrefs of golden keys and sync_state;
    golden members are the identity flow's, unchanged while this batch runs).

    Cross-reference writes are collected and written by ``flush`` at the end of the batch
    (deletes, one upsert, one insert-if-absent of the links and one read-back): a statement
    per event also flushed the event's new ``sync_state`` row one at a time, two round trips
    per event (8 ms per event on PostgreSQL, the slowest stage of the chain)."""

    states: dict[tuple[str, str], SyncState] = field(default_factory=dict)
    known: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    held: dict[tuple[str, str, str], str] = field(default_factory=dict)
    member_of: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # (entity, key, system) -> local id as last learned in this batch; deleted: forgotten
    # at some point of the batch (deleted before the upsert, so a local id that moves from
    # one key to another never meets its old row)
    learned: dict[tuple[str, str, str], str] = field(default_factory=dict)
    deleted: set[tuple[str, str, str]] = field(default_factory=set)
    # golden keys linked to a member's copy (insert-if-absent, ``xref.link_if_absent``): the
    # deliverer may link a copy it created meanwhile, and the first linked one stays
    links: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # sync_state rows first written in this batch, inserted by ``flush`` in one statement
    # (the ORM inserted them one by one)
    fresh: list[SyncState] = field(default_factory=list)

    @classmethod
    async def load(cls, s: AsyncSession, events: list[tuple[str, str, Envelope]]) -> _Batch:
        b = cls()
        keys = sorted({(e, g) for e, g, _ in events})
        for i in range(0, len(keys), CHUNK):
            part = keys[i : i + CHUNK]
            rows = await s.scalars(
                select(SyncState).where(tuple_(SyncState.entity, SyncState.key).in_(part))
            )
            b.states.update({(r.entity, r.key): r for r in rows})
            found = await s.execute(
                select(Xref.entity, Xref.key, Xref.system, Xref.local_id).where(
                    tuple_(Xref.entity, Xref.key).in_(part)
                )
            )
            for entity, key, system, lid in found.tuples():
                b.known.setdefault((entity, key), {})[system] = lid
        pairs = {(e, sys, lid) for e, _, env in events for sys, lid in _members(env.body)}
        pairs |= {(e, sys, lid) for (e, _), ids in b.known.items() for sys, lid in ids.items()}
        wanted = sorted(pairs)
        for i in range(0, len(wanted), CHUNK):
            b.held.update(await xref.holders(s, wanted[i : i + CHUNK]))
            found = await s.execute(
                select(
                    GoldenMember.entity,
                    GoldenMember.source_system,
                    GoldenMember.source_id,
                    GoldenMember.golden_id,
                ).where(
                    tuple_(
                        GoldenMember.entity, GoldenMember.source_system, GoldenMember.source_id
                    ).in_(wanted[i : i + CHUNK])
                )
            )
            b.member_of.update({(e, sys, sid): g for e, sys, sid, g in found.tuples()})
        return b

    def known_of(self, entity: str, key: str) -> dict[str, str]:
        return self.known.setdefault((entity, key), {})

    def learn(self, entity: str, key: str, system: str, lid: str) -> None:
        self.learned[(entity, key, system)] = lid
        self.known_of(entity, key)[system] = lid
        self.held[(entity, system, lid)] = key

    def link(self, entity: str, key: str, system: str, lid: str) -> None:
        """Link a key that had no copy in ``system`` when the batch was read; ``flush``
        writes it unless the key got a copy meanwhile, and returns those that lost."""
        self.links[(entity, key, system)] = lid
        self.known_of(entity, key)[system] = lid
        self.held[(entity, system, lid)] = key

    def forget(self, entity: str, key: str, system: str) -> None:
        self.learned.pop((entity, key, system), None)
        self.links.pop((entity, key, system), None)
        self.deleted.add((entity, key, system))
        lid = self.known.get((entity, key), {}).pop(system, None)
        if lid is not None and self.held.get((entity, system, lid)) == key:
            del self.held[(entity, system, lid)]

    async def flush(self, s: AsyncSession) -> list[tuple[str, str, str, str]]:
        """Write the batch's cross-reference changes: the net effect of learn/link/forget in
        order, in a few statements whatever the batch size. Returns the links that lost to
        a copy linked meanwhile, as (entity, key, system, local id of the member), with the
        maps corrected to the copy that stays."""
        gone = sorted(self.deleted)
        for i in range(0, len(gone), CHUNK):
            await s.execute(
                delete(Xref).where(
                    tuple_(Xref.entity, Xref.key, Xref.system).in_(gone[i : i + CHUNK])
                )
            )
        rows = [_xref_row(e, k, sys, lid) for (e, k, sys), lid in sorted(self.learned.items())]
        for i in range(0, len(rows), CHUNK):
            await xref.upsert_many(s, rows[i : i + CHUNK])
        self.learned.clear()
        self.deleted.clear()
        lost = await self._write_links(s)
        new = [
            {
                "entity": st.entity,
                "key": st.key,
                "body": st.body,
                "quarantined": st.quarantined,
                "targets": st.targets,
                "version": st.version,
                "updated_at": st.updated_at,
            }
            for st in self.fresh
        ]
        self.fresh.clear()
        for i in range(0, len(new), CHUNK):
            await insert_rows(s, SyncState, new[i : i + CHUNK])  # Core (decision 50)
        return lost

    async def _write_links(self, s: AsyncSession) -> list[tuple[str, str, str, str]]:
        links, self.links = self.links, {}
        wanted = sorted(links)
        rows = [_xref_row(e, k, sys, links[(e, k, sys)]) for e, k, sys in wanted]
        current: dict[tuple[str, str, str], str] = {}
        for i in range(0, len(rows), CHUNK):
            await xref.insert_absent_many(s, rows[i : i + CHUNK])
            found = await s.execute(
                select(Xref.entity, Xref.key, Xref.system, Xref.local_id)
                .where(tuple_(Xref.entity, Xref.key, Xref.system).in_(wanted[i : i + CHUNK]))
                .execution_options(populate_existing=True)
            )
            current.update({(e, k, sys): lid for e, k, sys, lid in found.tuples()})
        lost = []
        for (entity, key, system), lid in links.items():
            now = current.get((entity, key, system), lid)
            if now == lid:
                continue
            lost.append((entity, key, system, lid))
            self.known_of(entity, key)[system] = now
            self.held[(entity, system, now)] = key
            if self.held.get((entity, system, lid)) == key:
                del self.held[(entity, system, lid)]
        return lost


class MasterSyncFlow:
    def __init__(self, config: SyncConfig) -> None:
        self.config = config

    async def handle(self, ctx: FlowContext, items: list[Item]) -> None:
        now = datetime.now(UTC)
        # the flow no longer subscribes to changes (the identity flow hands it those it needs,
        # decision 65), but a replay of a changes topic into it still re-freezes as before
        edits = [i for i in items if i.rec.topic.startswith(CHANGES_PREFIX)]
        if edits:
            await self._refreeze(ctx, edits)
        events: list[tuple[str, str, Envelope]] = []
        for item in items:
            if item.rec.topic.startswith(CHANGES_PREFIX):
                continue
            entity = item.env.entity.value
            conf = self.config.master.get(entity)  # type: ignore[call-overload]
            if conf is not None and conf.subscribers:
                gid = str(item.env.body.get("golden_id") or item.env.source_id)
                events.append((entity, gid, item.env))
        if not events:
            return
        batch = await _Batch.load(ctx.session, events)
        for entity, gid, env in events:
            conf = self.config.master[entity]  # type: ignore[index]
            self._one(ctx, batch, env, entity, gid, conf, now)
        await self._write(ctx, batch, events)

    async def _write(
        self, ctx: FlowContext, batch: _Batch, events: list[tuple[str, str, Envelope]]
    ) -> None:
        """Write what the batch's events decided. A link that lost means the deliverer
        linked a copy it created while this batch ran: the first linked is the golden
        record's copy, and the member is a second record there (rare)."""
        lost = await batch.flush(ctx.session)
        if not lost:
            return
        last = {(entity, gid): env for entity, gid, env in events}
        for entity, gid, system, local in lost:
            conf = self.config.master[entity]  # type: ignore[index]
            self._duplicate(ctx, batch, last[(entity, gid)], entity, gid, conf, system, local)
        await batch.flush(ctx.session)

    async def _refreeze(self, ctx: FlowContext, items: list[Item]) -> None:
        """Changes replayed into this flow: the look-up the identity flow's prefetch does on
        the live path, then the same re-freeze."""
        wanted = [(i.env.entity.value, i.env.source_system, i.env.source_id) for i in items]
        held = await xref.holders(ctx.session, wanted)
        by_entity: dict[str, list[tuple[Envelope, str]]] = {}
        for item, ids in zip(items, wanted, strict=True):
            key = held.get(ids)
            if key is not None:
                by_entity.setdefault(ids[0], []).append((item.env, key))
        for entity, changes in by_entity.items():
            self.refreeze(ctx, entity, changes)

    def refreeze(self, ctx: FlowContext, entity: str, changes: list[tuple[Envelope, str]]) -> None:
        """A copy quarantined as a duplicate that its clerk edits (and so unfreezes) is frozen
        again: its golden record may not change at all, so no golden event would tell us.

        ``changes``: accepted changes of ``entity`` with the cross-reference key holding their
        record. Called in the identity flow's batch transaction (``IdentityFlow.on_held``),
        which consumes every change anyway: this flow would otherwise consume each change a
        second time only for this."""
        conf = self.config.master.get(entity)  # type: ignore[call-overload]
        if conf is None or not conf.subscribers or conf.deletes == "ignore":
            return
        for env, key in changes:
            if DUPLICATE_MARK not in key or env.op is Op.delete:
                continue
            if env.body.get("frozen") is True or "quarantine" in (env.body.get("attributes") or {}):
                continue  # still quarantined (or our own quarantine coming back)
            gid = key.partition(DUPLICATE_MARK)[0]
            reason = (
                f"duplicate of golden record {gid}: edited in {env.source_system}, frozen again"
            )
            body = master.quarantine(entity, dict(env.body), reason)
            ctx.emit(topics.outbound(env.source_system), _fresh(env, entity, key, body), key=key)

    def _one(
        self,
        ctx: FlowContext,
        batch: _Batch,
        env: Envelope,
        entity: str,
        gid: str,
        conf: MasterSync,
        now: datetime,
    ) -> None:
        s = ctx.session
        origin = master.origin_of(env.trace, env.source_system)
        self._learn(ctx, batch, env, entity, gid, conf)
        state = batch.states.get((entity, gid))
        last = state.body if state is not None else None
        p = master.plan(entity, env.body, origin, last, state.quarantined if state else False, conf)
        if p.rejected:
            s.add(
                RecordEvent(
                    message_id=str(env.message_id),
                    entity=entity,
                    source_system=master.HUB,
                    source_id=gid,
                    outcome="field_rejected",
                    detail="; ".join(p.rejected.values())[:4000],
                    source_version=env.source_version,
                    source_ts=env.source_ts,
                    at=now,
                )
            )
        if p.body is None:
            return
        if p.quarantined:
            holders = batch.known_of(entity, gid)
            sent = set(state.targets if state else ())
            targets = sorted((sent | set(holders)) & set(conf.subscribers))
            if "deleted in" in p.reason:
                targets = [t for t in targets if t != origin]  # gone there already
            out = _fresh(env, entity, gid, p.body)
        else:
            # a subscriber that keeps only some records gets this one only while it matches:
            # one that stopped matching stays there as last sent (the system would refuse
            # the change permanently, a dead letter nobody can act on)
            targets = [t for t in conf.subscribers if t != origin and conf.wants(t, p.body)]
            out = env.caused(op=Op.upsert, body=p.body)
        for target in targets:
            ctx.emit(topics.outbound(target), out, key=gid)
        if state is None:
            state = SyncState(
                entity=entity,
                key=gid,
                body=p.body,
                quarantined=p.quarantined,
                targets=sorted(targets),
                version=1,
                updated_at=now,
            )
            batch.fresh.append(state)  # inserted by batch.flush, with the others
            batch.states[(entity, gid)] = state
        else:
            state.body = p.body
            state.quarantined = p.quarantined
            state.targets = sorted(set(state.targets) | set(targets))
            state.version += 1
            state.updated_at = now

    def _learn(
        self,
        ctx: FlowContext,
        batch: _Batch,
        env: Envelope,
        entity: str,
        gid: str,
        conf: MasterSync,
    ) -> None:
        """Cross-references from the members; duplicates within one system quarantined.

        Membership moves (a steward's merge, split or accepted review) move copies with it: a
        copy held by another golden record whose member it no longer is becomes this one's
        when this one has none in that system, and a copy this golden record holds that is a
        member of another one now is forgotten here (the next change creates a copy of its
        own there). Which event comes first does not matter: both sides apply the same rule.
        """
        members = _members(env.body)
        known = batch.known_of(entity, gid)
        self._drop_moved(batch, entity, gid, set(members))
        for system, local in members:
            owner = batch.held.get((entity, system, local))
            # held by another golden record, or as a duplicate of another one
            moved = owner is not None and owner.split(DUPLICATE_MARK)[0] != gid
            if moved and owner is not None and system not in known:
                # that copy there is this one's now (a split, a merge, an accepted review)
                batch.forget(entity, owner, system)
                owner = None
            if owner is not None:
                continue  # already known: as this golden record, or as a retired one
            if system not in known:
                batch.link(entity, gid, system, local)
                continue
            self._duplicate(ctx, batch, env, entity, gid, conf, system, local)

    def _duplicate(
        self,
        ctx: FlowContext,
        batch: _Batch,
        env: Envelope,
        entity: str,
        gid: str,
        conf: MasterSync,
        system: str,
        local: str,
    ) -> None:
        """A second record of this golden record in one system: a clerk typed it again (or
        the hub's create of a copy there landed, and was linked, while this batch ran: the
        first linked is the golden record's copy).

        Its cross-reference is kept whatever happens to it next: orders and other messages
        that quote it must resolve to the golden record (they parked for ever when a
        filtered subscriber's duplicate was left without one)."""
        dup = duplicate_key(gid, system, local)
        batch.learn(entity, dup, system, local)
        if system not in conf.subscribers or conf.deletes == "ignore":
            return
        if not conf.wants(system, master.record_of(env.body)):
            return
        body = master.record_of(env.body)
        if not body:
            return
        reason = f"duplicate of {batch.known_of(entity, gid)[system]} (golden record {gid})"
        ctx.emit(
            topics.outbound(system),
            _fresh(env, entity, dup, master.quarantine(entity, body, reason)),
            key=dup,
        )

    def _drop_moved(
        self, batch: _Batch, entity: str, gid: str, members: set[tuple[str, str]]
    ) -> None:
        """Forget copies that were members of ``gid`` and now belong to another golden record
        (a copy the hub created there is no member of any, and stays)."""
        for system, lid in list(batch.known_of(entity, gid).items()):
            if (system, lid) in members:
                continue
            owner = batch.member_of.get((entity, system, lid))
            if owner is not None and owner != gid:
                batch.forget(entity, gid, system)


def spec(config: SyncConfig) -> FlowSpec:
    flow = MasterSyncFlow(config)
    entities: Sequence[str] = [e for e, m in config.master.items() if m.subscribers]
    return FlowSpec(
        name=NAME,
        # golden events only: edited duplicates are re-frozen by ``refreeze`` in the identity
        # flow's transaction (the hub wires it, ``hub.runtime.link_flows``; decision 65)
        topics=[topics.golden(e) for e in entities],
        handle=flow.handle,
        # golden events carry golden_id/members/winners beside the record's fields
        validate_body=False,
    )


def flow_of(spec_: FlowSpec) -> MasterSyncFlow | None:
    """The MasterSyncFlow behind a spec built by `spec()`, to lend its re-freeze to the
    identity flow."""
    owner = getattr(spec_.handle, "__self__", None)
    return owner if isinstance(owner, MasterSyncFlow) else None
