"""Normalized matching profile of a record, and of a cluster (the union of its members).

A profile holds only normalized values, so comparing a record with a cluster never re-runs
normalization, and a cluster profile can be persisted as JSON next to the golden record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from operator import attrgetter
from typing import Any

from flows.identity.normalize import (
    STRONG_SCHEMES,
    check_identifier,
    fold,
    has_cjk,
    name_grades,
    normalize_address,
    normalize_code,
    normalize_date,
    normalize_email,
    normalize_name_text,
    normalize_org_name,
    normalize_person_name,
    normalize_phone,
    normalize_spec,
    normalize_uom,
    resident_id_birth_date,
)
from flows.identity.parts import part_concepts

CUSTOMER, MATERIAL = "customer", "material"
# The system whose numbering a material's `attributes.drawing_no` is: the ERP keeps the PDM
# drawing number of a part in ZEINR (connectors/erp/mapping.py), the PDM its own part number.
DRAWING_SYSTEM = "pdm"
ENTITIES = (CUSTOMER, MATERIAL)
ORGANIZATION, PERSON = "organization", "person"

Pair = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Profile:
    entity: str
    kind: str | None = None  # organization | person, stated or inferred
    names: tuple[str, ...] = ()  # org core names or person names, normalized
    brands: tuple[str, ...] = ()  # org names without trailing industry words
    cities: tuple[str, ...] = ()  # from addresses and from place names in org names
    streets: tuple[str, ...] = ()
    # "<tag>:<last 8 digits>", tag m (mobile) / l (other) / c (a contact person's): the tail is
    # comparable across spellings of a number, the tag says what a disagreement would mean
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()  # "o:<address>" own, "c:<address>" a contact person's
    dobs: tuple[str, ...] = ()  # YYYYMMDD
    strong_ids: tuple[Pair, ...] = ()  # (scheme, value) validated by check character
    weak_ids: tuple[Pair, ...] = ()  # (scheme, value) without a check character
    codes: tuple[str, ...] = ()
    # materials: (source system, code) for each code, so that two numbers of one system's own
    # numbering can be told from another system's number for the same part (resolver vetoes)
    system_codes: tuple[Pair, ...] = ()
    specs: tuple[str, ...] = ()
    uoms: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # materials: grade and material numbers in the description (304 / 316, 1% / 5%, 12.9)
    grades: tuple[str, ...] = ()
    # per record only (not merged into clusters): why some input was not used
    issues: tuple[str, ...] = field(default=(), compare=False)

    def usable(self) -> bool:
        """Whether anything in the record can identify it; otherwise it is never merged."""
        return bool(
            self.names
            or self.strong_ids
            or self.weak_ids
            or self.phones
            or self.emails
            or self.streets
            or self.codes
            or self.specs
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _PAIR_FIELDS:
                value = [list(p) for p in value]
            elif isinstance(value, tuple):
                value = list(value)
            if value or f.name == "entity":
                out[f.name] = value
        return out

    def __reduce__(self) -> tuple[type[Profile], tuple[Any, ...]]:
        # pickled as its field values, rebuilt by the constructor: compiled (decision 63) the
        # frozen dataclass's own __setstate__ cannot assign its fields
        return Profile, profile_values(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name in _PAIR_FIELDS:
                value = tuple((str(s), str(v)) for s, v in value)
            elif f.name not in ("entity", "kind"):
                value = tuple(value)
            kwargs[f.name] = value
        return cls(**kwargs)


_PAIR_FIELDS = ("strong_ids", "weak_ids", "system_codes")

# every field in declaration order, `issues` included, so that `Profile(*values)` rebuilds it
_FIELD_VALUES = attrgetter(*(f.name for f in fields(Profile)))


def profile_values(profile: Profile) -> tuple[Any, ...]:
    """The profile's fields as a flat tuple: `Profile(*profile_values(p))` equals `p`, issues
    included. Strings, None and tuples only, so `marshal` can carry it (batch.py's workers)."""
    values: tuple[Any, ...] = _FIELD_VALUES(profile)
    return values


def _uniq(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _uniq_pairs(values: Iterable[Pair]) -> tuple[Pair, ...]:
    return tuple(dict.fromkeys(values))


def merge_profiles(cluster: Profile, member: Profile, limit: int = 12) -> Profile:
    """Union of two profiles, first-seen values first, at most `limit` values per field.

    Identifiers are never truncated: dropping one would let a conflicting record in.
    """
    # Built field by field instead of dataclasses.replace: a batch merges tens of thousands of
    # times, and the generic replace cost as much as the unions.
    return Profile(
        entity=cluster.entity,
        kind=cluster.kind or member.kind,
        names=_union(cluster.names, member.names, limit),
        brands=_union(cluster.brands, member.brands, limit),
        cities=_union(cluster.cities, member.cities, limit),
        streets=_union(cluster.streets, member.streets, limit),
        phones=_union(cluster.phones, member.phones, limit),
        emails=_union(cluster.emails, member.emails, limit),
        dobs=_union(cluster.dobs, member.dobs, limit),
        strong_ids=_uniq_pairs((*cluster.strong_ids, *member.strong_ids)),
        weak_ids=_uniq_pairs((*cluster.weak_ids, *member.weak_ids))[: limit * 2],
        codes=_union(cluster.codes, member.codes, limit),
        system_codes=_uniq_pairs((*cluster.system_codes, *member.system_codes))[: limit * 2],
        specs=_union(cluster.specs, member.specs, limit),
        uoms=_union(cluster.uoms, member.uoms, limit),
        categories=_union(cluster.categories, member.categories, limit),
        grades=_union(cluster.grades, member.grades, limit),
        issues=(),
    )


def _union(left: tuple[str, ...], right: tuple[str, ...], limit: int) -> tuple[str, ...]:
    """`_uniq((*left, *right))[:limit]`."""
    if not left and not right:
        return left  # the fields a customer's profile never has: most of a merge's fields
    seen = dict.fromkeys((*left, *right) if right else left)
    seen.pop("", None)
    return tuple(seen)[:limit]


def cluster_profile(members: Iterable[Profile], limit: int = 12) -> Profile:
    """Representative profile of a cluster rebuilt from its members, in member order.

    For unmerge/split: recompute each side from the profiles of the records it keeps.
    """
    out: Profile | None = None
    for member in members:
        out = member if out is None else merge_profiles(out, member, limit)
    if out is None:
        raise ValueError("a cluster needs at least one member")
    return replace(out, issues=())


# --------------------------------------------------------------------------- builders


def _strings(value: Any) -> list[str]:
    # exports sometimes carry phone numbers as JSON numbers
    if isinstance(value, str):
        return [value]
    if isinstance(value, int) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, list | tuple):
        return [v for item in value for v in _strings(item) if not isinstance(item, list | tuple)]
    return []


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, Mapping)]
    return []


def _identifiers(record: Mapping[str, Any]) -> tuple[list[Pair], list[Pair], list[str]]:
    strong: list[Pair] = []
    weak: list[Pair] = []
    issues: list[str] = []
    for ident in _dicts(record.get("identifiers")):
        scheme, value = ident.get("scheme"), ident.get("value")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(scheme, str) or not isinstance(value, str) or not value.strip():
            continue
        check = check_identifier(scheme, value)
        if check.status == "valid" and check.scheme in STRONG_SCHEMES:
            strong.append((check.scheme, check.value))
        elif check.status == "invalid":
            issues.append(
                f"{check.scheme} {value.strip()!r} is invalid ({check.reason}): "
                "kept as data, not used as an identifier"
            )
        else:
            weak.append((check.scheme, check.value))
    return strong, weak, issues


def _kind(record: Mapping[str, Any], strong: list[Pair], name: str) -> str | None:
    """Stated kind, else inferred from identifiers, birth date and legal-form words."""
    kind = record.get("kind")
    if isinstance(kind, str) and fold(kind) in (ORGANIZATION, PERSON):
        return fold(kind)
    if any(s == "uscc" for s, _ in strong):
        return ORGANIZATION
    if any(s == "national_id" for s, _ in strong) or record.get("birth_date"):
        return PERSON
    if not name.strip():
        return None
    if normalize_org_name(name).legal or len(fold(name)) > (4 if has_cjk(name) else 30):
        return ORGANIZATION
    return PERSON


def customer_profile(record: Mapping[str, Any], default_country: str = "86") -> Profile:
    """Profile of a canonical Customer body; any field may be missing."""
    issues: list[str] = []
    strong, weak, id_issues = _identifiers(record)
    issues.extend(id_issues)
    raw_name = record.get("name") if isinstance(record.get("name"), str) else ""
    name = str(raw_name or "")
    kind = _kind(record, strong, name)
    org = kind == ORGANIZATION

    names: list[str] = []
    brands: list[str] = []
    cities: list[str] = []
    if name.strip():
        if org:
            parsed = normalize_org_name(name)
            names.append(parsed.core)
            brands.append(parsed.brand)
            # a place in the name of a company is where it is registered
            if parsed.city:
                cities.append(parsed.city)
        else:
            names.append(normalize_person_name(name).full)
        if not names[-1]:
            issues.append(f"name {name!r} has no distinctive part after normalization")

    streets: list[str] = []
    for raw_address in _dicts(record.get("addresses")):
        address = normalize_address(raw_address)
        if address.city:
            cities.insert(0, address.city)
        if address.street:
            streets.append(address.street)

    phones: list[str] = []
    emails: list[str] = []
    # the record's own numbers and addresses first, then its contact persons' ("c:")
    sources: list[tuple[str, Mapping[str, Any]]] = [("", record)]
    sources += [("c", contact) for contact in _dicts(record.get("contacts"))]
    for owner, source in sources:
        for raw in _strings(source.get("phones")):
            phone = normalize_phone(raw, default_country)
            if phone is None:
                issues.append(f"phone {raw!r} is not a usable number")
            else:
                kind_tag = owner or ("m" if phone.mobile else "l")
                phones.append(f"{kind_tag}:{phone.tail}")
        for raw in _strings(source.get("emails")):
            email = normalize_email(raw)
            if email is None:
                issues.append(f"email {raw!r} is not a valid address")
            else:
                emails.append(f"{owner or 'o'}:{email}")

    dobs: list[str] = []
    raw_dob = record.get("birth_date")
    if isinstance(raw_dob, str) and raw_dob.strip():
        dob = normalize_date(raw_dob)
        if dob is None:
            issues.append(f"birth_date {raw_dob!r} is not a date")
        else:
            dobs.append(dob)
    for scheme, value in strong:
        # the resident id carries the birth date; use it when the record lacks one
        if scheme == "national_id" and not dobs:
            derived = resident_id_birth_date(value)
            if derived:
                dobs.append(derived)

    return Profile(
        entity=CUSTOMER,
        kind=kind,
        names=_uniq(names),
        brands=_uniq(brands),
        cities=_uniq(cities),
        streets=_uniq(streets),
        phones=_uniq(phones),
        emails=_uniq(emails),
        dobs=_uniq(dobs),
        strong_ids=_uniq_pairs(strong),
        weak_ids=_uniq_pairs(weak),
        issues=tuple(issues),
    )


def material_profile(record: Mapping[str, Any], source_system: str = "") -> Profile:
    """Profile of a canonical Material body; `source_system` is the system that sent it.

    The code is kept twice: in `codes` for comparison across systems, and with its system in
    `system_codes`, because a code's meaning depends on whose numbering it is (a system does
    not give one part two numbers; see `resolver.system_code_conflict`). A drawing number in
    `attributes.drawing_no` (the PDM's number, which the ERP keeps in ZEINR) is one more code,
    of the PDM's numbering whichever system sent the record.
    """

    def text(key: str) -> str:
        value = record.get(key)
        return value if isinstance(value, str) else ""

    code = normalize_code(text("code"))
    attributes = record.get("attributes")
    raw_drawing = attributes.get("drawing_no") if isinstance(attributes, Mapping) else None
    drawing = normalize_code(raw_drawing) if isinstance(raw_drawing, str) else ""
    name = normalize_name_text(text("name"))
    spec = normalize_spec(text("specification"))
    uom = normalize_uom(text("uom"))
    category = normalize_name_text(text("category"))
    weak: list[Pair] = []
    strong: list[Pair] = []
    issues: list[str] = []
    if "identifiers" in record:
        strong, weak, issues = _identifiers(record)
    # issue 4: the description as engineering concepts (螺钉 = 螺丝 = screw) next to its text,
    # and its material/finish among the grades (see flows/identity/parts.py)
    concepts = part_concepts(text("name"))
    return Profile(
        entity=MATERIAL,
        names=_uniq([name, concepts.name]),
        codes=_uniq([code, drawing]),
        system_codes=_uniq_pairs(
            [
                *([(source_system, code)] if source_system and code else []),
                # decision 45: an ERP material's drawing number is a PDM number of the record,
                # so it finds its own PDM part and conflicts with another one (decision 44)
                *([(DRAWING_SYSTEM, drawing)] if drawing else []),
            ]
        ),
        specs=_uniq([spec]),
        uoms=_uniq([uom]),
        categories=_uniq([category]),
        grades=_uniq([*name_grades(text("name")), concepts.materials]),
        weak_ids=_uniq_pairs(weak),
        strong_ids=_uniq_pairs(strong),
        issues=tuple(issues),
    )


def build_profile(
    entity: str, record: Mapping[str, Any], default_country: str = "86", source_system: str = ""
) -> Profile:
    """Profile of a record; pass `source_system` so that material codes remember their system.

    Customers ignore it: their system-local numbers come as `<system>.<name>` identifiers.
    """
    if entity == CUSTOMER:
        return customer_profile(record, default_country)
    if entity == MATERIAL:
        return material_profile(record, source_system)
    raise ValueError(f"unknown entity {entity!r}; expected one of {ENTITIES}")
