"""Part descriptions reduced to engineering concepts (issue 4, materials).

The same part is described with other words in each system: 内六角圆柱头螺钉 / 杯头螺丝 /
socket head cap screw, 螺母 / 螺帽 / nut, O型圈 / O形密封圈 / O-ring. A string similarity
cannot see that, and it cannot see either that 碳钢镀锌 / 碳钢镀镍 (zinc / nickel plated) are
two parts although one character apart. This module maps a description onto concepts from a
small table of general engineering vocabulary (part type, head, drive, material, finish, bearing
closure), in Chinese and English:

- `part_concepts` -> the canonical name, "§" + the sorted part/head/drive concepts and any
  word the table does not know (an unknown word keeps two names apart rather than together);
- the material/finish concepts -> one "m:" value among the profile's grades, so a disagreement
  caps the match at review like a grade number does (decision 25c).

The table is general trade vocabulary (GB/ISO fastener, bearing, seal and passive-component
names), not a list of the bench generator's words; parts whose words it does not know keep the
text comparison they had.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "CANONICAL_PREFIX",
    "PartConcepts",
    "canonical_level",
    "grade_level",
    "part_concepts",
]

CANONICAL_PREFIX = "§"
MATERIAL_PREFIX = "m:"

# (concepts, spellings). Spellings are folded (NFKC, lower case); the longest spelling found
# first wins, so 内六角 is read before 六角 and 弹簧垫圈 before 垫圈.
_PART = "part"
_QUALIFIER = "qualifier"  # head, drive, bearing type
_MATERIAL = "material"  # material, finish, bearing closure: a different one is another part

_VOCAB: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    # fasteners
    (_PART, ("screw",), ("螺钉", "螺丝", "screw", "screws", "machine screw")),
    (_PART, ("bolt",), ("螺栓", "bolt", "bolts")),
    (_PART, ("nut",), ("螺母", "螺帽", "nut", "nuts")),
    (
        _PART,
        ("washer",),
        ("垫圈", "垫片", "平垫圈", "平垫片", "平垫", "华司", "washer", "washers", "flat washer"),
    ),
    (_PART, ("spring_washer",), ("弹簧垫圈", "弹垫", "spring washer", "lock washer")),
    (_PART, ("rivet",), ("铆钉", "rivet", "rivets")),
    (_PART, ("dowel_pin",), ("圆柱销", "定位销", "dowel pin")),
    (_PART, ("stud",), ("双头螺柱", "螺柱", "stud", "stud bolt")),
    (_PART, ("threaded_insert",), ("螺纹护套", "钢丝螺套", "helicoil", "threaded insert")),
    (_QUALIFIER, ("hex_socket", "cap_head"), ("杯头", "socket head cap", "socket cap", "shcs")),
    (_QUALIFIER, ("hex_socket",), ("内六角", "hex socket", "socket head", "allen")),
    (_QUALIFIER, ("cap_head",), ("圆柱头", "cheese head", "cap head")),
    (_QUALIFIER, ("pan_head",), ("盘头", "pan head")),
    (_QUALIFIER, ("round_head",), ("圆头", "round head")),
    (_QUALIFIER, ("button_head",), ("半圆头", "button head")),
    (_QUALIFIER, ("countersunk",), ("沉头", "countersunk", "flat head", "csk")),
    (_QUALIFIER, ("hex",), ("六角", "外六角", "hex", "hexagon")),
    (_QUALIFIER, ("phillips",), ("十字", "十字槽", "phillips", "cross recessed", "cross")),
    (_QUALIFIER, ("slotted",), ("一字", "一字槽", "slotted")),
    (_QUALIFIER, ("torx",), ("梅花", "torx", "hexalobular")),
    (_QUALIFIER, ("flange",), ("法兰", "flange", "flanged")),
    (_QUALIFIER, ("lock",), ("防松", "锁紧", "nyloc", "lock")),
    (_QUALIFIER, ("self_tapping",), ("自攻", "self tapping", "self-tapping")),
    # bearings
    (_PART, ("bearing",), ("轴承", "bearing", "bearings")),
    (_QUALIFIER, ("deep_groove",), ("深沟", "deep groove")),
    (_QUALIFIER, ("ball",), ("球", "ball")),
    (_QUALIFIER, ("roller",), ("滚子", "roller")),
    (_QUALIFIER, ("angular_contact",), ("角接触", "angular contact")),
    (_QUALIFIER, ("thrust",), ("推力", "thrust")),
    (_MATERIAL, ("open",), ("开式", "open")),
    (_MATERIAL, ("zz",), ("zz", "铁封", "金属防尘盖", "metal shield", "metal shields")),
    (_MATERIAL, ("2rs",), ("2rs", "胶封", "橡胶密封", "rubber sealed", "rubber seals")),
    # seals
    (
        _PART,
        ("o_ring",),
        ("o型密封圈", "o形密封圈", "o型圈", "o形圈", "o-ring", "o ring", "oring", "o-rings"),
    ),
    (_PART, ("oil_seal",), ("油封", "oil seal", "shaft seal")),
    (_PART, ("gasket",), ("密封垫", "gasket")),
    # passive components
    (_PART, ("resistor",), ("电阻", "电阻器", "resistor", "resistors")),
    (_PART, ("capacitor",), ("电容", "电容器", "capacitor", "capacitors")),
    (_PART, ("inductor",), ("电感", "电感器", "inductor", "inductors")),
    (_PART, ("diode",), ("二极管", "diode", "diodes")),
    (_PART, ("fuse",), ("保险丝", "熔断器", "fuse", "fuses")),
    (_PART, ("connector",), ("连接器", "接插件", "connector", "connectors")),
    (_QUALIFIER, ("smd",), ("贴片", "片式", "smd", "smt", "chip")),
    (_QUALIFIER, ("ceramic",), ("陶瓷", "ceramic", "mlcc")),
    (_QUALIFIER, ("electrolytic",), ("电解", "electrolytic")),
    (_QUALIFIER, ("thick_film",), ("厚膜", "thick film")),
    (_QUALIFIER, ("metal_film",), ("金属膜", "metal film")),
    # materials and finishes
    (_MATERIAL, ("stainless",), ("不锈钢", "stainless steel", "stainless", "sus", "inox", "ss")),
    (_MATERIAL, ("carbon_steel",), ("碳钢", "碳素钢", "carbon steel")),
    (_MATERIAL, ("alloy_steel",), ("合金钢", "alloy steel")),
    (_MATERIAL, ("brass",), ("黄铜", "brass")),
    (_MATERIAL, ("copper",), ("紫铜", "纯铜", "copper")),
    (_MATERIAL, ("aluminium",), ("铝合金", "铝", "aluminium", "aluminum")),
    (_MATERIAL, ("nylon",), ("尼龙", "nylon", "polyamide")),
    (_MATERIAL, ("ptfe",), ("聚四氟乙烯", "特氟龙", "ptfe", "teflon")),
    (_MATERIAL, ("nbr",), ("丁腈橡胶", "丁腈", "nbr", "nitrile", "buna-n")),
    (_MATERIAL, ("fkm",), ("氟橡胶", "fkm", "viton")),
    (_MATERIAL, ("silicone",), ("硅橡胶", "硅胶", "silicone", "vmq")),
    (_MATERIAL, ("epdm",), ("三元乙丙", "epdm")),
    (
        _MATERIAL,
        ("zinc_plated",),
        ("镀锌", "zinc plated", "zinc-plated", "galvanized", "galvanised"),
    ),
    (_MATERIAL, ("nickel_plated",), ("镀镍", "nickel plated", "nickel-plated")),
    (_MATERIAL, ("chrome_plated",), ("镀铬", "chrome plated", "chromed")),
    (_MATERIAL, ("black_oxide",), ("发黑", "black oxide", "blackened")),
    (_MATERIAL, ("passivated",), ("钝化", "passivated")),
)
# words that say nothing once the concepts are read: grade markers and generic nouns
_FILLERS = frozenset({"级", "型", "形", "grade", "class", "steel", "钢", "and", "with", "of"})

_SPELLINGS: dict[str, tuple[str, tuple[str, ...]]] = {
    spelling: (kind, concepts) for kind, concepts, spellings in _VOCAB for spelling in spellings
}
_ASCII_WORD = re.compile(r"[a-z0-9]")


@dataclass(frozen=True, slots=True)
class PartConcepts:
    name: str  # canonical name "§<concepts and unknown words>", "" when no part word is known
    materials: str  # "m:<material/finish concepts>", "" when none


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[\s/()（）\[\],，;；_+]+", " ", text).strip()


def _spelling_at(text: str, i: int) -> str | None:
    """The longest table spelling starting at i, on word boundaries for Latin spellings."""
    best: str | None = None
    for length in range(min(len(text) - i, 24), 0, -1):
        piece = text[i : i + length]
        if piece in _SPELLINGS:
            if _ASCII_WORD.match(piece[0]):
                before = text[i - 1] if i else " "
                after = text[i + length] if i + length < len(text) else " "
                # "ss" inside "glass", "cap" inside "capacitor": Latin words match whole only
                if _ASCII_WORD.match(before) or _ASCII_WORD.match(after):
                    continue
            best = piece
            break
    return best


@lru_cache(maxsize=65536)
def part_concepts(raw: str) -> PartConcepts:
    """Concepts of a part description; numbers are left to `normalize.name_grades`."""
    text = _fold(raw)
    parts: set[str] = set()
    materials: set[str] = set()
    unknown: list[str] = []
    buf: list[str] = []

    def flush() -> None:
        word = "".join(buf).strip("-.")
        buf.clear()
        if word and word not in _FILLERS and not any(ch.isdigit() for ch in word):
            unknown.append(word)

    i = 0
    while i < len(text):
        spelling = _spelling_at(text, i)
        if spelling is not None:
            flush()
            kind, concepts = _SPELLINGS[spelling]
            (materials if kind == _MATERIAL else parts).update(concepts)
            i += len(spelling)
            continue
        ch = text[i]
        if ch == " ":
            flush()
        elif "\u3400" <= ch <= "\u9fff":
            # an unknown Chinese character is a word of its own (there are no spaces)
            flush()
            buf.append(ch)
            flush()
        else:
            buf.append(ch)
        i += 1
    flush()
    has_part = any(_SPELLINGS_KIND.get(c) == _PART for c in parts)
    name = ""
    if has_part:
        words = sorted(parts) + sorted(f"?{w}" for w in set(unknown))
        name = CANONICAL_PREFIX + " ".join(words)
    mats = MATERIAL_PREFIX + " ".join(sorted(materials)) if materials else ""
    return PartConcepts(name, mats)


_SPELLINGS_KIND: dict[str, str] = {c: kind for kind, concepts, _ in _VOCAB for c in concepts}


# A trade word that names no one standard head: 圆头 ("round head") is said for the pan head
# (盘头, GB/T 67 / 818) and for the button head (半圆头, GB/T 12 / 867); the standards
# themselves never say 圆头 alone (decision 45b). It is the less specific form of either, and
# still a different head from every other one (杯头, 沉头, 六角 ...).
_UNSPECIFIC: dict[str, frozenset[str]] = {"round_head": frozenset({"pan_head", "button_head"})}


def _read_against(own: set[str], other: set[str]) -> set[str]:
    """``own`` with an unspecific concept read as the specific one ``other`` names, if any."""
    for vague, specific in _UNSPECIFIC.items():
        if vague in own and vague not in other:
            named = specific & other
            if len(named) == 1:
                return (own - {vague}) | named
    return own


def canonical_level(a: str, b: str) -> int:
    """0 same concepts, 1 one description a less specific form of the other, 3 else.

    深沟球轴承 / 球轴承 (one qualifier left out) is close; 十字盘头 / 内六角 (two heads) is not;
    十字圆头 / 十字盘头 is close (圆头 is either a pan or a button head).
    """
    if a == b:
        return 0
    sa, sb = set(a[len(CANONICAL_PREFIX) :].split()), set(b[len(CANONICAL_PREFIX) :].split())
    sa, sb = _read_against(sa, sb), _read_against(sb, sa)
    if sa == sb:
        return 1
    shared_part = any(_SPELLINGS_KIND.get(c) == _PART for c in sa & sb)
    if shared_part and (sa <= sb or sb <= sa):
        return 1
    return 3


def grade_level(left: tuple[str, ...], right: tuple[str, ...]) -> int:
    """-1 nothing comparable, 0 agree, 1 disagree: grade numbers and materials apart.

    A description with only "304" and one with only "stainless" do not disagree: each says
    something the other does not. They disagree when both give numbers and share none, or
    both give materials and those differ.
    """
    verdicts: list[int] = []
    for is_material in (False, True):
        a = {g for g in left if g.startswith(MATERIAL_PREFIX) == is_material}
        b = {g for g in right if g.startswith(MATERIAL_PREFIX) == is_material}
        if a and b:
            verdicts.append(0 if a & b else 1)
    if not verdicts:
        return -1
    return max(verdicts)
