"""A mixed, seeded message stream for the chaos tests and the state it must leave behind.

The stream holds customers from two systems and materials from a third, each record sent in
one to three versions, and the hard cases of issue 8: versions arriving out of order (a newer
version overtakes an older one), replayed old versions under new message ids (stale, content
changed), replays of the current version (unchanged) and exact redeliveries of a message
(same message id: the ledger drops them). The expected outcome of every message is worked out
here from the input alone, with the rules of docs/architecture.md (a higher source version
wins, a lower or a same-version-other-content one is stale), never by calling the hub's code.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts import topics
from contracts.envelope import Entity, Envelope

WHEN = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


@dataclass
class Stream:
    """What to produce, in order, and what the records flow must make of it."""

    sends: list[tuple[str, Envelope]] = field(default_factory=list)  # (topic, envelope)
    # per distinct message id: applied / stale / unchanged
    outcome: dict[str, str] = field(default_factory=dict)
    # per (entity, system, source_id): (stored version, stored payload, revision)
    final: dict[tuple[str, str, str], tuple[int, dict[str, Any], int]] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def applied(self) -> set[str]:
        return {m for m, o in self.outcome.items() if o == "applied"}


def _body(entity: Entity, sid: str, version: int, tag: str = "") -> dict[str, Any]:
    if entity is Entity.customer:
        return {"kind": "organization", "name": f"测试客户{sid} v{version}{tag}"}
    return {"code": sid, "name": f"物料{sid} v{version}{tag}", "uom": "PCS"}


def _env(entity: Entity, system: str, sid: str, version: int, tag: str = "") -> Envelope:
    return Envelope(
        message_id=uuid.uuid4(),
        entity=entity,
        source_system=system,
        source_id=sid,
        source_version=version,
        source_ts=WHEN + timedelta(minutes=version),
        body=_body(entity, sid, version, tag),
    )


def build(total: int, seed: int = 8) -> Stream:
    """``total`` messages: about 70 % first sends of versions, the rest hard cases."""
    rng = random.Random(seed)
    per_key: dict[tuple[Entity, str, str], list[tuple[str, Envelope]]] = {}
    count = 0
    i = 0
    firsts = int(total * 0.7)
    while count < firsts:
        entity, system = rng.choice(
            [(Entity.customer, "crm"), (Entity.customer, "erp"), (Entity.material, "pdm")]
        )
        sid = f"{'C' if entity is Entity.customer else 'M'}{i:06d}"
        i += 1
        versions = [1, 2, 3][: rng.choice([1, 2, 2, 3])]
        seq = [("version", _env(entity, system, sid, v)) for v in versions]
        if len(seq) >= 2 and rng.random() < 0.3:  # the newest overtakes the one before it
            seq[-1], seq[-2] = seq[-2], seq[-1]
            seq[-1] = ("overtaken", seq[-1][1])
        per_key[(entity, system, sid)] = seq
        count += len(seq)
    keys = list(per_key)
    while count < total:
        key = rng.choice(keys)
        seq = per_key[key]
        entity, system, sid = key
        top = max(e.source_version or 0 for _, e in seq)
        r = rng.random()
        if r < 0.4 and top > 1:  # an old version replayed later with other content
            seq.append(("replayed old", _env(entity, system, sid, rng.randrange(1, top), " r")))
        elif r < 0.7:  # the current version sent again under a new message id
            newest = next(e for _, e in seq if e.source_version == top)
            seq.append(("replayed same", newest.model_copy(update={"message_id": uuid.uuid4()})))
        else:  # a redelivery: the very same message again
            seq.append(("redelivered", rng.choice(seq)[1]))
        count += 1
    stream = Stream()
    # Interleave the keys at random while each key keeps its own order (as Kafka does for
    # one key: one partition, one producer).
    tokens = [k for k, seq in per_key.items() for _ in seq]
    rng.shuffle(tokens)
    cursor: Counter[tuple[Entity, str, str]] = Counter()
    for k in tokens:
        kind, env = per_key[k][cursor[k]]
        cursor[k] += 1
        stream.sends.append((topics.canonical(env.entity), env))
        stream.kinds[kind] += 1
    _expect(stream)
    return stream


def _expect(stream: Stream) -> None:
    held: dict[tuple[str, str, str], tuple[int, dict[str, Any], int]] = {}
    for _, env in stream.sends:
        mid = str(env.message_id)
        if mid in stream.outcome:
            continue  # a redelivery: no second effect
        key = (env.entity.value, env.source_system, env.source_id)
        version = env.source_version or 0
        cur = held.get(key)
        if cur is None or version > cur[0]:
            held[key] = (version, dict(env.body), 1 if cur is None else cur[2] + 1)
            stream.outcome[mid] = "applied"
        elif version == cur[0] and dict(env.body) == cur[1]:
            stream.outcome[mid] = "unchanged"
        else:
            stream.outcome[mid] = "stale"
    stream.final = held
