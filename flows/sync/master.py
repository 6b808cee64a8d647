"""What a golden-record event means for the subscribed systems (pure, no I/O).

A golden event carries the surviving record plus ``golden_id``, ``members``, ``winners`` and,
for merges and splits, ``merged_from`` / ``merged_into`` / ``split_from`` and ``evidence``.
The subscribers get the canonical record only, after two rules:

- Field ownership: a field listed in the configuration may be changed only by its owners. A
  change of it that came from another system is recorded as rejected and the subscribers keep
  the value they were last sent. Ownership judges *changes*: the first fan-out of a record
  sends every field, since the targets have nothing to keep.
- Deletes and merges never destroy: a golden record whose members were all deleted, or which
  was merged into another, is sent once more as frozen and marked ``quarantine`` (reason, and
  the survivor for a merge), so each target keeps the record, blocked, where a clerk can see
  why. ``deletes: ignore`` sends nothing instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flows.sync.config import MasterSync

GOLDEN_EXTRAS = frozenset(
    {"golden_id", "members", "winners", "merged_from", "merged_into", "split_from", "evidence"}
)
HUB = "hub"


@dataclass(frozen=True)
class Plan:
    body: dict[str, Any] | None  # what the subscribers get; None: nothing to send
    quarantined: bool = False
    rejected: dict[str, str] = field(default_factory=dict)  # field -> why it was not taken
    reason: str = ""


def origin_of(trace: tuple[str, ...] | list[str], source_system: str) -> str:
    """The system a golden change came from: the last system on its trace (the identity flow
    appends the cause's origin), ``hub`` for a steward's merge or split."""
    for system in reversed(tuple(trace)):
        if system != HUB:
            return system
    return source_system


def record_of(event_body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event_body.items() if k not in GOLDEN_EXTRAS}


def quarantine(entity: str, last: Mapping[str, Any], reason: str) -> dict[str, Any]:
    body = dict(last)
    attributes = dict(body.get("attributes") or {})
    attributes["quarantine"] = reason
    body["attributes"] = attributes
    if entity == "customer" and body.get("status", "potential") != "invalid":
        body["frozen"] = True  # an invalid customer cannot be frozen; the mark says enough
    return body


SecondCopyBody = Callable[[str, dict[str, Any], str, str], dict[str, Any] | None]


def second_copy_policy(conf: Mapping[str, MasterSync]) -> SecondCopyBody:
    """What a system gets for a second copy the hub's create put there while the system's own
    copy of that golden record was being linked (the deliverer keeps the first linked): it is
    quarantined as a duplicate of the kept one, like a copy a clerk typed twice, unless the
    configuration ignores deletes for that entity."""

    def body(entity: str, sent: dict[str, Any], kept: str, key: str) -> dict[str, Any] | None:
        c = conf.get(entity)
        if c is None or c.deletes == "ignore":
            return None
        return quarantine(entity, sent, f"duplicate of {kept} (golden record {key})")

    return body


def plan(
    entity: str,
    event_body: Mapping[str, Any],
    origin: str,
    last: Mapping[str, Any] | None,
    last_quarantined: bool,
    conf: MasterSync,
) -> Plan:
    """The body to fan out for one golden event, given what was last sent (``last``)."""
    merged_into = event_body.get("merged_into")
    record = record_of(event_body)
    if merged_into or not record:
        if last is None or last_quarantined or conf.deletes == "ignore":
            return Plan(None, quarantined=last_quarantined)
        reason = f"merged into {merged_into}" if merged_into else f"deleted in {origin}"
        return Plan(quarantine(entity, last, reason), quarantined=True, reason=reason)
    if last is None:
        return Plan(record)
    body = dict(record)
    rejected: dict[str, str] = {}
    for name in sorted(set(record) | set(last)):
        new, old = record.get(name), last.get(name)
        if new == old or name in ("attributes",):
            continue
        if not conf.may_change(name, origin):
            owners = ", ".join(conf.ownership.get(name, ()))
            rejected[name] = (
                f"field {name!r}: change from {old!r} to {new!r} made in {origin} rejected: "
                f"only {owners} may change it"
            )
            if name in last:
                body[name] = last[name]
            else:
                body.pop(name, None)
    if body == dict(last) and not last_quarantined:
        return Plan(None, rejected=rejected)
    return Plan(body, rejected=rejected)
