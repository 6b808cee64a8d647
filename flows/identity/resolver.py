"""Incremental resolution of one record at a time against golden records.

The decision itself (`decide`) is a pure function of the model, the record's profile and the
candidate clusters' profiles. `Resolver` wires it to a candidate index and a cluster store
through two small protocols; the in-memory implementations here serve the batch command and
the tests, and a store-backed pair serves streaming. Because both paths call `decide` with the
same candidates in the same order, batch and streaming produce the same clusters for the same
input order.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, Protocol

from rapidfuzz.distance import JaroWinkler

from flows.identity.blocking import FAMILIES, blocking_keys
from flows.identity.config import IdentityConfig
from flows.identity.latin import JW_CLOSE
from flows.identity.normalize import has_cjk
from flows.identity.profile import MATERIAL, Profile, build_profile, merge_profiles
from flows.identity.scoring import MATCH, NON_MATCH, FieldEvidence, Model, Score, score

Action = Literal["merge", "review", "new"]
# Disagreement on these fields stops an automatic merge (review at most): a different name under
# a shared phone and address is a relative or a neighbour more often than a typo, and a
# different specification (M3x8 / M3x10) or grade (304 / 316 stainless) is a different part.
# Issue 4 (decision 25g): birth dates that are not one typo apart ("else": neither equal, nor
# day/month swapped, nor one digit off) are a father and son or a namesake more often than an
# entry error: review, not merge. Beyond these fields, `decide` also vetoes identity numbers
# of one registry that disagree (customers, `registry_id_conflict`) and material codes of one
# source system that disagree (`system_code_conflict`).
VETO_FIELDS = {"customer": ("org_name", "person_name", "dob"), "material": ("spec", "grade")}
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:eai-hub:golden-record")


_NAMESPACE_BYTES = _NAMESPACE.bytes


def golden_id_for(entity: str, source_system: str, source_id: str) -> str:
    """Golden id derived from the first member, so re-running the same input gives the same ids.

    "G-" + str(uuid.uuid5(_NAMESPACE, "<entity>/<system>/<id>")), spelled out: a batch starts
    tens of thousands of golden records, and the UUID object was most of the cost.
    """
    name = f"{entity}/{source_system}/{source_id}".encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"G-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    golden_id: str  # the cluster the record belongs to after this decision
    # probability that the record is the best candidate's entity, candidates competing for it
    score: float
    evidence: tuple[FieldEvidence, ...]
    candidate_id: str | None = None  # best candidate; for review, the record to review against
    match_weight: float | None = None
    flags: tuple[str, ...] = ()  # unmatchable | known_source | id_match | disagreement
    # what the caller persists: the golden record's new profile and keys to index under it
    profile: Profile | None = field(default=None, compare=False)
    new_keys: frozenset[str] = field(default=frozenset(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action,
            "golden_id": self.golden_id,
            "score": round(self.score, 6),
            "evidence": [e.as_dict() for e in self.evidence],
        }
        if self.candidate_id is not None:
            out["candidate_id"] = self.candidate_id
        if self.match_weight is not None:
            out["match_weight"] = round(self.match_weight, 3)
        if self.flags:
            out["flags"] = list(self.flags)
        return out


class CandidateIndex(Protocol):
    """(block_key, golden_id) lookup.

    Contract the store-backed implementation must keep for batch/stream equality:
    `candidates` ignores every key held by more than `cap` golden ids and ranks the rest with
    `rank_candidates` (families of keys shared, rarest key shared, keys shared, golden_id), at
    most `limit`.
    """

    def add(self, golden_id: str, keys: Iterable[str]) -> None: ...

    def candidates(self, keys: Iterable[str], limit: int) -> list[str]: ...


class ClusterStore(Protocol):
    def get(self, golden_id: str) -> Profile | None: ...

    def put(self, golden_id: str, profile: Profile) -> None: ...

    def golden_of(self, source_system: str, source_id: str) -> str | None: ...

    def link(self, source_system: str, source_id: str, golden_id: str) -> None: ...


def rank_candidates(
    postings: dict[str, set[str] | None], keys: Iterable[str], limit: int
) -> list[str]:
    """Golden ids sharing a key: most families of keys shared first, then the rarest key
    shared (fewest golden ids under it), then most keys, then id.

    Families first: one name yields several keys (name, bigrams, pinyin), so counting keys
    alone ranks a namesake in another size (same name, other specification) above the same
    part typed with other words but the same specification, and with more than `limit` such
    namesakes the right cluster is never scored. The rarest key next (decision 45): a part
    described with other words shares one family with its own golden record (the
    specification, held by one or two) and one with every namesake in another size (a bigram
    such as 螺丝, held by a dozen); a tie on families used to go to the lower id.
    """
    by_family: dict[str, list[set[str]]] = {}
    found: list[set[str]] = []
    for key in keys:
        ids = postings.get(key)
        if ids:
            # key_family(key) without partition's tuple and tail string
            cut = key.find(":")
            family = FAMILIES.get(key[:cut] if cut >= 0 else key, "other")
            sets = by_family.get(family)
            if sets is None:
                by_family[family] = [ids]
            else:
                sets.append(ids)
            found.append(ids)
    if len(found) == 1:
        # one key shared: every id has one family, one key and one rarest key; the id alone
        # orders them
        return sorted(found[0])[:limit]
    if found and len(found[0]) == 1 and all(ids == found[0] for ids in found):
        # every key shared leads to one and the same golden record (a duplicate of a record
        # seen before: ~15% of a batch's records); nothing to rank
        return list(found[0])
    # one record per id, updated once per posting it is in (four dict operations per id and
    # posting before: rarest, shared and families kept in three dicts)
    stats: dict[str, _Shared] = {}
    for family_index, sets in enumerate(by_family.values()):
        for ids in sets:
            size = len(ids)
            for gid in ids:
                st = stats.get(gid)
                if st is None:
                    stats[gid] = _Shared(size, family_index)
                    continue
                st.shared += 1
                if size < st.rarest:
                    st.rarest = size
                if st.family != family_index:
                    st.family = family_index
                    st.families += 1

    def order(gid: str) -> tuple[int, int, int, str]:
        st = stats[gid]
        return -st.families, st.rarest, -st.shared, gid

    if len(stats) <= _SORT_ALL_UP_TO:
        # heapq.nsmallest is Python code: for a few dozen ids one sort in C is 2-3x faster
        # (decision 69); nearly every record shares keys with fewer than 30 ids
        return sorted(stats, key=order)[:limit]
    # nsmallest(n, x) == sorted(x)[:n], without sorting every id that shares a key
    return heapq.nsmallest(limit, stats, key=order)


# up to this many ids sorting them all is faster than heapq.nsmallest (measured: 2.7 against
# 5.6 us for 20 ids, 6.1 against 8.9 for 40, 13.6 against 12.2 for 80)
_SORT_ALL_UP_TO: Final = 64


class _Shared:
    """What `rank_candidates` orders one golden id by: families of keys it shares with the
    record, the size of the rarest of those keys and how many keys."""

    __slots__ = ("families", "family", "rarest", "shared")

    def __init__(self, rarest: int, family: int) -> None:
        self.families = 1
        self.rarest = rarest
        self.shared = 1
        self.family = family  # the last family counted


_ABSENT: set[str] = set()  # InMemoryIndex.add: a key not seen yet (never filled)


class InMemoryIndex:
    """Candidate index in a dict. Keys past the cap stop storing ids, which bounds memory."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._postings: dict[str, set[str] | None] = {}

    def add(self, golden_id: str, keys: Iterable[str]) -> None:
        postings = self._postings
        for key in keys:
            ids = postings.get(key, _ABSENT)
            if ids is None:
                continue
            if ids is _ABSENT:
                # most keys of a new golden record are new: one store, no empty set to fill
                postings[key] = None if self.cap < 1 else {golden_id}
                continue
            ids.add(golden_id)
            if len(ids) > self.cap:
                # once too common a key stays ignored; it can never become selective again
                postings[key] = None

    def candidates(self, keys: Iterable[str], limit: int) -> list[str]:
        return rank_candidates(self._postings, keys, limit)

    def __len__(self) -> int:
        return len(self._postings)


class InMemoryClusters:
    def __init__(self) -> None:
        self.profiles: dict[str, Profile] = {}
        self.xref: dict[tuple[str, str], str] = {}

    def get(self, golden_id: str) -> Profile | None:
        return self.profiles.get(golden_id)

    def put(self, golden_id: str, profile: Profile) -> None:
        self.profiles[golden_id] = profile

    def golden_of(self, source_system: str, source_id: str) -> str | None:
        return self.xref.get((source_system, source_id))

    def link(self, source_system: str, source_id: str, golden_id: str) -> None:
        self.xref[(source_system, source_id)] = golden_id


def _issues(profile: Profile) -> list[FieldEvidence]:
    return [FieldEvidence("input", "issue", 0.0, text) for text in profile.issues]


def decide(
    model: Model,
    config: IdentityConfig,
    source_system: str,
    source_id: str,
    profile: Profile,
    candidates: Sequence[tuple[str, Profile]],
    *,
    known_golden: tuple[str, Profile] | None = None,
    keys: frozenset[str] | None = None,
    explain: bool = True,
) -> Decision:
    """Decide where one record goes. Pure: no I/O, no state.

    `candidates` are (golden_id, cluster profile) in index order; `known_golden` is the cluster
    this very source record already belongs to, if any (an update of a known record); `keys`
    are the record's blocking keys if the caller has them already. explain=False skips the
    evidence text (same decision, faster).
    """
    if keys is None:
        keys = frozenset(blocking_keys(profile)) if profile.usable() else frozenset()
    if profile.entity == MATERIAL and len(profile.system_codes) < len(profile.codes):
        # a profile built without its system (build_profile's default): the record's codes are
        # the sending system's, which the system-code veto and the golden record need to know
        # (a drawing number already has its system, the PDM's)
        known = {c for _, c in profile.system_codes}
        own = tuple((source_system, c) for c in profile.codes if c not in known)
        if own:
            profile = replace(profile, system_codes=(*own, *profile.system_codes))
    limit = config.max_values_per_field
    issues = _issues(profile) if explain else []

    def own_id() -> str:
        # the id the record gets when it starts a golden record; a merge never needs it
        return golden_id_for(model.entity, source_system, source_id)

    if known_golden is not None:
        gid, cluster = known_golden
        note = FieldEvidence(
            "source", "known", 0.0, f"{source_system}/{source_id} already in {gid}"
        )
        return Decision(
            "merge",
            gid,
            1.0,
            (note, *issues),
            gid,
            None,
            ("known_source",),
            merge_profiles(cluster, profile, limit),
            keys,
        )
    if not profile.usable():
        note = FieldEvidence(
            "record",
            "unmatchable",
            0.0,
            "no name, identifier, phone, e-mail or address to match on",
        )
        return Decision(
            "new", own_id(), 0.0, (note, *issues), None, None, ("unmatchable",), profile
        )

    best: tuple[str, Score, Profile] | None = None
    kept_apart: list[tuple[str, Profile]] = []
    odds_total = 0.0
    for gid, cluster in candidates:
        result = score(model, profile, cluster, stop_at_conflict=True)
        if result.rule == NON_MATCH:
            kept_apart.append((gid, cluster))
            continue
        odds_total += _odds(result.weight)
        if best is None or _better(result, gid, best[1], best[0]):
            best = (gid, result, cluster)
        if result.rule == MATCH:
            # a validated identifier decides alone; no other candidate can change that
            break
    excluded = _kept_apart_evidence(model, profile, kept_apart) if explain else []

    if best is None:
        return Decision("new", own_id(), 0.0, (*excluded, *issues), None, None, (), profile, keys)
    gid, result, cluster = best
    if explain:
        result = score(model, profile, cluster, explain=True)
    # A record belongs to at most one golden record, so candidates compete for it:
    # P(candidate i) = odds_i / (1 + sum of all odds). Two equally good namesakes each get
    # less than one half, where pairwise scoring would have called both a match.
    own_odds = _odds(result.weight)
    probability = 1.0 if result.rule == MATCH else own_odds / (1.0 + odds_total)
    rivals = odds_total - own_odds
    evidence = (*result.evidence, *excluded, *issues)
    if explain and rivals > 0.05 * own_odds and result.rule != MATCH:
        evidence = (
            *evidence,
            FieldEvidence(
                "candidates",
                "competing",
                0.0,
                f"pairwise probability {result.probability:.3f} shared with other candidates",
            ),
        )
    result = Score(result.weight, probability, result.evidence, result.rule, result.levels)
    vetoed = [f for f in VETO_FIELDS.get(model.entity, ()) if result.level_of(model, f) == "else"]
    # only a vetoed person name needs to know whether it can be lifted
    lifted = _name_veto_lift(model, result, profile, cluster) if "person_name" in vetoed else ""
    if "person_name" in vetoed and config.dob_lifts_name_veto and lifted:
        # A relative who shares the family name, the address and the phone does not share the
        # birth date too (twins apart), nor a passport or id number (issue 4, decision 25g):
        # the name is a typo or a nickname (Jmmy, Sasha for Oleksandr, Jon Satnos), or written
        # family name first (decision 48). The weight of the evidence still has to reach the
        # upper threshold.
        vetoed.remove("person_name")
        if explain:
            evidence = (*evidence, FieldEvidence("rule", "name veto lifted", 0.0, lifted))
    upper = config.upper_for(model.entity)
    if result.rule != MATCH and result.probability >= upper:
        conflict = registry_id_conflict(profile, cluster)
        if conflict:
            # issue 4 (decision 25h): two passport or national id numbers are two people, even
            # when everything else agrees (a father and son of one name at one address). The
            # cluster's numbers count, not only the best member's, so a record cannot join a
            # golden record that already holds another number of its scheme.
            vetoed.append(f"{conflict} numbers")
        codes = system_code_conflict(profile, cluster, config.distinct_code_systems)
        if codes:
            # decision 44: two part numbers of one system are two parts in that system's own
            # numbering (the motor assemblies RS7100-20-000 and RS5200-20-000 of the demo, equal
            # in name and spec); a part re-entered inside one system is for a human to confirm
            system, ours, theirs = codes
            vetoed.append(f"{system} codes")
            if explain:
                detail = (
                    f"{system} code {ours} against {theirs} of the golden record: "
                    f"one system does not give one part two numbers"
                )
                evidence = (*evidence, FieldEvidence("code", "system conflict", 0.0, detail))
    if vetoed and result.rule != MATCH and result.probability >= upper:
        note = FieldEvidence(
            "rule", "disagreement", 0.0, f"{', '.join(vetoed)} disagree: no automatic merge"
        )
        return Decision(
            "review",
            own_id(),
            result.probability,
            (*evidence, note),
            gid,
            result.weight,
            ("disagreement",),
            profile,
            keys,
        )
    if result.rule == MATCH or result.probability >= upper:
        flags = ("id_match",) if result.rule == MATCH else ()
        return Decision(
            "merge",
            gid,
            result.probability,
            evidence,
            gid,
            result.weight,
            flags,
            merge_profiles(cluster, profile, limit),
            keys,
        )
    action: Action = "review" if result.probability >= config.lower else "new"
    return Decision(
        action, own_id(), result.probability, evidence, gid, result.weight, (), profile, keys
    )


def system_code_conflict(
    record: Profile, cluster: Profile, systems: Iterable[str]
) -> tuple[str, str, str] | None:
    """One of `systems` both sides hold material codes of, with no code of it shared.

    Returns (system, the record's codes, the golden record's codes of that system), codes
    joined with "/", or None. Codes of different systems never conflict: ERP's own material
    number for a PDM part is the same part under another numbering. Every code the golden
    record holds counts, not only the best member's.
    """
    if not record.system_codes or not cluster.system_codes:
        return None
    distinct = set(systems)
    ours: dict[str, list[str]] = {}
    for system, code in record.system_codes:
        if system in distinct:
            ours.setdefault(system, []).append(code)
    theirs: dict[str, list[str]] = {}
    for system, code in cluster.system_codes:
        if system in ours:
            theirs.setdefault(system, []).append(code)
    for system in sorted(theirs):
        if not set(ours[system]) & set(theirs[system]):
            return system, "/".join(ours[system]), "/".join(theirs[system])
    return None


def registry_id_conflict(a: Profile, b: Profile) -> str:
    """A registry scheme (passport, national_id, tax_id) both sides hold with no value shared.

    Registry schemes are the ones without a system prefix: the canonical `Identifier` names
    system-local numbers `<system>.<name>` (crm.customer_no), and one customer may hold several
    of those (a duplicate inside one system), so they do not conflict. Validated ids (USCC,
    resident ids) are `strong_ids` and already keep records apart in scoring. Returns the
    scheme, or "" when nothing conflicts.
    """
    if not a.weak_ids or not b.weak_ids:
        return ""
    theirs: dict[str, set[str]] = {}
    for scheme, value in b.weak_ids:
        if "." not in scheme:
            theirs.setdefault(scheme, set()).add(value)
    ours: dict[str, set[str]] = {}
    for scheme, value in a.weak_ids:
        if scheme in theirs:
            ours.setdefault(scheme, set()).add(value)
    for scheme in sorted(ours):
        if not ours[scheme] & theirs[scheme]:
            return scheme
    return ""


def _name_veto_lift(model: Model, result: Score, profile: Profile, cluster: Profile) -> str:
    """Why a person-name disagreement need not stop a merge, or "" when it must."""
    if result.level_of(model, "dob") == "exact" and _shared_name_word(profile, cluster):
        return "names differ; a name word and the birth date agree"
    if result.level_of(model, "weak_id") == "exact":
        return "names differ; an identity number without check digit agrees"
    return ""


def _shared_name_word(a: Profile, b: Profile) -> bool:
    """Latin person names sharing a word of two letters or more, in either position, equal or
    one keystroke apart (Jaro-Winkler >= 0.92, Splink's "close" level).

    Decision 48: systems disagree on which word is the family name ("KRUGER Enzo" is
    normalized "kruger enzo", so the last words of it and "lorenzo kruger" differ), and a
    family name is mistyped as often as a given name (Erisen / Eriksen). Initials do not count.
    """
    ours = {w for n in a.names if not has_cjk(n) for w in n.split() if len(w) >= 2}
    theirs = {w for n in b.names if not has_cjk(n) for w in n.split() if len(w) >= 2}
    return any(x == y or JaroWinkler.similarity(x, y) >= JW_CLOSE for x in ours for y in theirs)


def _kept_apart_evidence(
    model: Model, profile: Profile, kept_apart: list[tuple[str, Profile]]
) -> list[FieldEvidence]:
    if not kept_apart:
        return []
    reasons = []
    for gid, cluster in kept_apart[:3]:
        result = score(model, profile, cluster, explain=True)
        reason = next(
            (
                f"{e.field}: {e.detail}"
                for e in result.evidence
                if e.level == "rule" or "conflict" in e.level
            ),
            "",
        )
        reasons.append(f"{gid} ({reason})")
    more = len(kept_apart) - 3
    text = "; ".join(reasons) + (f"; +{more} more" if more > 0 else "")
    return [FieldEvidence("candidates", "kept apart", 0.0, text)]


def _odds(weight: float) -> float:
    return math.pow(2.0, min(max(weight, -200.0), 200.0))


def _better(new: Score, new_id: str, old: Score, old_id: str) -> bool:
    a = (new.rule == MATCH, new.probability, new.weight)
    b = (old.rule == MATCH, old.probability, old.weight)
    if a != b:
        return a > b
    return new_id < old_id


class Resolver:
    """Stateful wrapper of `decide` over a candidate index and a cluster store."""

    def __init__(
        self,
        model: Model,
        config: IdentityConfig | None = None,
        index: CandidateIndex | None = None,
        clusters: ClusterStore | None = None,
        *,
        explain: bool = True,
    ) -> None:
        self.model = model
        self.explain = explain
        self.config = config or IdentityConfig()
        self.index: CandidateIndex = (
            index if index is not None else InMemoryIndex(self.config.block_cap)
        )
        self.clusters: ClusterStore = clusters if clusters is not None else InMemoryClusters()

    def resolve(self, source_system: str, source_id: str, record: Mapping[str, Any]) -> Decision:
        profile = build_profile(
            self.model.entity, record, self.config.default_country, source_system
        )
        return self.resolve_profile(source_system, source_id, profile)

    def resolve_profile(
        self,
        source_system: str,
        source_id: str,
        profile: Profile,
        keys: frozenset[str] | None = None,
    ) -> Decision:
        if keys is None:
            keys = frozenset(blocking_keys(profile)) if profile.usable() else frozenset()
        known = self.clusters.golden_of(source_system, source_id)
        known_golden = None
        if known is not None:
            cluster = self.clusters.get(known)
            if cluster is not None:
                known_golden = (known, cluster)
        candidates: list[tuple[str, Profile]] = []
        if known_golden is None and profile.usable():
            for gid in self.index.candidates(keys, self.config.max_candidates):
                cluster = self.clusters.get(gid)
                if cluster is not None:
                    candidates.append((gid, cluster))
        decision = decide(
            self.model,
            self.config,
            source_system,
            source_id,
            profile,
            candidates,
            known_golden=known_golden,
            keys=keys,
            explain=self.explain,
        )
        self.apply(source_system, source_id, decision)
        return decision

    def apply(self, source_system: str, source_id: str, decision: Decision) -> None:
        if decision.profile is not None:
            self.clusters.put(decision.golden_id, decision.profile)
        if decision.new_keys:
            self.index.add(decision.golden_id, decision.new_keys)
        self.clusters.link(source_system, source_id, decision.golden_id)
