"""The identity flow: accepted customer and material changes -> golden records.

Consumes ``changes.customer`` and ``changes.material`` (the records flow's accepted changes,
so duplicates and stale updates never reach it) and, per batch, in the batch's one store
transaction (exactly-once effect through the core's ledger):

1. builds each record's profile and blocking keys;
2. prefetches what the batch needs (``store_index.BatchIndex``) and runs the pure ``Resolver``
   over it, record after record in arrival order: merge into the best candidate above the upper
   threshold, new golden record + review item between the thresholds, new golden record below;
   a record already linked stays with its golden record (an update);
3. recomputes survivorship of every golden record a message touched, from its members' latest
   source records, and emits, per message that changed one, an event on ``golden.<entity>``:
   op ``merge`` when the record joined an existing golden record, ``upsert`` otherwise; key and
   source_id = golden id, source_system ``hub``, source_version = the golden record's version,
   trace = the cause's trace + the origin system (so the sync flow never echoes a change back
   to where it came from); body = the golden record + ``golden_id``, ``members``, ``winners``;
4. when the hub runs sync.master beside it (``on_held``, set by ``hub.runtime.link_flows``),
   hands it the batch's changes of records a cross-reference holds, with their keys, read by
   the prefetch: sync.master re-freezes an edited duplicate there, in this transaction
   (decision 65), instead of consuming every change a second time;
5. writes profiles (version-checked), postings and key counts, members, review items,
   identity events and, on PostgreSQL, the batch's outbox rows (the golden events, and step
   4's re-freezes when they go to a topic) in bulk:
   one statement on PostgreSQL (``store_index.write_batch``).

A one-record batch on PostgreSQL sends two or three statements of its own (prefetch, state of
the golden records it changes when they already existed, write, all as driver SQL) besides the
core's one ledger claim (decision 47): three round trips, four for a merge, plus BEGIN/COMMIT.

The model
---------
Streaming has no data set to fit on. It scores with ``Model.default(entity)`` (the m/u
defaults of ``scoring.DEFAULT_M``/``DEFAULT_U``, prior 1e-5) with ``IdentityConfig``'s
overrides applied (prior, m, u, tf_weight), exactly as ``training`` does for an input too
small to fit. A model fitted on a legacy backlog (``eai-hub dedup batch --save-model
DIR/customer.json``) is used instead when given (``models=`` or ``model_dir=`` holding
``customer.json`` / ``material.json``); running the batch command with ``--model`` of that same
file then gives the same clusters as streaming for the same input order.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts import topics
from contracts.envelope import Entity, Envelope, Op
from flows.identity.blocking import blocking_keys
from flows.identity.config import IdentityConfig
from flows.identity.config_file import IdentityFile, load_identity_file
from flows.identity.profile import ENTITIES, Profile, build_profile
from flows.identity.resolver import Decision, Resolver, golden_id_for
from flows.identity.scoring import Model
from flows.identity.store_index import (
    BatchIndex,
    Pair,
    Writes,
    golden_body,
    golden_envelope,
    golden_state,
    golden_values,
    write_batch,
)
from flows.identity.survivorship import MemberRecord, Survived, SurvivorshipConfig, survive
from flows.identity.training import _apply_overrides
from hub.core.errors import TransientError
from hub.core.processor import FlowContext, FlowSpec, Item
from hub.store.db import is_store_contention
from hub.store.identity_models import (
    ACTIVE,
    OPEN,
)

NAME = "identity"

# Called in the batch's transaction, before its writes, with the entity and each change of
# the batch whose record a cross-reference holds, with that key (read by the batch's
# prefetch). The hub sets it to the sync flow's re-freeze of edited duplicates (decision 65).
HeldChanges = Callable[[FlowContext, str, list[tuple[Envelope, str]]], None]


def default_model(entity: str, config: IdentityConfig | None = None) -> Model:
    """The model streaming uses without a fitted one: defaults plus configured overrides."""
    config = config or IdentityConfig()
    model = Model.default(entity)
    model.notes = ["default parameters (streaming, no model file)"]
    _apply_overrides(model, config)
    return model


def load_models(
    config: IdentityConfig | None = None, model_dir: Path | None = None
) -> dict[str, Model]:
    """One model per entity: ``model_dir/<entity>.json`` when present, else the defaults."""
    if model_dir is not None and not model_dir.is_dir():
        raise ValueError(f"identity model folder {model_dir} does not exist")
    out: dict[str, Model] = {}
    for entity in ENTITIES:
        path = model_dir / f"{entity}.json" if model_dir is not None else None
        if path is not None and path.is_file():
            try:
                model = Model.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path} is not a model saved by dedup batch: {exc!r}") from exc
            if model.entity != entity:
                raise ValueError(f"{path} holds a {model.entity} model, not {entity}")
            out[entity] = model
        else:
            out[entity] = default_model(entity, config)
    return out


@dataclass(slots=True)
class _Row:
    item: Item
    pair: Pair
    payload: dict[str, Any]
    deleted: bool
    profile: Profile | None
    keys: frozenset[str]


@dataclass(slots=True)
class _Step:
    row: _Row
    decision: Decision | None  # None for a delete
    golden_id: str | None  # None for a delete of a record never resolved


def merge_evidence(pair: tuple[str, str], cause: Envelope, decision: Decision) -> dict[str, Any]:
    """What a golden merge event says about the matcher's decision: the record that joined,
    the message that carried it, the match probability and each field's comparison."""
    explained = decision.to_dict()
    return {
        "decided_by": "matcher",
        "action": "merge",
        "member": {"source_system": pair[0], "source_id": pair[1]},
        "message_id": str(cause.message_id),
        "score": explained["score"],
        "match_weight": explained.get("match_weight"),
        "flags": explained.get("flags", []),
        "fields": explained["evidence"],
    }


def _member_record(row: _Row) -> MemberRecord:
    env = row.item.env
    return MemberRecord(
        row.pair[0],
        row.pair[1],
        row.payload,
        env.source_ts or env.occurred_at,
        str(env.message_id),
        row.deleted,
    )


class IdentityFlow:
    """The handler, holding its configuration (the admin API reads it from here too)."""

    def __init__(
        self,
        config: IdentityConfig | None = None,
        models: Mapping[str, Model] | None = None,
        survivorship: SurvivorshipConfig | None = None,
    ) -> None:
        self.config = config or IdentityConfig()
        self.models = dict(models) if models is not None else load_models(self.config)
        for entity in ENTITIES:
            self.models.setdefault(entity, default_model(entity, self.config))
        self.survivorship = survivorship or SurvivorshipConfig()
        self.on_held: HeldChanges | None = None

    async def handle(self, ctx: FlowContext, items: list[Item]) -> None:
        groups: dict[str, list[Item]] = defaultdict(list)
        for item in items:
            if item.env.entity.value in ENTITIES:
                groups[item.env.entity.value].append(item)
        try:
            for entity, group in groups.items():
                await self._handle(ctx, entity, group)
        except Exception as exc:
            if is_store_contention(exc):
                # a concurrent writer (another worker, an operator): redo the whole batch, do
                # not let the core isolate and dead-letter a message that did nothing wrong
                raise TransientError(f"identity store contention: {exc}") from exc
            raise

    def _rows(self, entity: str, items: list[Item]) -> list[_Row]:
        rows: list[_Row] = []
        for item in items:
            env = item.env
            payload: dict[str, Any] = (
                item.body.model_dump(mode="json") if item.body is not None else dict(env.body)
            )
            deleted = env.op is Op.delete
            profile = None
            keys: frozenset[str] = frozenset()
            if not deleted:
                profile = build_profile(
                    entity, payload, self.config.default_country, env.source_system
                )
                if profile.usable():
                    keys = frozenset(blocking_keys(profile))
            rows.append(
                _Row(item, (env.source_system, env.source_id), payload, deleted, profile, keys)
            )
        return rows

    async def _handle(self, ctx: FlowContext, entity: str, items: list[Item]) -> None:
        s = ctx.session
        now = datetime.now(UTC)
        rows = self._rows(entity, items)
        index = await BatchIndex.load(
            s,
            entity,
            self.config.block_cap,
            [r.pair for r in rows],
            [k for r in rows for k in r.keys],
            [golden_id_for(entity, *r.pair) for r in rows],
        )
        resolver = Resolver(self.models[entity], self.config, index, index, explain=True)
        steps: list[_Step] = []
        for r in rows:
            if r.deleted or r.profile is None:
                steps.append(_Step(r, None, index.golden_of(*r.pair)))
                continue
            decision = resolver.resolve_profile(r.pair[0], r.pair[1], r.profile, r.keys)
            steps.append(_Step(r, decision, decision.golden_id))

        touched = list(dict.fromkeys(st.golden_id for st in steps if st.golden_id is not None))
        existing = [g for g in touched if g in index.rows]
        stored, members, sources = await golden_state(s, entity, existing)
        sources.update(index.sources)
        # pairs without a source_records row (changes fed to this flow directly, without the
        # records flow): each message's own payload stands for its record from its step on
        unstored = {r.pair for r in rows} - set(sources)

        # replay the batch on the golden records, one event per message that changed one
        last: dict[str, dict[str, Any]] = {}
        for known in existing:
            rec, win = stored.get(known, ({}, {}))
            if index.rows[known].status == ACTIVE:
                last[known] = golden_body(known, Survived(rec, win), members.get(known, []))
        bumps: Counter[str] = Counter()
        final: dict[str, tuple[Survived, list[Pair]]] = {}
        topic = topics.golden(entity)
        for st in steps:
            gid = st.golden_id
            if gid is None:
                continue
            if st.row.pair in unstored:
                sources[st.row.pair] = _member_record(st.row)
            group = members.setdefault(gid, [])
            if st.row.pair not in group:
                group.append(st.row.pair)
            survived = survive(
                entity, [sources[p] for p in group if p in sources], self.survivorship
            )
            final[gid] = (survived, list(group))
            body = golden_body(gid, survived, group)
            if body == last.get(gid):
                continue
            last[gid] = body
            bumps[gid] += 1
            base = index.rows[gid].version if gid in index.rows else 0
            d = st.decision
            joined = d is not None and d.action == "merge" and "known_source" not in d.flags
            if joined and d is not None:
                # issue 4: the merge on the topic carries the matcher's evidence for it
                body = {**body, "evidence": merge_evidence(st.row.pair, st.row.item.env, d)}
            env = golden_envelope(
                entity,
                gid,
                base + bumps[gid],
                Op.merge if joined else Op.upsert,
                body,
                now,
                cause=st.row.item.env,
            )
            ctx.emit(topic, env, key=gid)

        if self.on_held is not None:
            held = [(r.item.env, index.held_by[r.pair]) for r in rows if r.pair in index.held_by]
            if held:
                # before _write: on PostgreSQL it takes the outbox rows emitted so far
                self.on_held(ctx, entity, held)
        await self._write(ctx, entity, index, steps, final, sources, bumps, now)

    async def _write(
        self,
        ctx: FlowContext,
        entity: str,
        index: BatchIndex,
        steps: list[_Step],
        final: dict[str, tuple[Survived, list[Pair]]],
        sources: dict[Pair, MemberRecord],
        bumps: Counter[str],
        now: datetime,
    ) -> None:
        w = Writes(entity)
        # rows in golden id order: concurrent writers lock them in one order (no deadlock)
        for gid in sorted(final):
            survived, group = final[gid]
            profile = index.get(gid) or Profile(entity)
            values = golden_values(gid, profile, survived, group, sources)
            state = index.rows.get(gid)
            if state is None:
                w.golden_inserts.append(
                    {
                        "golden_id": gid,
                        "entity": entity,
                        **values,
                        "version": max(bumps[gid], 1),
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                continue
            if gid not in index.dirty and bumps[gid] == 0 and state.status == ACTIVE:
                continue  # nothing about it changed
            values.update(version=state.version + max(bumps[gid], 1), updated_at=now)
            w.golden_updates.append((gid, state.version, values))
        w.postings = index.posting_rows()
        w.count_deltas = index.count_deltas()
        linked: set[Pair] = set()
        for st in steps:
            d = st.decision
            if d is None:
                continue
            env = st.row.item.env
            pair = st.row.pair
            evidence = d.to_dict()
            if pair in index.links and pair not in index.known and pair not in linked:
                # the first message of a record links it; later ones in the batch are updates
                linked.add(pair)
                w.members.append(
                    {
                        "entity": entity,
                        "source_system": pair[0],
                        "source_id": pair[1],
                        "golden_id": d.golden_id,
                        "action": d.action,
                        "score": d.score,
                        "evidence": evidence,
                        "message_id": str(env.message_id),
                        "linked_at": now,
                    }
                )
            if d.action == "review" and d.candidate_id is not None:
                w.reviews.append(
                    {
                        "entity": entity,
                        "source_system": pair[0],
                        "source_id": pair[1],
                        "golden_id": d.golden_id,
                        "candidate_id": d.candidate_id,
                        "score": d.score,
                        "evidence": evidence,
                        "message_id": str(env.message_id),
                        "status": OPEN,
                        "created_at": now,
                    }
                )
            known = "known_source" in d.flags
            w.events.append(
                {
                    "entity": entity,
                    "kind": "upsert" if known or d.action == "new" else d.action,
                    "golden_id": d.golden_id,
                    "other_golden_id": d.candidate_id if d.action == "review" else None,
                    "source_system": pair[0],
                    "source_id": pair[1],
                    "evidence": evidence,
                    "message_id": str(env.message_id),
                    "actor": None,
                    "at": now,
                }
            )
        w.relinks = [
            (system, sid, gid, now)
            for (system, sid), gid in sorted(index.links.items())
            if (system, sid) in index.known
        ]
        if ctx.session.get_bind().dialect.name == "postgresql":
            # the golden events emitted above go to the outbox in the same statement
            w.outbox = ctx.take_outbox()
        await write_batch(ctx.session, w)


def spec(
    config: IdentityConfig | None = None,
    *,
    models: Mapping[str, Model] | None = None,
    model_dir: Path | None = None,
    survivorship: SurvivorshipConfig | None = None,
) -> FlowSpec:
    """The identity flow. Models: `models`, else `model_dir/<entity>.json`, else defaults."""
    config = config or IdentityConfig()
    if models is None:
        models = load_models(config, model_dir)
    flow = IdentityFlow(config, models, survivorship)
    return FlowSpec(
        name=NAME,
        topics=[topics.changes(Entity.customer), topics.changes(Entity.material)],
        handle=flow.handle,
    )


def spec_from_settings(config_file: Path | None, model_dir: Path | None) -> FlowSpec:
    """The flow as ``EAI_IDENTITY_CONFIG`` / ``EAI_IDENTITY_MODEL_DIR`` configure it.

    Everything is read and validated here, when the hub builds its flows: a bad file stops
    the start instead of the first batch.
    """
    settings = load_identity_file(config_file) if config_file is not None else IdentityFile()
    return spec(settings.matching, model_dir=model_dir, survivorship=settings.survivorship)


def flow_of(spec_: FlowSpec) -> IdentityFlow | None:
    """The IdentityFlow behind a spec built by `spec()`, to share its configuration."""
    owner = getattr(spec_.handle, "__self__", None)
    return owner if isinstance(owner, IdentityFlow) else None
