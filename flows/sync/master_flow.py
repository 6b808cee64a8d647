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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import topics
from contracts.envelope import Envelope, Op
from flows.sync import master
from flows.sync.config import MasterSync, SyncConfig
from hub.core.processor import FlowContext, FlowSpec, Item
from hub.delivery import xref
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
    golden members are the identity flow's, unchanged while this batch runs)."""

    states: dict[tuple[str, str], SyncState] = field(default_factory=dict)
    known: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    held: dict[tuple[str, str, str], str] = field(default_factory=dict)
    member_of: dict[tuple[str, str, str], str] = field(default_factory=dict)

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

    async def learn(self, s: AsyncSession, entity: str, key: str, system: str, lid: str) -> None:
        await xref.upsert_many(s, [_xref_row(entity, key, system, lid)])
        self.known_of(entity, key)[system] = lid
        self.held[(entity, system, lid)] = key

    async def link(self, s: AsyncSession, entity: str, key: str, system: str, lid: str) -> str:
        """Link a key that had no copy in ``system`` when the batch was read; returns the
        local id it has now (another one if the deliverer linked a copy meanwhile)."""
        linked = await xref.link_if_absent(s, entity, key, system, lid)
        self.known_of(entity, key)[system] = linked
        self.held[(entity, system, linked)] = key
        return linked

    async def forget(self, s: AsyncSession, entity: str, key: str, system: str) -> None:
        await xref.forget(s, entity, key, system)
        lid = self.known.get((entity, key), {}).pop(system, None)
        if lid is not None and self.held.get((entity, system, lid)) == key:
            del self.held[(entity, system, lid)]


class MasterSyncFlow:
    def __init__(self, config: SyncConfig) -> None:
        self.config = config

    async def handle(self, ctx: FlowContext, items: list[Item]) -> None:
        now = datetime.now(UTC)
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
            await self._one(ctx, batch, env, entity, gid, conf, now)

    async def _refreeze(self, ctx: FlowContext, items: list[Item]) -> None:
        """A copy quarantined as a duplicate that its clerk edits (and so unfreezes) is frozen
        again: its golden record may not change at all, so no golden event would tell us."""
        wanted = [(i.env.entity.value, i.env.source_system, i.env.source_id) for i in items]
        held = await xref.holders(ctx.session, wanted)
        for item, ids in zip(items, wanted, strict=True):
            key = held.get(ids)
            env = item.env
            if key is None or DUPLICATE_MARK not in key or env.op is Op.delete:
                continue
            if env.body.get("frozen") is True or "quarantine" in (env.body.get("attributes") or {}):
                continue  # still quarantined (or our own quarantine coming back)
            conf = self.config.master.get(ids[0])  # type: ignore[call-overload]
            if conf is None or conf.deletes == "ignore":
                continue
            gid = key.partition(DUPLICATE_MARK)[0]
            reason = (
                f"duplicate of golden record {gid}: edited in {env.source_system}, frozen again"
            )
            body = master.quarantine(ids[0], dict(env.body), reason)
            ctx.emit(topics.outbound(env.source_system), _fresh(env, ids[0], key, body), key=key)

    async def _one(
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
        await self._learn(ctx, batch, env, entity, gid, conf)
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
            s.add(state)
            batch.states[(entity, gid)] = state
        else:
            state.body = p.body
            state.quarantined = p.quarantined
            state.targets = sorted(set(state.targets) | set(targets))
            state.version += 1
            state.updated_at = now

    async def _learn(
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
        s = ctx.session
        known = batch.known_of(entity, gid)
        await self._drop_moved(ctx, batch, entity, gid, set(members))
        for system, local in members:
            owner = batch.held.get((entity, system, local))
            # held by another golden record, or as a duplicate of another one
            moved = owner is not None and owner.split(DUPLICATE_MARK)[0] != gid
            if moved and owner is not None and system not in known:
                # that copy there is this one's now (a split, a merge, an accepted review)
                await batch.forget(s, entity, owner, system)
                owner = None
            if owner is not None:
                continue  # already known: as this golden record, or as a retired one
            if system not in known and await batch.link(s, entity, gid, system, local) == local:
                continue
            # A second record of this golden record in one system: a clerk typed it again
            # (or the hub's create of a copy there landed, and was linked, while this batch
            # ran: the first linked is the golden record's copy).
            # Its cross-reference is kept whatever happens to it next: orders and other
            # messages that quote it must resolve to the golden record (they parked for ever
            # when a filtered subscriber's duplicate was left without one).
            dup = duplicate_key(gid, system, local)
            await batch.learn(s, entity, dup, system, local)
            if system not in conf.subscribers or conf.deletes == "ignore":
                continue
            if not conf.wants(system, master.record_of(env.body)):
                continue
            body = master.record_of(env.body)
            if not body:
                continue
            reason = f"duplicate of {known[system]} (golden record {gid})"
            ctx.emit(
                topics.outbound(system),
                _fresh(env, entity, dup, master.quarantine(entity, body, reason)),
                key=dup,
            )

    async def _drop_moved(
        self, ctx: FlowContext, batch: _Batch, entity: str, gid: str, members: set[tuple[str, str]]
    ) -> None:
        """Forget copies that were members of ``gid`` and now belong to another golden record
        (a copy the hub created there is no member of any, and stays)."""
        for system, lid in list(batch.known_of(entity, gid).items()):
            if (system, lid) in members:
                continue
            owner = batch.member_of.get((entity, system, lid))
            if owner is not None and owner != gid:
                await batch.forget(ctx.session, entity, gid, system)


def spec(config: SyncConfig) -> FlowSpec:
    flow = MasterSyncFlow(config)
    entities: Sequence[str] = [e for e, m in config.master.items() if m.subscribers]
    return FlowSpec(
        name=NAME,
        # golden events, and accepted changes to re-freeze duplicates a clerk unfroze
        topics=[topics.golden(e) for e in entities] + [topics.changes(e) for e in entities],
        handle=flow.handle,
        # golden events carry golden_id/members/winners beside the record's fields
        validate_body=False,
    )
