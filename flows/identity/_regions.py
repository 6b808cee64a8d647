"""Gazetteer of Chinese administrative divisions, read from python-stdnum's cn/loc.dat.

stdnum ships the division codes that resident ids are checked against; reusing it gives every
province, prefecture and county name without maintaining our own list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import stdnum.cn

PROVINCE, CITY, DISTRICT = "province", "city", "district"

_PROVINCE_SUFFIXES = (
    "壮族自治区",
    "回族自治区",
    "维吾尔自治区",
    "特别行政区",
    "特別行政區",
    "自治区",
    "省",
    "市",
)
# Generic placeholders in loc.dat that are not place names.
_GENERIC = {
    "市辖区",
    "县",
    "市区",
    "郊区",
    "矿区",
    "城区",
    "省直辖县级行政区划",
    "自治区直辖县级行政区划",
}
_LINE = re.compile(r'^\s*(\d{2})?\s*(\d{4})?\s*(province|county)="([^"]*)"')


@dataclass(frozen=True, slots=True)
class Place:
    level: str  # province | city | district
    name: str  # canonical short name: 广东, 深圳, 南山
    province: str
    city: str


def _short(name: str, level: str) -> str:
    if level == PROVINCE:
        for suffix in _PROVINCE_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix) + 1:
                return name[: -len(suffix)]
        return name
    for suffix in ("地区", "市", "盟"):
        if name.endswith(suffix) and len(name) > len(suffix) + 1:
            return name[: -len(suffix)]
    if level == DISTRICT:
        for suffix in ("新区", "区", "县", "旗"):
            if name.endswith(suffix) and len(name) > len(suffix) + 1:
                return name[: -len(suffix)]
    return name


@dataclass(frozen=True, slots=True)
class Gazetteer:
    # full and short spellings -> places (a short name can be ambiguous across provinces)
    names: dict[str, tuple[Place, ...]]
    max_len: int
    short_names: frozenset[str]

    def lookup(self, text: str) -> tuple[Place, ...]:
        return self.names.get(text, ())

    def prefix(self, text: str) -> tuple[str, tuple[Place, ...]]:
        """Longest region name that `text` starts with, or ("", ())."""
        for n in range(min(self.max_len, len(text)), 1, -1):
            places = self.names.get(text[:n])
            if places:
                return text[:n], places
        return "", ()

    def suffix(self, text: str) -> tuple[str, tuple[Place, ...]]:
        for n in range(min(self.max_len, len(text)), 1, -1):
            places = self.names.get(text[-n:])
            if places:
                return text[-n:], places
        return "", ()


def _clean(raw: str) -> list[str]:
    # historical names carry "[1983-2005]" validity tags; several names may be comma-separated.
    # Current names come first so that lookups prefer today's division (重庆 is no longer 四川).
    current: list[str] = []
    former: list[str] = []
    for part in raw.split(","):
        tag = re.match(r"\[(\d*)-(\d*)\]", part)
        name = re.sub(r"\[[^\]]*\]", "", part).strip()
        name = name.replace("特別行政區", "特别行政区").replace("澳門", "澳门")
        if name and name not in _GENERIC:
            (former if tag and tag.group(2) else current).append(name)
    return current + former


@cache
def gazetteer() -> Gazetteer:
    path = Path(stdnum.cn.__file__).with_name("loc.dat")
    entries: dict[str, dict[Place, None]] = {}

    def add(full: str, place: Place) -> None:
        for spelling in {full, place.name}:
            entries.setdefault(spelling, {})[place] = None

    province = city = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        prov_code, sub_code, _kind, raw = m.groups()
        spellings = _clean(raw)
        if prov_code is not None:
            province = _short(spellings[0], PROVINCE) if spellings else ""
            city = ""
            if spellings:
                add(spellings[0], Place(PROVINCE, province, province, ""))
                # municipalities are both province and city
                if spellings[0].endswith("市"):
                    city = province
                    add(spellings[0], Place(CITY, province, province, province))
            continue
        if not spellings or sub_code is None or sub_code == "0000":
            continue
        if sub_code.endswith("00"):
            city = _short(spellings[-1], CITY)
            for name in spellings:
                add(name, Place(CITY, _short(name, CITY), province, _short(name, CITY)))
            continue
        for name in spellings:
            if name.endswith("市"):
                # county-level cities (昆山市, 义乌市) appear in company names like prefectures do
                short = _short(name, CITY)
                add(name, Place(CITY, short, province, short))
            else:
                add(name, Place(DISTRICT, _short(name, DISTRICT), province, city))
    for special in ("香港", "澳门", "台湾"):
        add(special, Place(PROVINCE, special, special, special))
        add(special, Place(CITY, special, special, special))
    # "中国" prefixes and parentheticals behave like a region for company names
    add("中国", Place(PROVINCE, "中国", "", ""))

    def rank(place: Place) -> int:
        # municipalities and prefecture cities before same-named districts elsewhere
        if place.level == CITY and place.name == place.province:
            return 0
        return {PROVINCE: 1, CITY: 2, DISTRICT: 3}[place.level]

    names = {k: tuple(sorted(v, key=rank)) for k, v in entries.items()}
    shorts = frozenset(p.name for places in names.values() for p in places)
    return Gazetteer(names, max(len(k) for k in names), shorts)
