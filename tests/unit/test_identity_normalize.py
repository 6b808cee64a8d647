"""Normalizers: what a user typing the same thing differently expects to compare equal."""

from __future__ import annotations

import opencc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.identity.normalize import (
    check_identifier,
    fold,
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
    pinyin_initials,
    street_core,
)

HUAWEI_USCC = "914403001922038216"


@pytest.mark.parametrize(
    "raw",
    [
        "深圳市华为技术有限公司",
        "華為技術（深圳）有限公司",
        "广东省深圳市华为技术股份有限公司",
        "华为技术有限公司北京分公司",
        "华为技术(集团)有限公司",
        "深圳华为技术有限责任公司",
        "华为技术",
    ],
)
def test_org_name_variants_share_one_core(raw: str) -> None:
    assert normalize_org_name(raw).core == "华为技术"


def test_org_name_keeps_what_it_strips() -> None:
    parsed = normalize_org_name("广东省深圳市华为技术股份有限公司")
    assert parsed.regions == ("广东", "深圳")
    assert parsed.city == "深圳"
    assert parsed.legal == ("股份有限公司",)
    assert parsed.brand == "华为"


def test_place_name_that_is_the_trade_name_is_kept() -> None:
    # 金华 is a city, but 金华电子 is a name, not "electronics in Jinhua"
    assert normalize_org_name("金华电子有限公司").core == "金华电子"
    # a county name at the start of a trade name after another city is not cut
    assert normalize_org_name("佛山市威远月模具有限公司").core == "威远月模具"


def test_latin_org_legal_forms() -> None:
    assert normalize_org_name("Acme Widgets Co., Ltd.").core == "acme widgets"
    assert normalize_org_name("ACME WIDGETS LIMITED").core == "acme widgets"
    assert normalize_org_name("The Acme Widgets GmbH").core == "acme widgets"
    assert normalize_org_name("Société Générale S.A.").core == "societe generale"


def test_person_names() -> None:
    assert normalize_person_name("Smith, Bob").full == "robert smith"
    assert normalize_person_name("Dr. Robert J. Smith Jr.").full == "robert smith"
    assert normalize_person_name("José Müller-Lüdenscheidt").full == "jose mullerludenscheidt"
    assert normalize_person_name("張偉先生").full == "张伟"


@pytest.mark.parametrize(
    ("raw", "canonical", "mobile"),
    [
        ("+86 138-1234-5678", "+8613812345678", True),
        ("008613812345678", "+8613812345678", True),
        ("138 1234 5678", "+8613812345678", True),
        ("１３８１２３４５６７８", "+8613812345678", True),
        ("(0755) 8765 4321 转 801", "+8675587654321", False),
        ("0755-87654321", "+8675587654321", False),
        ("+86 755 8765 4321", "+8675587654321", False),
        ("+44 (0)20 7946 0958", "+442079460958", False),
    ],
)
def test_phone_spellings(raw: str, canonical: str, mobile: bool) -> None:
    phone = normalize_phone(raw)
    assert phone is not None
    assert (phone.canonical, phone.mobile) == (canonical, mobile)


def test_phone_without_area_code_keeps_comparable_tail() -> None:
    with_area = normalize_phone("0755-87654321")
    without = normalize_phone("87654321")
    assert with_area is not None and without is not None
    assert with_area.tail == without.tail
    assert normalize_phone("(0755) 8765 4321 ext. 12") is not None
    assert normalize_phone("0000000") is None
    assert normalize_phone("12") is None


def test_email() -> None:
    assert normalize_email(" Sales@Example.COM ") == "sales@example.com"
    assert normalize_email("mailto:<a@b.cn>") == "a@b.cn"
    assert normalize_email("not an email") is None


def test_address_line_is_split() -> None:
    a = normalize_address({"line": "广东省深圳市南山区科技园科发路８号华为大厦"})
    assert (a.province, a.city, a.district) == ("广东", "深圳", "南山")
    assert a.street == "科技园科发路8号华为大厦"
    assert street_core(a.street) == "科发路8号"
    # a road named after a city is a road
    assert normalize_address({"line": "中山路1号"}).city == ""
    b = normalize_address({"province": "重庆市", "city": "重庆市", "street": "中山路957号"})
    assert (b.province, b.city, b.street) == ("重庆", "重庆", "中山路957号")
    c = normalize_address({"line": "12 Baker Street, Flat 2, NW1 6XE London"})
    assert (c.street, c.city) == ("12 baker st", "london")


def test_credit_code_and_resident_id_check_characters() -> None:
    good = check_identifier("uscc", HUAWEI_USCC)
    assert good.status == "valid"
    bad = check_identifier("uscc", HUAWEI_USCC[:-1] + "7")
    assert bad.status == "invalid" and "check" in bad.reason
    assert check_identifier("tax_id", HUAWEI_USCC).scheme == "uscc"
    assert check_identifier("national_id", "11010519491231002X").status == "valid"
    assert check_identifier("national_id", "110105194912310021").status == "invalid"
    # the old 15-digit resident id is upgraded to its 18-digit form
    assert check_identifier("national_id", "110105491231002").value == "11010519491231002X"
    assert check_identifier("passport", "E1234 5678").status == "unverified"


def test_dates() -> None:
    assert normalize_date("1985-03-12") == "19850312"
    assert normalize_date("1985年3月12日") == "19850312"
    assert normalize_date("12.03.1985") == "19850312"
    assert normalize_date("03/25/1985") == "19850325"
    assert normalize_date("1985-02-30") is None


@pytest.mark.parametrize("raw", ["M3×8", "m3*8", "M3x8", "Ｍ３＊８", "M3 X 8 mm", "m3x8MM"])
def test_specifications(raw: str) -> None:
    assert normalize_spec(raw) == "M3X8"


def test_spec_that_differs_stays_different() -> None:
    assert normalize_spec("M3x10") != normalize_spec("M3x8")


@pytest.mark.parametrize(
    ("raw", "unit"),
    [("个", "PCS"), ("PCS", "PCS"), ("pc", "PCS"), ("EA", "PCS"), ("千克", "KG"), ("kg", "KG")],
)
def test_units_of_measure(raw: str, unit: str) -> None:
    assert normalize_uom(raw) == unit


def test_part_numbers() -> None:
    assert normalize_code("scr-m3x8.01") == normalize_code("SCR M3X8 01") == "SCRM3X801"


def test_pinyin_initials_survive_homophone_typos() -> None:
    assert pinyin_initials("华为技术") == pinyin_initials("化为技术") == "hwjs"


# --------------------------------------------------------------------------- properties

_T2S = opencc.OpenCC("s2t")
# characters of company names, addresses and persons, in both scripts after s2t
_HANZI = "华为技术有限公司深圳市广东省电子科技贸易集团分厂北京上海张伟李娜东方红路号楼"
_TEXT = st.text(alphabet=_HANZI + "abcXYZ0123456789 -()（）·.,", min_size=0, max_size=24)
_ASCII = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=24)


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if 0x21 <= ord(c) <= 0x7E else c for c in text)


@settings(max_examples=150, deadline=None)
@given(_TEXT)
def test_normalizers_are_idempotent(text: str) -> None:
    assert fold(fold(text)) == fold(text)
    assert normalize_name_text(normalize_name_text(text)) == normalize_name_text(text)
    assert normalize_spec(normalize_spec(text)) == normalize_spec(text)
    assert normalize_code(normalize_code(text)) == normalize_code(text)
    core = normalize_org_name(text).core
    assert normalize_org_name(core).core == core
    person = normalize_person_name(text).full
    assert normalize_person_name(person).full == person


@settings(max_examples=150, deadline=None)
@given(_ASCII)
def test_width_does_not_matter(text: str) -> None:
    wide = _full_width(text)
    assert fold(wide) == fold(text)
    assert normalize_spec(wide) == normalize_spec(text)
    assert normalize_code(wide) == normalize_code(text)
    assert normalize_org_name(wide) == normalize_org_name(text)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=_HANZI, min_size=1, max_size=12))
def test_script_does_not_matter(text: str) -> None:
    traditional = _T2S.convert(text)
    assert fold(traditional) == fold(text)
    assert normalize_org_name(traditional) == normalize_org_name(text)


def test_identifier_scheme_spellings_and_numeric_values() -> None:
    from flows.identity.profile import customer_profile

    profile = customer_profile(
        {
            "name": "华为技术有限公司",
            "identifiers": [{"scheme": "统一社会信用代码", "value": HUAWEI_USCC}],
            "phones": [13812345678],
        }
    )
    assert profile.strong_ids == (("uscc", HUAWEI_USCC),)
    assert profile.phones == ("m:12345678",)
