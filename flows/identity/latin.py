"""Comparison levels and keys for Latin-script person names and street addresses.

What a record-linkage practitioner would use on Western data (Splink's NameComparison /
ForenameSurnameComparison, Census Soundex): names compared word by word with Jaro-Winkler at
Splink's thresholds (0.92 / 0.88), forename and surname allowed to be swapped, a Soundex key per
word for blocking, and house numbers compared apart from the street name. Nothing here knows
which generator produced the bench data; the thresholds are Splink's defaults, not fitted.

Inputs are already normalized (`normalize_person_name(...).full`: lower case, accents folded,
honorifics and middle names dropped, "given family").
"""

from __future__ import annotations

import re
from functools import lru_cache

from rapidfuzz.distance import JaroWinkler

__all__ = ["house_numbers_differ", "person_name_level", "soundex"]

# Splink NameComparison / ForenameSurnameComparison default Jaro-Winkler thresholds
JW_CLOSE, JW_SIMILAR = 0.92, 0.88

_SOUNDEX_CODES = {
    **dict.fromkeys("bfpv", "1"),
    **dict.fromkeys("cgjkqsxz", "2"),
    **dict.fromkeys("dt", "3"),
    "l": "4",
    **dict.fromkeys("mn", "5"),
    "r": "6",
}


@lru_cache(maxsize=65536)
def soundex(word: str) -> str:
    """American Soundex (as the US Census uses it): first letter + three digits, or "".

    h and w do not separate letters of one code; vowels do. Non-letters are ignored, so the
    key of "o'brien" is the key of "obrien".
    """
    letters = [ch for ch in word.lower() if "a" <= ch <= "z"]
    if not letters:
        return ""
    first = letters[0]
    out: list[str] = []
    last = _SOUNDEX_CODES.get(first, "")
    for ch in letters[1:]:
        code = _SOUNDEX_CODES.get(ch, "")
        if code and code != last:
            out.append(code)
            if len(out) == 3:
                break
        if ch not in "hw":
            last = code
    return (first.upper() + "".join(out)).ljust(4, "0")


def _jw(a: str, b: str) -> float:
    return float(JaroWinkler.similarity(a, b))


def _prefix_of(a: str, b: str) -> bool:
    """One given name written as an initial or a short form of the other (j / jon / jonathan)."""
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    return bool(short) and long_.startswith(short)


def _pair_level(given: tuple[str, str], family: tuple[str, str]) -> int:
    """Level of one orientation: 1 close, 2 similar, 3 else (exact is the caller's)."""
    fam = 1.0 if family[0] == family[1] else _jw(*family)
    giv = 1.0 if given[0] == given[1] else _jw(*given)
    if fam == 1.0 and giv == 1.0:
        return 1  # both words agree, order swapped (the caller handles the same order)
    if min(fam, giv) >= JW_CLOSE and max(fam, giv) == 1.0:
        # one word exact, the other a keystroke away: "aisha thompson" / "aigha thompson"
        return 1
    if min(fam, giv) >= JW_SIMILAR:
        return 2
    if fam >= JW_CLOSE and _prefix_of(*given):
        # "j satnos" / "jonathan santos", "chris smith" / "christopher smith". Not Soundex of
        # the given name: john / jane / joanne share J500, and relatives share the surname.
        return 2
    return 3


def person_name_level(a: str, b: str) -> int:
    """0 exact, 1 close, 2 similar, 3 else for two normalized two-word Latin person names.

    Both word orders are tried: systems disagree on which word is the family name, and a
    record without a comma gives no hint. Names of other shapes (one word, CJK) are 3 here;
    the caller keeps its own levels for them and takes the better one.
    """
    if a == b:
        return 0
    ta, tb = a.split(), b.split()
    if len(ta) != 2 or len(tb) != 2:
        return 3
    same = _pair_level((ta[0], tb[0]), (ta[1], tb[1]))
    swapped = _pair_level((ta[0], tb[1]), (ta[1], tb[0]))
    return min(same, swapped)


_HOUSE_NUMBER = re.compile(r"\b\d+[a-z]?\b")


def house_numbers_differ(a: str, b: str) -> bool:
    """Both Latin street lines carry a house number and no number of one is on the other.

    "37 church ln" and "87 church ln" are one keystroke apart but two addresses: a string
    similarity must not call them close. Unit numbers after the house number (flat 2) may be
    missing on one side, so only the first number of each line is compared.
    """
    na, nb = _HOUSE_NUMBER.findall(a), _HOUSE_NUMBER.findall(b)
    return bool(na) and bool(nb) and na[0] != nb[0]
