"""Survivorship: which member of a golden record supplies each field. Pure.

Input: the latest accepted version of every member source record (the ``source_records`` row:
payload, source timestamp, last message id). Output: the golden record, and per field the
winner: the source record and the message that brought the value, and the rule that chose it.

Rules, per field and entity, in configuration (``SurvivorshipConfig``):

- ``priority``: the first source system in ``sources`` that has a value; unlisted systems
  after the listed ones, then the most recent.
- ``recent``: the most recent value (source timestamp); ``sources`` breaks ties.
- ``complete``: the most complete value (longest text, most non-empty parts); ``sources``, then
  recency, break ties.
- ``union``: lists are united across members, equal items once (phones compared by number,
  e-mails case-folded, identifiers one per scheme with a check-valid value first, addresses by
  normalized city and street, contacts by normalized name); mappings are united key by key.
  Items of higher-ranked members (``sources``, then recency) come first.

``only: true`` restricts a field to the listed systems (status only from CRM/OA); ``follows``
takes a field from the member that won another one (``frozen`` goes with ``status``,
``currency`` with ``credit_limit``), so a pair of fields that only make sense together is
never assembled from two sources. Every tie ends on (source_system, source_id), so the result
does not depend on the order members are given in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.customer import Customer
from contracts.material import Material
from flows.identity.config import ConfigIssue, ConfigIssues
from flows.identity.normalize import (
    check_identifier,
    fold,
    normalize_address,
    normalize_email,
    normalize_person_name,
    normalize_phone,
)

RuleName = Literal["priority", "recent", "complete", "union"]


class FieldRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: RuleName = "recent"
    sources: tuple[str, ...] = ()  # ranking of source systems, best first
    only: bool = False  # only the listed sources may supply the field
    follows: str | None = None  # take the value from the member that won this other field


P: RuleName = "priority"
R: RuleName = "recent"
C: RuleName = "complete"
U: RuleName = "union"
ALL = ("erp", "crm", "drp", "oa", "pdm")


def _rule(rule: RuleName, *sources: str, only: bool = False) -> FieldRule:
    return FieldRule(rule=rule, sources=sources, only=only)


# Defaults for the five systems of DOMAIN.md. ERP executes orders and owns credit and the
# registered identity; CRM owns the relationship (status, owner, channel, industry); OA runs the
# status-upgrade approvals, so its status is as good as CRM's; DRP knows distributors' contacts.
# PDM is the design authority of parts, ERP of how they are bought and stocked.
DEFAULT_CUSTOMER: dict[str, FieldRule] = {
    "kind": _rule(P, "erp", "crm", "drp", "oa"),
    "name": _rule(C, "erp", "crm", "drp", "oa"),
    "identifiers": _rule(U, "erp", "crm", "drp", "oa"),
    "type": _rule(P, "crm", "erp", "drp", "oa"),
    "status": _rule(P, "crm", "oa", only=True),
    "frozen": FieldRule(follows="status"),
    "addresses": _rule(U, "erp", "crm", "drp", "oa"),
    "phones": _rule(U, "crm", "erp", "drp", "oa"),
    "emails": _rule(U, "crm", "erp", "drp", "oa"),
    "contacts": _rule(U, "crm", "drp", "erp", "oa"),
    "industry": _rule(C, "crm", "erp"),
    "size": _rule(R, "crm", "erp"),
    "acquisition_channel": _rule(P, "crm", "oa"),
    "owner": _rule(P, "crm", "drp"),
    "credit_limit": _rule(P, "erp", only=True),
    "currency": FieldRule(follows="credit_limit"),
    "birth_date": _rule(P, "erp", "crm", "drp", "oa"),
    "attributes": _rule(U, "crm", "erp", "drp", "oa"),
}
DEFAULT_MATERIAL: dict[str, FieldRule] = {
    "code": _rule(P, "erp", "pdm"),
    "name": _rule(P, "pdm", "erp"),
    "specification": _rule(P, "pdm", "erp"),
    "uom": _rule(P, "erp", "pdm"),
    "category": _rule(P, "erp", "pdm"),
    "revision": _rule(R, "pdm"),
    "attributes": _rule(U, "pdm", "erp"),
}
DEFAULTS: dict[str, dict[str, FieldRule]] = {
    "customer": DEFAULT_CUSTOMER,
    "material": DEFAULT_MATERIAL,
}
# The fields a rule may name: those of the canonical body (a golden record is one), plus any
# default. A name outside them matches no record, so a misspelling would leave the real field
# on its default rule without a word: it is refused instead.
FIELDS: dict[str, tuple[str, ...]] = {
    entity: tuple(dict.fromkeys([*model.model_fields, *DEFAULTS[entity]]))
    for entity, model in (("customer", Customer), ("material", Material))
}


class SurvivorshipConfig(BaseModel):
    """Per entity, per field rules. Given fields replace the default rule of that field only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer: dict[str, FieldRule] = Field(default_factory=lambda: dict(DEFAULT_CUSTOMER))
    material: dict[str, FieldRule] = Field(default_factory=lambda: dict(DEFAULT_MATERIAL))
    # fields no rule names (attributes a system adds, future body fields)
    default: FieldRule = FieldRule(rule="recent")

    @model_validator(mode="before")
    @classmethod
    def _over_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = dict(data)
            issues: list[ConfigIssue] = []
            for entity, defaults in DEFAULTS.items():
                given = data.get(entity)
                if isinstance(given, Mapping):
                    valid = FIELDS[entity]
                    issues.extend(
                        ConfigIssue(
                            (entity, name),
                            rule,
                            f"unknown {entity} field {name!r}; valid fields: {', '.join(valid)}",
                        )
                        for name, rule in given.items()
                        if name not in valid
                    )
                    data[entity] = {**defaults, **given}
            if issues:
                raise ConfigIssues(issues)
        return data

    @model_validator(mode="after")
    def _follows_known(self) -> SurvivorshipConfig:
        issues: list[ConfigIssue] = []
        for entity in DEFAULTS:
            rules = self.rules(entity)
            for name, rule in rules.items():
                leader = rule.follows
                if leader is None:
                    continue
                if leader not in rules or rules[leader].follows is not None:
                    own = [f for f, r in rules.items() if r.follows is None]
                    text = f"must name a field with a rule of its own; valid: {', '.join(own)}"
                    issues.append(ConfigIssue((entity, name, "follows"), leader, text))
        if issues:
            raise ConfigIssues(issues)
        return self

    def rules(self, entity: str) -> dict[str, FieldRule]:
        if entity == "customer":
            return self.customer
        if entity == "material":
            return self.material
        raise ValueError(f"unknown entity {entity!r}")


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """The latest accepted version of one member source record."""

    source_system: str
    source_id: str
    payload: Mapping[str, Any]
    source_ts: datetime | None = None
    message_id: str | None = None
    deleted: bool = False  # its source deleted it: it supplies nothing


@dataclass(frozen=True, slots=True)
class Survived:
    record: dict[str, Any]
    # {field: {source_system, source_id, message_id, rule[, sources]}}
    winners: dict[str, dict[str, Any]]
    notes: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- values


def present(value: Any) -> bool:
    """A value a source actually supplies: not None, not blank, not an empty container."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, Mapping | list | tuple):
        return bool(value)
    return True


def _leaves(value: Any) -> int:
    if isinstance(value, str):
        return 1 if value.strip() else 0
    if isinstance(value, Mapping):
        return sum(_leaves(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_leaves(v) for v in value)
    return 0 if value is None else 1


def completeness(value: Any) -> int:
    """Length of a text; number of non-empty parts of anything else."""
    if isinstance(value, str):
        return len(value.strip())
    return _leaves(value)


def _canonical_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _phone_key(item: Any) -> str:
    if isinstance(item, str):
        phone = normalize_phone(item)
        if phone is not None:
            return phone.canonical + ("x" + phone.extension if phone.extension else "")
        return fold(item)
    return _canonical_json(item)


def _email_key(item: Any) -> str:
    if isinstance(item, str):
        return normalize_email(item) or fold(item)
    return _canonical_json(item)


def _identifier_key(item: Any) -> str:
    if isinstance(item, Mapping):
        return str(item.get("scheme", ""))
    return _canonical_json(item)


def _identifier_quality(item: Any) -> int:
    """A value that passes its check character beats one that does not."""
    if isinstance(item, Mapping):
        scheme, value = item.get("scheme"), item.get("value")
        if isinstance(scheme, str) and isinstance(value, str):
            status = check_identifier(scheme, value).status
            return {"valid": 2, "unverified": 1}.get(status, 0)
    return 0


def _address_key(item: Any) -> str:
    if isinstance(item, Mapping):
        address = normalize_address(item)
        if address.city or address.street:
            return f"{address.city}|{address.district}|{address.street}"
    return _canonical_json(item)


def _contact_key(item: Any) -> str:
    if isinstance(item, Mapping) and isinstance(item.get("name"), str):
        return normalize_person_name(item["name"]).full or fold(item["name"])
    return _canonical_json(item)


ItemKey = Callable[[Any], str]
ItemQuality = Callable[[Any], int]
_ITEM_KEYS: dict[str, ItemKey] = {
    "phones": _phone_key,
    "emails": _email_key,
    "identifiers": _identifier_key,
    "addresses": _address_key,
    "contacts": _contact_key,
}
_ITEM_QUALITY: dict[str, ItemQuality] = {"identifiers": _identifier_quality}


# --------------------------------------------------------------------------- ranking


def _ts(member: MemberRecord) -> float:
    return member.source_ts.timestamp() if member.source_ts is not None else -math.inf


def _prio(rule: FieldRule, member: MemberRecord) -> int:
    try:
        return rule.sources.index(member.source_system)
    except ValueError:
        return len(rule.sources)


def _rank(rule: FieldRule, member: MemberRecord, value: Any) -> tuple[Any, ...]:
    tie = (member.source_system, member.source_id)
    if rule.rule == "recent":
        return (-_ts(member), _prio(rule, member), *tie)
    if rule.rule == "complete":
        return (-completeness(value), _prio(rule, member), -_ts(member), *tie)
    return (_prio(rule, member), -_ts(member), *tie)  # priority, and the order of a union


def _ref(member: MemberRecord) -> dict[str, Any]:
    return {
        "source_system": member.source_system,
        "source_id": member.source_id,
        "message_id": member.message_id,
    }


def _eligible(rule: FieldRule, members: Sequence[MemberRecord], name: str) -> list[MemberRecord]:
    out = [m for m in members if present(m.payload.get(name))]
    if rule.only:
        out = [m for m in out if m.source_system in rule.sources]
    return out


def _single(
    name: str, rule: FieldRule, members: Sequence[MemberRecord]
) -> tuple[Any, MemberRecord] | None:
    eligible = _eligible(rule, members, name)
    if not eligible:
        return None
    best = min(eligible, key=lambda m: _rank(rule, m, m.payload.get(name)))
    return best.payload[name], best


def _union(
    name: str, rule: FieldRule, members: Sequence[MemberRecord]
) -> tuple[Any, list[MemberRecord]] | None:
    eligible = sorted(_eligible(rule, members, name), key=lambda m: _rank(rule, m, None))
    if not eligible:
        return None
    first = eligible[0].payload[name]
    if isinstance(first, Mapping):
        merged: dict[str, Any] = {}
        owners: dict[str, MemberRecord] = {}
        for member in eligible:
            value = member.payload[name]
            if not isinstance(value, Mapping):
                continue
            for k in sorted(value):
                if k not in merged and present(value[k]):
                    merged[k] = value[k]
                    owners[k] = member
        return merged, _distinct(owners.values(), eligible)
    key_of = _ITEM_KEYS.get(name, _canonical_json)
    quality_of = _ITEM_QUALITY.get(name)
    chosen: dict[str, tuple[tuple[int, int, int], Any, MemberRecord]] = {}
    for rank, member in enumerate(eligible):
        value = member.payload[name]
        items = value if isinstance(value, list | tuple) else [value]
        for pos, item in enumerate(items):
            if not present(item):
                continue
            key = key_of(item)
            quality = quality_of(item) if quality_of is not None else 0
            order = (-quality, rank, pos)
            if key not in chosen or order < chosen[key][0]:
                chosen[key] = (order, item, member)
    picked = sorted(chosen.values(), key=lambda c: (c[0][1], c[0][2]))
    return [item for _, item, _ in picked], _distinct((m for _, _, m in picked), eligible)


def _distinct(contributors: Any, ranked: Sequence[MemberRecord]) -> list[MemberRecord]:
    wanted = {(m.source_system, m.source_id) for m in contributors}
    return [m for m in ranked if (m.source_system, m.source_id) in wanted]


# --------------------------------------------------------------------------- survivorship


def survive(
    entity: str,
    members: Sequence[MemberRecord],
    config: SurvivorshipConfig | None = None,
) -> Survived:
    """The golden record of `members` and each field's winner."""
    config = config or SurvivorshipConfig()
    rules = config.rules(entity)
    live = [m for m in members if not m.deleted]
    names = list(rules)
    extra = sorted({k for m in live for k in m.payload} - set(rules))
    record: dict[str, Any] = {}
    winners: dict[str, dict[str, Any]] = {}
    won_by: dict[str, MemberRecord] = {}
    for name in [*names, *extra]:
        rule = rules.get(name, config.default)
        if rule.follows is not None:
            continue
        if rule.rule == "union":
            united = _union(name, rule, live)
            if united is None:
                continue
            value, contributors = united
            if not present(value):
                continue
            record[name] = value
            top = contributors[0]
            won_by[name] = top
            winners[name] = {
                **_ref(top),
                "rule": "union",
                "sources": [_ref(m) for m in contributors],
            }
            continue
        single = _single(name, rule, live)
        if single is None:
            continue
        value, member = single
        record[name] = value
        won_by[name] = member
        winners[name] = {**_ref(member), "rule": rule.rule}
    for name in names:
        leader = rules[name].follows
        if leader is None or leader not in won_by:
            continue
        member = won_by[leader]
        if name in member.payload and member.payload[name] is not None:
            record[name] = member.payload[name]
            winners[name] = {**_ref(member), "rule": f"follows {leader}"}
    notes = _consistent(entity, record, winners)
    ordered = {k: record[k] for k in [*names, *extra] if k in record}
    return Survived(ordered, {k: winners[k] for k in ordered}, notes)


_FREEZABLE = ("potential", "successful", "pilot", "reference")


def _consistent(
    entity: str, record: dict[str, Any], winners: dict[str, dict[str, Any]]
) -> tuple[str, ...]:
    """Drop combinations the canonical model forbids, which fields from two sources can make."""
    notes: list[str] = []
    if entity != "customer":
        return ()
    if "birth_date" in record and record.get("kind") != "person":
        notes.append(
            f"birth_date from {winners['birth_date']['source_system']} dropped: "
            f"the golden record is a {record.get('kind') or 'record of unknown kind'}"
        )
        del record["birth_date"]
        del winners["birth_date"]
    if record.get("frozen") is True and record.get("status", "potential") not in _FREEZABLE:
        notes.append(f"frozen dropped: status {record.get('status')} cannot be frozen")
        record["frozen"] = False
        winners["frozen"] = {**winners["frozen"], "rule": "consistency"}
    return tuple(notes)
