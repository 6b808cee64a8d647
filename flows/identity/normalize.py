"""Pure normalizers for identity resolution.

Every function here is deterministic, has no I/O beyond reading packaged dictionaries once, and
is idempotent on its own output, so a value normalized at ingestion and normalized again later
(for instance when a golden record is re-scored) compares equal to itself.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import opencc
from pypinyin.pinyin_dict import pinyin_dict
from stdnum.cn import ric, uscc
from stdnum.exceptions import ValidationError

from flows.identity._regions import CITY, DISTRICT, PROVINCE, Place, gazetteer

__all__ = [
    "Address",
    "IdCheck",
    "OrgName",
    "PersonName",
    "Phone",
    "check_identifier",
    "fold",
    "has_cjk",
    "normalize_address",
    "normalize_code",
    "normalize_date",
    "normalize_email",
    "normalize_name_text",
    "normalize_org_name",
    "normalize_person_name",
    "normalize_phone",
    "normalize_spec",
    "normalize_uom",
    "pinyin",
    "pinyin_initials",
    "street_core",
    "strip_accents",
    "to_simplified",
]

# --------------------------------------------------------------------------- text basics


@cache
def _t2s() -> tuple[opencc.OpenCC, frozenset[str]]:
    converter = opencc.OpenCC("t2s")
    # opencc-python-reimplemented is pure Python (~20 us per short string); most input is
    # already Simplified, so skip the converter unless a character it could change is present.
    base = Path(opencc.__file__).with_name("dictionary")
    triggers: set[str] = set()
    for line in (base / "TSCharacters.txt").read_text(encoding="utf-8").splitlines():
        triggers.add(line.split("\t", 1)[0])
    # phrase entries all contain such a character, except a few whose first character is 沈
    triggers.add("沈")
    return converter, frozenset(triggers)


@lru_cache(maxsize=65536)
def to_simplified(text: str) -> str:
    """Traditional -> Simplified Chinese (OpenCC t2s); other scripts pass through."""
    converter, triggers = _t2s()
    if triggers.isdisjoint(text):
        return text
    out: str = converter.convert(text)
    return out


_CJK = re.compile("[\u3400-\u9fff\uf900-\ufaff]")


def has_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


_SPECIAL_LATIN = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "ø": "o",
        "Ø": "O",
        "œ": "oe",
        "Œ": "OE",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "þ": "th",
        "ı": "i",
    }
)


def strip_accents(text: str) -> str:
    """Latin letters without diacritics (é -> e, ß -> ss); CJK is left intact."""
    text = text.translate(_SPECIAL_LATIN)
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFKC", kept)


_WS = re.compile(r"\s+")


@lru_cache(maxsize=131072)
def fold(text: str) -> str:
    """Width, script, case and accent folding; whitespace collapsed. Punctuation is kept."""
    text = unicodedata.normalize("NFKC", text)
    text = to_simplified(text)
    # casefold can leave non-NFKC output (e.g. 'ﬀ'), so normalize again afterwards
    text = strip_accents(text.casefold())
    text = unicodedata.normalize("NFKC", text.casefold())
    return _WS.sub(" ", text).strip()


_PUNCT = re.compile(r"[^\w]+|_")


def _alnum(text: str) -> str:
    return _PUNCT.sub("", text)


def _words(text: str) -> list[str]:
    return [w for w in _PUNCT.split(text) if w]


@cache
def _pinyin_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for code, readings in pinyin_dict.items():
        first = readings.split(",", 1)[0]
        plain = "".join(
            ch for ch in unicodedata.normalize("NFKD", first) if not unicodedata.combining(ch)
        )
        table[chr(code)] = plain.replace("ü", "v")
    return table


def _syllables(text: str) -> list[str]:
    table = _pinyin_table()
    out: list[str] = []
    buf: list[str] = []
    for ch in text:
        syl = table.get(ch) if _is_cjk(ch) else None
        if syl is not None:
            if buf:
                out.append("".join(buf))
                buf = []
            out.append(syl)
        elif ch.isalnum():
            buf.append(ch)
        elif buf:
            out.append("".join(buf))
            buf = []
    if buf:
        out.append("".join(buf))
    return out


@lru_cache(maxsize=131072)
def pinyin(text: str) -> str:
    """Toneless pinyin, first reading of each character, syllables separated by spaces.

    Polyphones take their most frequent reading; both sides of a comparison get the same
    reading, which is all that matching needs.
    """
    return " ".join(_syllables(fold(text)))


@lru_cache(maxsize=131072)
def pinyin_initials(text: str) -> str:
    return "".join(s[0] for s in _syllables(fold(text)))


def normalize_name_text(text: str) -> str:
    """Generic name text (materials, streets): folded, punctuation and CJK-internal spaces gone.

    Spaces between Latin words survive because they separate tokens there.
    """
    words = _words(fold(text))
    out: list[str] = []
    for word in words:
        if out and (has_cjk(out[-1][-1]) or has_cjk(word[0])):
            out[-1] = out[-1] + word
        else:
            out.append(word)
    return " ".join(out)


# --------------------------------------------------------------------------- organizations

_CN_LEGAL = (
    "股份有限公司",
    "有限责任公司",
    "有限公司",
    "股份公司",
    "集团公司",
    "控股集团",
    "集团",
    "总公司",
)
_CN_TRAILING = (
    "分公司",
    "公司",
    "总厂",
    "分厂",
    "工厂",
    "厂",
    "办事处",
    "代表处",
    "经营部",
    "营业部",
    "门市部",
    "分店",
    "商行",
    "普通合伙",
    "有限合伙",
    "特殊普通合伙",
)
_CN_PAREN_LEGAL = {"集团", "控股", "普通合伙", "有限合伙", "特殊普通合伙", "总部"}
# Industry words: a core that is nothing but these is not a name, so a city name in front of it
# is part of the name (金华电子 is not 'electronics in Jinhua').
_INDUSTRY = (
    "电子商务",
    "新能源",
    "进出口",
    "供应链",
    "科技",
    "技术",
    "电子",
    "电器",
    "电气",
    "电机",
    "贸易",
    "实业",
    "发展",
    "信息",
    "网络",
    "软件",
    "工贸",
    "商贸",
    "机械",
    "设备",
    "制造",
    "工业",
    "国际",
    "控股",
    "投资",
    "咨询",
    "服务",
    "物流",
    "文化",
    "传媒",
    "生物",
    "医药",
    "化工",
    "材料",
    "能源",
    "环保",
    "建设",
    "工程",
    "建筑",
    "精密",
    "五金",
    "塑胶",
    "塑料",
    "模具",
    "包装",
    "印刷",
    "服饰",
    "纺织",
    "食品",
    "智能",
    "光电",
    "通信",
    "通讯",
    "汽车",
    "配件",
    "家电",
    "照明",
    "仪器",
    "自动化",
    "数码",
    "器材",
    "用品",
    "销售",
    "百货",
)
_LATIN_LEGAL = frozenset(
    {
        "co",
        "company",
        "ltd",
        "limited",
        "inc",
        "incorporated",
        "corp",
        "corporation",
        "llc",
        "llp",
        "lp",
        "plc",
        "gmbh",
        "mbh",
        "ag",
        "kg",
        "kgaa",
        "se",
        "sa",
        "sas",
        "sarl",
        "srl",
        "spa",
        "bv",
        "nv",
        "oy",
        "ab",
        "as",
        "asa",
        "aps",
        "kk",
        "pte",
        "pty",
        "pvt",
        "sdn",
        "bhd",
        "group",
        "holding",
        "holdings",
        "intl",
        "international",
    }
)
_LATIN_INDUSTRY = frozenset(
    {
        "technology",
        "technologies",
        "tech",
        "electronics",
        "electronic",
        "trading",
        "industries",
        "industrial",
        "industry",
        "manufacturing",
        "systems",
        "solutions",
        "services",
        "products",
        "enterprises",
        "imports",
        "exports",
        "import",
        "export",
        "and",
        "components",
        "engineering",
        "logistics",
        "supply",
        "distribution",
        "appliances",
    }
)


@dataclass(frozen=True, slots=True)
class OrgName:
    core: str  # distinctive part: 华为技术 / acme widgets
    brand: str  # core without trailing industry words: 华为 (== core when nothing to drop)
    regions: tuple[str, ...]  # stripped place names, canonical short form: (广东, 深圳)
    legal: tuple[str, ...]  # stripped legal-form / branch parts: (有限公司, 北京分公司)

    @property
    def city(self) -> str:
        """The city among the stripped places (深圳 of 广东省深圳市…), or ""."""
        g = gazetteer()
        for name in self.regions:
            if any(p.level == CITY for p in g.lookup(name)):
                return name
        return ""


def _strip_industry(core: str) -> str:
    changed = True
    while changed:
        changed = False
        for word in _INDUSTRY:
            if core.endswith(word) and len(core) - len(word) >= 2:
                core = core[: -len(word)]
                changed = True
                break
    return core


def _only_industry(text: str) -> bool:
    if not text:
        return True
    return any(text.startswith(w) and _only_industry(text[len(w) :]) for w in _INDUSTRY)


def _region_prefix(text: str, city: str) -> tuple[str, Place | None]:
    """Leading place name that may be cut from a company name, with its place.

    Districts are only cut right after their own city (深圳市宝安区…), or when spelled in full:
    a short county name is too often the start of a trade name (威远, 越城).
    """
    g = gazetteer()
    spelling, places = g.prefix(text)
    while spelling:
        rest = text[len(spelling) :]
        usable = [
            p
            for p in places
            if p.level in (PROVINCE, CITY)
            or (p.level == DISTRICT and (p.city == city if city else spelling != p.name))
        ]
        if city:
            usable.sort(key=lambda p: p.level != DISTRICT)
        short_form = all(spelling == p.name for p in usable)
        # a short spelling in front of mere industry words is the name itself (金华电子)
        if usable and len(rest) >= 2 and not (short_form and _only_industry(rest)):
            return spelling, usable[0]
        spelling, places = g.prefix(spelling[:-1]) if len(spelling) > 2 else ("", ())
    return "", None


def _cn_org(text: str) -> OrgName:
    regions: list[str] = []
    legal: list[str] = []
    g = gazetteer()

    # parentheticals: 华为技术(深圳)有限公司, 某某(集团)股份有限公司
    def paren(m: re.Match[str]) -> str:
        inner = _alnum(m.group(1))
        if inner in _CN_PAREN_LEGAL or inner in _CN_LEGAL:
            legal.append(inner)
            return ""
        places = g.lookup(inner)
        if places:
            regions.append(places[0].name)
            return ""
        return inner

    text = re.sub(r"[(\[{]([^()\[\]{}]*)[)\]}]", paren, text)
    text = _alnum(text)
    # everything after the first legal form is a branch qualifier (…有限公司北京分公司)
    cut = min(
        ((text.find(form), form) for form in _CN_LEGAL if text.find(form) >= 0),
        default=None,
    )
    if cut is not None:
        legal.append(text[cut[0] :])
        text = text[: cut[0]]
    changed = True
    while changed:
        changed = False
        for suffix in _CN_TRAILING:
            if text.endswith(suffix) and len(text) > len(suffix):
                text = text[: -len(suffix)]
                legal.append(suffix)
                changed = True
                break
        spelling, places = g.suffix(text)
        # trailing place names only come with a branch: 华为技术北京(分公司)
        if spelling and legal and len(text) - len(spelling) >= 2:
            regions.append(places[0].name)
            text = text[: -len(spelling)]
            changed = True
    leading: list[str] = []
    city = ""
    while True:
        spelling, place = _region_prefix(text, city)
        if place is None:
            break
        leading.append(place.name)
        if place.level == CITY:
            city = place.name
        text = text[len(spelling) :]
    regions[:0] = leading
    return OrgName(text, _strip_industry(text), tuple(dict.fromkeys(regions)), tuple(legal))


def _latin_org(text: str) -> OrgName:
    legal: list[str] = []
    regions: list[str] = []

    def paren(m: re.Match[str]) -> str:
        regions.append(_alnum(m.group(1)))
        return " "

    text = re.sub(r"[(\[{]([^()\[\]{}]*)[)\]}]", paren, text)
    text = text.replace("&", " and ").replace("+", " and ")
    # "co.,ltd" and "l.l.c." lose their dots before tokenizing
    text = re.sub(r"\b([a-z])\.(?=[a-z]\.)", r"\1", text)
    words = _words(text.replace(".", ""))
    while words and words[-1] in _LATIN_LEGAL and len(words) > 1:
        legal.insert(0, words.pop())
    if len(words) > 1 and words[0] == "the":
        words.pop(0)
    core = " ".join(words)
    while len(words) > 1 and words[-1] in _LATIN_INDUSTRY:
        words.pop()
    brand = " ".join(words)
    return OrgName(core, brand, tuple(r for r in regions if r), tuple(legal))


@lru_cache(maxsize=131072)
def normalize_org_name(raw: str) -> OrgName:
    """Organization name split into its distinctive core and the stripped parts.

    >>> normalize_org_name("華為技術（深圳）有限公司").core
    '华为技术'
    """
    text = fold(raw)
    if has_cjk(text):
        return _cn_org(text)
    return _latin_org(text)


# --------------------------------------------------------------------------- persons

_HONORIFICS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "dr",
        "prof",
        "sir",
        "dame",
        "madam",
        "herr",
        "frau",
        "mme",
        "mlle",
        "monsieur",
        "madame",
        "sr",
        "sra",
        "srta",
        "don",
        "dona",
        "dott",
        "ing",
        "signor",
        "signora",
    }
)
_NAME_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv", "phd", "md", "esq", "dds"})
_CN_HONORIFICS = ("先生", "女士", "小姐", "老师", "经理", "总经理", "博士", "教授", "总")
# Common English/European diminutives. Matching on the formal form lets "Bob Smith" block and
# compare with "Robert Smith"; both map to one spelling, so the rule is symmetric.
_NICKNAMES = {
    "bob": "robert",
    "bobby": "robert",
    "rob": "robert",
    "robbie": "robert",
    "bert": "robert",
    "bill": "william",
    "billy": "william",
    "will": "william",
    "willy": "william",
    "liam": "william",
    "jim": "james",
    "jimmy": "james",
    "jamie": "james",
    "mike": "michael",
    "mikey": "michael",
    "mick": "michael",
    "dick": "richard",
    "rick": "richard",
    "ricky": "richard",
    "rich": "richard",
    "tom": "thomas",
    "tommy": "thomas",
    "joe": "joseph",
    "joey": "joseph",
    "jack": "john",
    "johnny": "john",
    "jon": "john",
    "dave": "david",
    "davy": "david",
    "steve": "steven",
    "stephen": "steven",
    "chris": "christopher",
    "kit": "christopher",
    "matt": "matthew",
    "dan": "daniel",
    "danny": "daniel",
    "tony": "anthony",
    "andy": "andrew",
    "drew": "andrew",
    "ed": "edward",
    "eddie": "edward",
    "ted": "edward",
    "ben": "benjamin",
    "sam": "samuel",
    "alex": "alexander",
    "sandy": "alexander",
    "nick": "nicholas",
    "pete": "peter",
    "greg": "gregory",
    "larry": "lawrence",
    "fred": "frederick",
    "hank": "henry",
    "harry": "henry",
    "charlie": "charles",
    "chuck": "charles",
    "jeff": "jeffrey",
    "geoff": "jeffrey",
    "ken": "kenneth",
    "kenny": "kenneth",
    "ron": "ronald",
    "don": "donald",
    "gerry": "gerald",
    "jerry": "gerald",
    "pat": "patrick",
    "tim": "timothy",
    "vince": "vincent",
    "walt": "walter",
    "liz": "elizabeth",
    "lizzy": "elizabeth",
    "beth": "elizabeth",
    "betty": "elizabeth",
    "eliza": "elizabeth",
    "kate": "katherine",
    "katie": "katherine",
    "kathy": "katherine",
    "cathy": "katherine",
    "catherine": "katherine",
    "kathryn": "katherine",
    "maggie": "margaret",
    "meg": "margaret",
    "peggy": "margaret",
    "sue": "susan",
    "susie": "susan",
    "jenny": "jennifer",
    "jen": "jennifer",
    "becky": "rebecca",
    "vicky": "victoria",
    "abby": "abigail",
    "annie": "anne",
    "ann": "anne",
    "anna": "anne",
    "debbie": "deborah",
    "deb": "deborah",
    "mandy": "amanda",
    "pam": "pamela",
    "sandra": "alexandra",
    "sasha": "alexandra",
    "nate": "nathan",
    "nat": "nathan",
    "hans": "johannes",
    "sepp": "josef",
    "joseph": "josef",
    "pepe": "jose",
    "paco": "francisco",
    "pancho": "francisco",
    "nacho": "ignacio",
    "manu": "manuel",
    "lupe": "guadalupe",
    "giovanni": "john",
    "juan": "john",
    "johann": "johannes",
}


@dataclass(frozen=True, slots=True)
class PersonName:
    full: str  # comparable form: "robert smith" / "张伟"
    tokens: tuple[str, ...]  # Latin words after honorifics/nicknames; CJK: the single string


@lru_cache(maxsize=131072)
def normalize_person_name(raw: str) -> PersonName:
    text = fold(raw)
    if has_cjk(text):
        core = _alnum(text)
        for title in _CN_HONORIFICS:
            if core.endswith(title) and len(core) > len(title):
                core = core[: -len(title)]
                break
        return PersonName(core, (core,) if core else ())
    if "," in text:
        # "Smith, John" is family-name-first
        family, _, given = text.partition(",")
        text = f"{given} {family}"
    # hyphenated and apostrophe'd surnames are written with and without the mark
    words = _words(re.sub(r"['’\-]", "", text))
    while words and words[0] in _HONORIFICS and len(words) > 1:
        words.pop(0)
    while words and words[-1] in _NAME_SUFFIXES and len(words) > 1:
        words.pop()
    if len(words) > 2:
        # middle names and initials are recorded inconsistently across systems
        words = [words[0], words[-1]]
    if words:
        words[0] = _NICKNAMES.get(words[0], words[0])
    return PersonName(" ".join(words), tuple(words))


# --------------------------------------------------------------------------- phones

_EXT = re.compile(r"(?:转|分机|ext\.?|extension|x|#)\s*(\d{1,6})\s*$")
_MOBILE = re.compile(r"1[3-9]\d{9}")


@dataclass(frozen=True, slots=True)
class Phone:
    canonical: str  # +8613812345678, +8675512345678, +15551234567, or bare digits if unknown
    tail: str  # last 8 digits: the part every spelling of the number keeps
    mobile: bool
    extension: str


@lru_cache(maxsize=131072)
def normalize_phone(raw: str, default_country: str = "86") -> Phone | None:
    """Canonical phone number, or None when it cannot be a phone number.

    >>> normalize_phone("+86 138-1234-5678").canonical
    '+8613812345678'
    >>> normalize_phone("(0755) 8765 4321 转 801").canonical
    '+8675587654321'
    """
    text = unicodedata.normalize("NFKC", raw).strip().lower()
    ext = ""
    m = _EXT.search(text)
    if m:
        ext = m.group(1)
        text = text[: m.start()]
    text = text.replace("(0)", "")
    intl = text.startswith("+")
    digits = re.sub(r"\D", "", text)
    if digits.startswith("00"):
        intl, digits = True, digits[2:]
    if not intl and digits.startswith("86") and _MOBILE.fullmatch(digits[2:]):
        intl = True
    if len(digits) < 7 or len(set(digits)) == 1:
        return None
    if intl:
        country = "86" if digits.startswith("86") else ""
        if not country:
            return Phone("+" + digits, digits[-8:], False, ext)
        national = digits[2:].lstrip("0")
    elif default_country == "86":
        country, national = "86", digits[1:] if digits.startswith("0") else digits
    else:
        country, national = default_country, digits.lstrip("0")
    mobile = country == "86" and bool(_MOBILE.fullmatch(national))
    # a subscriber number without area code has no E.164 form; only its tail is comparable
    canonical = f"+{country}{national}" if mobile or len(national) >= 9 else national
    return Phone(canonical, national[-8:], mobile, ext)


# --------------------------------------------------------------------------- emails

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


def normalize_email(raw: str) -> str | None:
    text = unicodedata.normalize("NFKC", raw).strip().lower()
    text = text.removeprefix("mailto:").strip("<>").strip()
    return text if _EMAIL.fullmatch(text) else None


# --------------------------------------------------------------------------- addresses

_STREET_ABBREV = {
    "street": "st",
    "str": "st",
    "strasse": "st",
    "straße": "st",
    "road": "rd",
    "avenue": "ave",
    "av": "ave",
    "boulevard": "blvd",
    "drive": "dr",
    "lane": "ln",
    "place": "pl",
    "square": "sq",
    "court": "ct",
    "highway": "hwy",
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
    "apartment": "apt",
    "suite": "ste",
    "floor": "fl",
    "building": "bldg",
    "number": "no",
    "nr": "no",
}


_ADDRESS_UNITS = frozenset(
    {"apt", "flat", "ste", "fl", "unit", "room", "rm", "bldg", "no", "dept", "floor", "level"}
)
_ZONE = re.compile(r"^.*?(?:开发区|工业园区|工业园|高新区|科技园|产业园|园区|街道|镇|乡)(?=.{4,})")
_CN_ROAD_NO = re.compile(r"^(.*?\d+号)")


def street_core(street: str) -> str:
    """The street and house number without zone, building, floor or unit detail.

    科技园科发路8号华为大厦3楼 -> 科发路8号; "158 maple rd 3rd fl" -> "158 maple rd".
    """
    if has_cjk(street):
        text = _ZONE.sub("", street)
        m = _CN_ROAD_NO.match(text)
        return m.group(1) if m else text
    words = street.split()
    for i, word in enumerate(words):
        ordinal = re.fullmatch(r"\d+(?:st|nd|rd|th)", word) is not None
        if i > 0 and (word in _ADDRESS_UNITS or ordinal or word.startswith("#")):
            return " ".join(words[:i])
    return street


@dataclass(frozen=True, slots=True)
class Address:
    province: str = ""
    city: str = ""
    district: str = ""
    street: str = ""
    postcode: str = ""

    def is_empty(self) -> bool:
        return not (self.province or self.city or self.district or self.street)


def _place(value: str, level: str) -> str:
    text = _alnum(fold(value))
    if not text:
        return ""
    if has_cjk(text):
        for place in gazetteer().lookup(text):
            if place.level == level:
                return place.name
        for suffix in ("省", "市", "区", "县"):
            if text.endswith(suffix) and len(text) > len(suffix) + 1:
                return text[: -len(suffix)]
        return text
    return " ".join(_words(fold(value)))


def _street(value: str) -> str:
    text = fold(value)
    if has_cjk(text):
        return _alnum(text)
    words = [_STREET_ABBREV.get(w, w) for w in _words(text)]
    return " ".join(words)


_ROAD_START = ("路", "街", "道", "大道", "大街", "巷", "东路", "西路", "南路", "北路", "中路", "号")


def _split_cn_line(text: str) -> tuple[str, str, str, str]:
    """Leading province / city / district of a Chinese address line, and the rest."""
    g = gazetteer()
    province = city = district = ""
    rest = text
    for _ in range(4):
        spelling, places = g.prefix(rest)
        if not spelling or rest[len(spelling) :].startswith(_ROAD_START):
            # 中山路 and 人民路 are streets named after places, not places
            break
        levels: dict[str, Place] = {}
        for place in places:
            levels.setdefault(place.level, place)
        if not province and not city and PROVINCE in levels and len(places) == 1:
            province = levels[PROVINCE].name
        elif not city and CITY in levels:
            city, province = levels[CITY].name, province or levels[CITY].province
        elif not district and DISTRICT in levels and (city or spelling != levels[DISTRICT].name):
            match = [p for p in places if p.level == DISTRICT and (not city or p.city == city)]
            if not match:
                break
            district = match[0].name
            city = city or match[0].city
            province = province or match[0].province
        else:
            break
        rest = rest[len(spelling) :]
    return province, city, district, rest


_ADDRESS_FIELDS = ("province", "city", "district", "street", "line", "postcode")


def normalize_address(raw: Mapping[str, Any] | str | None) -> Address:
    """Structured address; a free-text `line` fills whatever the structured fields lack."""
    if raw is None:
        return Address()
    if isinstance(raw, str):
        return _normalize_address(("", "", "", "", raw, ""))
    values = tuple(raw.get(k) for k in _ADDRESS_FIELDS)
    return _normalize_address(tuple(v if isinstance(v, str) else "" for v in values))


@lru_cache(maxsize=65536)
def _normalize_address(values: tuple[str, ...]) -> Address:
    fields = dict(zip(_ADDRESS_FIELDS, values, strict=True))

    def get(key: str) -> str:
        return fields[key]

    province = _place(get("province"), PROVINCE)
    city = _place(get("city"), CITY)
    district = _place(get("district"), DISTRICT)
    street_raw = get("street") or get("line")
    text = _alnum(fold(street_raw))
    if has_cjk(text):
        p, c, d, rest = _split_cn_line(text)
        consistent = all(not mine or mine == found for mine, found in ((city, c), (district, d)))
        if not consistent or not rest:
            rest = text
        else:
            province, city, district = province or p, city or c, district or d
        # structured fields often repeat themselves at the start of street
        for part in (province, city, district):
            for suffix in ("", "省", "市", "区", "县"):
                if part and rest.startswith(part + suffix) and len(rest) > len(part) + 2:
                    rest = rest[len(part + suffix) :]
                    break
        street = rest
    elif street_raw and not get("street") and "," in street_raw:
        # Western one-line form: "12 Baker St, Flat 2, NW1 6XE London"
        parts = [p.strip() for p in street_raw.split(",") if p.strip()]
        street = _street(parts[0])
        tail = [w for w in _words(fold(parts[-1])) if not any(ch.isdigit() for ch in w)]
        if not tail and len(parts) > 2:
            tail = [w for w in _words(fold(parts[-2])) if not any(ch.isdigit() for ch in w)]
        city = city or " ".join(tail)
    else:
        street = _street(street_raw)
    if city and not province:
        places = [p for p in gazetteer().lookup(city) if p.level == CITY]
        province = places[0].province if places else ""
    postcode = _alnum(fold(get("postcode")))
    return Address(province, city, district, street, postcode)


# --------------------------------------------------------------------------- identifiers

STRONG_SCHEMES = ("uscc", "national_id")
# spellings seen in exports for the same schemes
_SCHEME_ALIASES = {
    "unified_social_credit_code": "uscc",
    "social_credit_code": "uscc",
    "credit_code": "uscc",
    "usci": "uscc",
    "统一社会信用代码": "uscc",
    "信用代码": "uscc",
    "resident_id": "national_id",
    "id_card": "national_id",
    "idcard": "national_id",
    "身份证": "national_id",
    "身份证号": "national_id",
    "national_id_number": "national_id",
    "vat": "tax_id",
    "vat_id": "tax_id",
    "vat_number": "tax_id",
    "税号": "tax_id",
}


@dataclass(frozen=True, slots=True)
class IdCheck:
    scheme: str
    value: str
    status: str  # valid | invalid | unverified
    reason: str = ""


def _compact_id(value: str) -> str:
    return re.sub(r"[\s\-./]", "", unicodedata.normalize("NFKC", value)).upper()


def _reason(exc: ValidationError) -> str:
    return str(exc.message).rstrip(".").lower() if hasattr(exc, "message") else str(exc)


def _ric15_to_18(value: str) -> str:
    body = value[:6] + "19" + value[6:]
    return body + ric.calc_check_digit(body + "0")


@lru_cache(maxsize=131072)
def check_identifier(scheme: str, value: str) -> IdCheck:
    """Validate an identifier by its check character where the scheme has one.

    USCC and Chinese resident ids are `valid` or `invalid`; a tax id that is a valid USCC is a
    USCC; everything else (passports, foreign ids, system-local numbers) is `unverified`.
    """
    scheme = fold(scheme).replace(" ", "_").replace("-", "_")
    scheme = _SCHEME_ALIASES.get(scheme, scheme)
    compact = _compact_id(value)
    if not compact:
        return IdCheck(scheme, compact, "invalid", "empty")
    if scheme == "uscc" or (scheme == "tax_id" and uscc.is_valid(compact)):
        try:
            return IdCheck("uscc", uscc.validate(compact), "valid")
        except ValidationError as exc:
            return IdCheck("uscc", compact, "invalid", _reason(exc))
    # a 15/18-character value that is mostly digits is a Chinese resident id, mistyped or not
    if (
        scheme == "national_id"
        and len(compact) in (15, 18)
        and sum(c.isdigit() for c in compact) >= 14
    ):
        try:
            if len(compact) == 15:
                compact = _ric15_to_18(compact)
            return IdCheck(scheme, ric.validate(compact), "valid")
        except ValidationError as exc:
            return IdCheck(scheme, compact, "invalid", _reason(exc))
        except (KeyError, ValueError):
            # python-stdnum 2.2 raises KeyError for region codes without a county entry
            return IdCheck(scheme, compact, "invalid", "unknown region code")
    if len(compact) < 4 or len(set(compact)) == 1:
        return IdCheck(scheme, compact, "invalid", "too short or a placeholder")
    return IdCheck(scheme, compact, "unverified")


def resident_id_birth_date(value: str) -> str | None:
    try:
        return ric.get_birth_date(value).strftime("%Y%m%d")
    except (ValidationError, ValueError):
        return None


# --------------------------------------------------------------------------- dates

_DATE_YMD = re.compile(r"(\d{4})[-/.年\s]?(\d{1,2})[-/.月\s]?(\d{1,2})日?")
_DATE_DMY = re.compile(r"(\d{1,2})[-/.\s](\d{1,2})[-/.\s](\d{4})")


def normalize_date(raw: str | None) -> str | None:
    """A date as YYYYMMDD. Year-last dates are read day-first unless that is impossible."""
    if not raw:
        return None
    text = unicodedata.normalize("NFKC", raw).strip()
    m = _DATE_YMD.match(text)
    if m:
        y, mo, d = (int(g) for g in m.groups())
    else:
        m = _DATE_DMY.match(text)
        if not m:
            return None
        d, mo, y = (int(g) for g in m.groups())
        if mo > 12 >= d:
            d, mo = mo, d
    try:
        return dt.date(y, mo, d).strftime("%Y%m%d")
    except ValueError:
        return None


# --------------------------------------------------------------------------- materials

_TIMES = re.compile(r"(?<=[0-9A-Z.])\s*[X×✕✖*＊]\s*(?=[0-9.])")
_UNIT_WORDS = (("毫米", "MM"), ("厘米", "CM"), ("公斤", "KG"), ("千克", "KG"), ("克", "G"))
_DIAMETER = str.maketrans({"φ": "Φ", "ф": "Φ", "Ф": "Φ", "∅": "Φ", "ø": "Φ", "Ø": "Φ"})


# a percentage ends its token: "1%SMD电阻" is the grade 1%, not "1%smd"
_GRADE = re.compile(r"[a-z0-9.]*[0-9][a-z0-9.]*%?")


def name_grades(raw: str) -> tuple[str, ...]:
    """Numbers in a part description that name a grade or material: 304, 316L, 12.9, 5%.

    Two descriptions of the same size that carry different such numbers are different parts
    (stainless 304 / 316, a 1% / 5% resistor), however alike the words around them.
    """
    text = unicodedata.normalize("NFKC", raw).lower()
    return tuple(dict.fromkeys(t.strip(".") for t in _GRADE.findall(text) if t.strip(".")))


def normalize_code(raw: str) -> str:
    """Part number / material code: upper case, separators dropped (AB-123.01 -> AB12301)."""
    return _alnum(fold(raw)).upper()


_DIGIT_RUN = re.compile(r"[0-9]+")


def code_scheme(code: str) -> str:
    """The numbering a normalized code belongs to: its letters, each run of digits as its length.

    ERP012345 -> ERP#6, P1234567 -> P#7, RS710020000 -> RS#9, 100012345 -> #9. Two numbers of
    one scheme that differ are two items in that numbering; numbers of two schemes (an ERP's
    own number against a PDM drawing number) cannot be compared at all (decision 45).
    """
    return _DIGIT_RUN.sub(lambda m: f"#{len(m.group())}", code)


def normalize_spec(raw: str) -> str:
    """Specification: M3x8, m3*8, M3×8, Ｍ３＊８ -> M3X8; a trailing millimetre unit is implied."""
    text = to_simplified(unicodedata.normalize("NFKC", raw).translate(_DIAMETER))
    for word, unit in _UNIT_WORDS:
        text = text.replace(word, unit)
    text = text.upper()
    text = re.sub(r"\s+", "", text)
    text = _TIMES.sub("X", text)
    # millimetres are the default unit of small-part specs, so "M3X8MM" is "M3X8"
    text = re.sub(r"(?<=\d)MM(?=$|[,;/X])", "", text)
    return text.replace("，", ",").replace("；", ";")


_UOM = {
    "PCS": (
        "个",
        "只",
        "件",
        "颗",
        "粒",
        "片",
        "块",
        "支",
        "根",
        "条",
        "枚",
        "PCS",
        "PC",
        "EA",
        "EACH",
        "PIECE",
        "PIECES",
        "PCE",
        "NOS",
        "NO",
    ),
    "KG": ("千克", "公斤", "KG", "KGS", "KILOGRAM", "KILOGRAMS", "KILO"),
    "G": ("克", "G", "GR", "GRAM", "GRAMS"),
    "T": ("吨", "T", "TON", "TONS", "TONNE", "MT"),
    "M": ("米", "M", "METER", "METERS", "METRE", "METRES", "MTR"),
    "MM": ("毫米", "MM", "MILLIMETER", "MILLIMETRE"),
    "CM": ("厘米", "CM", "CENTIMETER", "CENTIMETRE"),
    "L": ("升", "L", "LITER", "LITRE", "LTR"),
    "ML": ("毫升", "ML", "MILLILITER", "MILLILITRE"),
    "SET": ("套", "SET", "SETS", "KIT"),
    "UNIT": ("台", "UNIT", "UNITS"),
    "BOX": ("箱", "盒", "BOX", "BOXES", "CTN", "CARTON", "CARTONS"),
    "PACK": ("包", "袋", "PACK", "PACKS", "PKG", "PK", "BAG", "BAGS"),
    "ROLL": ("卷", "ROLL", "ROLLS", "RL"),
    "PAIR": ("对", "双", "PAIR", "PAIRS", "PR"),
    "SHEET": ("张", "SHEET", "SHEETS", "SHT"),
    "BOTTLE": ("瓶", "BOTTLE", "BOTTLES", "BTL"),
    "M2": ("平方米", "M2", "SQM", "㎡"),
    "M3": ("立方米", "M3", "CBM", "㎥"),
}
_UOM_TABLE = {alias: canon for canon, aliases in _UOM.items() for alias in aliases}


def normalize_uom(raw: str) -> str:
    """Unit of measure: 个 / PCS / pc / EA -> PCS, 千克 / kg -> KG; unknown units kept folded."""
    text = _alnum(to_simplified(unicodedata.normalize("NFKC", raw))).upper()
    return _UOM_TABLE.get(text, text)
