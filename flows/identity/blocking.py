"""Blocking keys: which golden records a new record is compared with at all.

A record is compared only with golden records that share at least one key. Keys are plain
strings so they can live in a (block_key, golden_id) table. Each family of keys covers a
different way two spellings of one entity can still agree (identifier, phone, name characters,
pinyin initials, birth date, street), so an error in one field does not hide a duplicate. Keys
that too many golden records share are ignored at lookup time (see CandidateIndex) rather than
here, because how common a key is depends on the data seen so far.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flows.identity.latin import soundex
from flows.identity.normalize import has_cjk, pinyin, pinyin_initials
from flows.identity.profile import MATERIAL, Profile, build_profile

# prefix -> family; EM training holds the fields of a family fixed when it blocks on it
FAMILIES: dict[str, str] = {
    "id": "id",
    "wid": "id",
    "ph": "contact",
    "em": "contact",
    "nm": "name",
    "br": "name",
    "bg": "name",
    "tk": "name",
    "py": "name",
    "pf": "name",
    "dob": "dob",
    "sxy": "dob",
    "st": "street",
    "code": "code",
    "spec": "spec",
    "sc": "sc",
}

_STOP_TOKENS = frozenset({"and", "the", "of", "de", "la", "le", "van", "von", "der", "da", "di"})


def key_family(key: str) -> str:
    return FAMILIES.get(key.split(":", 1)[0], "other")


def _bigrams(text: str) -> list[str]:
    return [text[i : i + 2] for i in range(len(text) - 1)]


def _name_keys(profile: Profile, out: set[str]) -> None:
    cities = profile.cities[:3] or ("",)
    for name in profile.names:
        if not name:
            continue
        out.add("nm:" + name)
        if name.startswith("§"):
            continue  # a part's concept name: its words are far too common to block on
        if has_cjk(name):
            # one mistyped character leaves most bigrams intact
            if len(name) >= 3:
                out.update("bg:" + bg for bg in _bigrams(name))
            initials = pinyin_initials(name)
            if len(initials) >= 2:
                # homophone typos (the usual IME error) keep the initials
                out.update(f"py:{initials}|{city}" for city in cities)
        else:
            out.update("tk:" + t for t in name.split() if len(t) >= 3 and t not in _STOP_TOKENS)
        if profile.kind != "organization" and (has_cjk(name) or " " in name):
            # person names across scripts and word orders: 张伟 / Zhang Wei / Wei Zhang
            syllables = pinyin(name).split()
            if len(syllables) >= 2:
                out.add("pf:" + "".join(sorted(syllables)))
    for brand in profile.brands:
        if brand and brand not in profile.names:
            out.add("br:" + brand)


def blocking_keys(profile: Profile) -> set[str]:
    """Blocking keys of a profile (record or cluster)."""
    out: set[str] = set()
    for scheme, value in profile.strong_ids:
        out.add(f"id:{scheme}:{value}")
    for scheme, value in profile.weak_ids:
        out.add(f"wid:{scheme}:{value}")
    if profile.entity == MATERIAL:
        for code in profile.codes:
            out.add("code:" + code)
        uoms = profile.uoms or ("",)
        concepts = [n for n in profile.names if n.startswith("§")]
        for spec in profile.specs:
            out.update(f"spec:{spec}|{uom}" for uom in uoms)
            # decision 45: the size with the part's concepts, whatever words and word order the
            # description used (不锈钢304内六角圆柱头螺钉 / 内六角圆柱头螺丝/不锈钢304): among the
            # namesakes in other sizes and the other parts of this size, the one key they share
            out.update(f"sc:{spec}|{c[1:]}" for c in concepts)
        _name_keys(profile, out)
        return out
    for phone in profile.phones:
        out.add("ph:" + phone[2:])
    for email in profile.emails:
        out.add("em:" + email[2:])
    _name_keys(profile, out)
    for dob in profile.dobs:
        for name in profile.names:
            # initials of every word: the family name may come first or last
            initials = {w[0] for w in name.split()} if not has_cjk(name) else {name[0]}
            out.update(f"dob:{dob}|{i}" for i in initials)
            if not has_cjk(name):
                # the birth date itself mistyped (one digit, day/month swapped): the year and
                # the sound of either name word still agree (Splink's surname + year rule)
                out.update(f"sxy:{soundex(w)}|{dob[:4]}" for w in name.split() if len(w) >= 2)
    city = profile.cities[0] if profile.cities else ""
    for street in profile.streets:
        if city or len(street) >= 8:
            out.add(f"st:{city}|{street}")
    return out


def keys(entity: str, record: Mapping[str, Any]) -> set[str]:
    """Blocking keys of a canonical Customer or Material body."""
    return blocking_keys(build_profile(entity, record))
