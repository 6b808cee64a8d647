"""Deterministic labelled customer records with known true clusters.

Two sets:
- "cn": Chinese organizations and persons re-entered in CRM/ERP/DRP/OA with the variants that
  occur in practice (full/half width, Traditional/Simplified, legal-form and branch suffixes,
  city prefixes, typos, credit codes present/missing/mistyped, phone spellings, addresses), plus
  hard negatives: namesakes in other cities, sister companies, common person names.
- "latin": persons and companies with Latin names (nicknames, accents, typos, name order,
  honorifics), dates of birth, addresses and identity numbers without check digits, plus
  family members sharing surname, address and phone.

The generator knows nothing about the matcher; its variant lists are written independently.

    python -m bench.data.gen_customers --set cn --records 20000 --seed 7 \
        --out var/cn.jsonl --truth var/cn_truth.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import opencc
from stdnum.cn import ric, uscc

_S2T = opencc.OpenCC("s2t")


def words(text: str) -> list[str]:
    return text.split()


# (province, city, area code, region code prefix, districts, roads)
CITIES: list[tuple[str, str, str, str, list[str]]] = [
    ("广东", "深圳", "755", "4403", ["南山区", "福田区", "宝安区", "龙岗区", "罗湖区", "龙华区"]),
    ("广东", "广州", "20", "4401", ["天河区", "越秀区", "海珠区", "白云区", "番禺区"]),
    ("广东", "东莞", "769", "4419", ["长安镇", "虎门镇", "松山湖", "塘厦镇"]),
    ("广东", "佛山", "757", "4406", ["禅城区", "南海区", "顺德区"]),
    ("广东", "中山", "760", "4420", ["火炬开发区", "小榄镇"]),
    ("浙江", "杭州", "571", "3301", ["西湖区", "滨江区", "余杭区", "萧山区"]),
    ("浙江", "宁波", "574", "3302", ["鄞州区", "北仑区", "江北区"]),
    ("浙江", "温州", "577", "3303", ["鹿城区", "瓯海区", "龙湾区"]),
    ("浙江", "义乌", "579", "3307", ["稠城街道", "北苑街道"]),
    ("江苏", "苏州", "512", "3205", ["工业园区", "吴中区", "相城区", "姑苏区"]),
    ("江苏", "南京", "25", "3201", ["玄武区", "鼓楼区", "江宁区"]),
    ("江苏", "无锡", "510", "3202", ["滨湖区", "新吴区", "梁溪区"]),
    ("上海", "上海", "21", "3101", ["浦东新区", "闵行区", "徐汇区", "嘉定区", "松江区"]),
    ("北京", "北京", "10", "1101", ["朝阳区", "海淀区", "丰台区", "大兴区"]),
    ("天津", "天津", "22", "1201", ["滨海新区", "南开区", "河西区"]),
    ("山东", "青岛", "532", "3702", ["黄岛区", "崂山区", "市南区"]),
    ("山东", "济南", "531", "3701", ["历下区", "槐荫区", "历城区"]),
    ("福建", "厦门", "592", "3502", ["思明区", "湖里区", "集美区"]),
    ("福建", "泉州", "595", "3505", ["丰泽区", "鲤城区"]),
    ("四川", "成都", "28", "5101", ["武侯区", "锦江区", "成华区"]),
    ("湖北", "武汉", "27", "4201", ["江汉区", "洪山区", "武昌区"]),
    ("河南", "郑州", "371", "4101", ["金水区", "二七区", "中原区"]),
    ("湖南", "长沙", "731", "4301", ["岳麓区", "天心区", "开福区"]),
    ("安徽", "合肥", "551", "3401", ["蜀山区", "包河区", "庐阳区"]),
    ("重庆", "重庆", "23", "5001", ["渝北区", "江北区", "九龙坡区"]),
    ("陕西", "西安", "29", "6101", ["雁塔区", "未央区", "碑林区"]),
]
MUNICIPALITIES = {"北京", "上海", "天津", "重庆"}
ROADS = words(
    "科技路 人民路 建设路 解放路 中山路 工业大道 创业路 学府路 高新南一道 深南大道 "
    "滨海大道 东方路 长江路 黄河路 和平路 新华路 文化路 青年路 胜利路 光明路 振兴路 "
    "发展大道 金融街 花园路 湖滨路 环城东路 环城西路 迎宾大道 府前路 兴业路 宝安大道 "
    "龙华大道 天府大道 江南大道"
)
BUILDINGS = words("科技大厦 国际中心 创业园 工业园 商务中心 大厦 广场 产业园 金融中心 写字楼")
BRAND_CHARS = "".join(
    dict.fromkeys(
        "华强盛达信德鑫宏泰源通恒瑞丰海天新金隆兴安美博晨创佳利远联合中正东方长城光明永和"
        "振邦嘉豪威腾飞凯锐智诚铭汇富康华润久辉星月顺发万象祥云龙凤亿维尚品优卓越精工新科"
        "宝丽雅欧诺成荣昌旺福鼎力途航宇宙辰耀亮晶彩虹霖露晴朗朝阳旭洋江河湖山川峰岭松柏梅"
        "兰竹菊桃李杏橙枫杨柳榕樟楠森林本艺匠义仁礼毅志鸿鹏鹰雁燕鹤麟凰豹虎狮骏驰骐骥跃迅"
        "捷速畅泽沛溢流深广宽雄壮颖奇特良选致逸韵蓝青绿紫银铜铁钢玉珠贝琪璐瑶琳佑祺禧瑾"
    )
)
INDUSTRIES = words(
    "电子 科技 贸易 实业 电器 五金 塑胶 机械 电气 精密 包装 物流 信息技术 商贸 模具 光电 "
    "智能科技 电子科技 进出口 自动化设备 家电 照明 通讯设备 新材料 供应链管理"
)
LEGAL = ["有限公司"] * 12 + ["股份有限公司"] * 4 + ["有限责任公司"] * 2 + ["厂", "集团有限公司"]
# characters people confuse when typing Chinese (same pinyin / similar shape), both directions
CONFUSIONS = {
    "华": "化花",
    "达": "大答",
    "信": "新心",
    "德": "得",
    "鑫": "新欣",
    "宏": "洪红",
    "泰": "太",
    "源": "元原",
    "通": "同",
    "恒": "横",
    "瑞": "锐",
    "丰": "峰风",
    "海": "每",
    "金": "今",
    "隆": "龙",
    "兴": "星",
    "安": "按",
    "美": "每",
    "博": "搏",
    "创": "仓",
    "佳": "家嘉",
    "利": "力立",
    "远": "园",
    "联": "连",
    "正": "政",
    "光": "广",
    "永": "勇",
    "和": "合禾",
    "振": "震",
    "邦": "帮",
    "嘉": "佳家",
    "豪": "好",
    "威": "为伟",
    "腾": "藤",
    "飞": "菲",
    "凯": "铠",
    "锐": "瑞",
    "智": "志",
    "诚": "城成",
    "铭": "明名",
    "汇": "会",
    "富": "福",
    "康": "慷",
    "润": "闰",
    "辉": "晖",
    "星": "兴",
    "顺": "舜",
    "祥": "翔",
    "龙": "隆",
    "电": "点",
    "科": "可",
    "技": "机",
    "贸": "茂",
    "易": "义",
    "实": "时",
    "业": "叶",
    "器": "气",
    "机": "技",
    "械": "戒",
    "精": "晶",
    "密": "蜜",
    "包": "宝",
    "装": "庄",
    "物": "务",
    "流": "留",
    "模": "摸",
    "具": "俱",
    "伟": "玮炜",
    "芳": "方",
    "敏": "民",
    "静": "晶",
    "丽": "莉",
    "强": "墙",
    "军": "君",
    "勇": "永",
    "杰": "洁",
    "涛": "滔",
    "明": "铭",
    "超": "潮",
    "霞": "夏",
    "平": "萍",
    "刚": "钢",
    "辰": "晨",
    "婷": "亭",
}
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶"
    "程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾"
)
GIVEN = words(
    "伟 芳 娜 秀英 敏 静 丽 强 磊 军 洋 勇 艳 杰 娟 涛 明 超 秀兰 霞 平 刚 桂英 辉 玲 "
    "建华 建国 志强 海燕 晓东 俊 宇 浩 婷 雪 琳 鹏 华 斌 波 欣 晨 倩 颖 丹 建军 文 博 佳 "
    "凯 亮 红 梅"
)
SYSTEMS = ("crm", "erp", "drp", "oa")
SYSTEM_ID_SCHEME = {
    "crm": "crm.customer_no",
    "erp": "erp.kunnr",
    "drp": "drp.dealer_code",
    "oa": "oa.partner_id",
}

FULL_WIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}
FULL_WIDTH[" "] = "\u3000"


def to_full_width(text: str) -> str:
    return "".join(FULL_WIDTH.get(ch, ch) for ch in text)


def records_per_entity(rng: random.Random) -> int:
    return rng.choices([1, 2, 3, 4, 5, 6], weights=[38, 30, 16, 9, 5, 2])[0]


@dataclass
class Entity:
    eid: str
    kind: str
    attrs: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def make_uscc(rng: random.Random, region: str) -> str:
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    body = "91" + region + "".join(rng.choice("0123456789") for _ in range(2))
    body += "".join(rng.choice(alphabet) for _ in range(17 - len(body)))
    return body + uscc.calc_check_digit(body)


def corrupt_code(rng: random.Random, code: str, valid: Callable[[str], bool]) -> str:
    """One mistyped character: the kind of error a check character is there to catch."""
    for _ in range(50):
        pos = rng.randrange(len(code))
        ch = rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY")
        bad = code[:pos] + ch + code[pos + 1 :]
        if bad != code and not valid(bad):
            return bad
    return code[:-1]


def make_ric(rng: random.Random, region: str, born: str) -> str:
    # many county codes only exist from a given year on; fall back to Beijing Dongcheng
    for attempt in range(60):
        area = region + f"{rng.randrange(1, 30):02d}" if attempt < 59 else "110101"
        code = area + born + f"{rng.randrange(1000):03d}"
        code = code + ric.calc_check_digit(code + "0")
        try:
            if ric.is_valid(code):
                return code
        except KeyError:  # python-stdnum 2.2 raises this for prefecture-only region codes
            continue
    raise RuntimeError("no valid resident id region")


def typo_cn(rng: random.Random, text: str, protect: int = 0) -> str:
    positions = [i for i, ch in enumerate(text) if ch in CONFUSIONS and i >= protect]
    if positions and rng.random() < 0.8:
        i = rng.choice(positions)
        return text[:i] + rng.choice(CONFUSIONS[text[i]]) + text[i + 1 :]
    if len(text) > 3:
        i = rng.randrange(protect, len(text))
        return text[:i] + rng.choice(BRAND_CHARS) + text[i + 1 :]
    return text


def typo_latin(rng: random.Random, text: str) -> str:
    letters = [i for i, ch in enumerate(text) if ch.isalpha()]
    if len(letters) < 4:
        return text
    i = rng.choice(letters[1:])
    op = rng.randrange(4)
    if op == 0:
        return text[:i] + text[i + 1 :]
    if op == 1 and i + 1 < len(text) and text[i + 1].isalpha():
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if op == 2:
        return text[:i] + text[i] + text[i:]
    return text[:i] + rng.choice(string.ascii_lowercase) + text[i + 1 :]


def phone_cn_landline(rng: random.Random, area: str, number: str) -> str:
    style = rng.randrange(8)
    if style == 0:
        return f"0{area}-{number}"
    if style == 1:
        return f"+86 {area} {number[:4]} {number[4:]}"
    if style == 2:
        return f"(0{area}){number}"
    if style == 3:
        return f"0{area}{number}"
    if style == 4:
        return number  # no area code
    if style == 5:
        return f"0{area}-{number} 转{rng.randrange(100, 999)}"
    if style == 6:
        return f"0086-{area}-{number}"
    return to_full_width(f"0{area}-{number}")


def phone_cn_mobile(rng: random.Random, number: str) -> str:
    style = rng.randrange(7)
    if style == 0:
        return number
    if style == 1:
        return f"+86 {number}"
    if style == 2:
        return f"{number[:3]}-{number[3:7]}-{number[7:]}"
    if style == 3:
        return f"+86-{number[:3]} {number[3:7]} {number[7:]}"
    if style == 4:
        return f"86{number}"
    if style == 5:
        return f"{number[:3]} {number[3:7]} {number[7:]}"
    return to_full_width(number)


def mobile(rng: random.Random) -> str:
    return rng.choice(["13", "15", "18", "17", "19"]) + "".join(
        rng.choice("0123456789") for _ in range(9)
    )


def pick_some(rng: random.Random, items: list[Any], p_each: float) -> list[Any]:
    return [x for x in items if rng.random() < p_each]


# --------------------------------------------------------------------------- Chinese set


def cn_person_name(rng: random.Random) -> str:
    # the most common surnames and given names dominate, as in reality
    surname = SURNAMES[min(int(rng.expovariate(1 / 14)), len(SURNAMES) - 1)]
    given = GIVEN[min(int(rng.expovariate(1 / 16)), len(GIVEN) - 1)]
    if len(given) == 1 and rng.random() < 0.45:
        given += GIVEN[rng.randrange(len(GIVEN))][0]
    return surname + given


def cn_address(rng: random.Random, city: tuple[str, str, str, str, list[str]]) -> dict[str, Any]:
    province, name, _, _, districts = city
    street = f"{rng.choice(ROADS)}{rng.randrange(1, 999)}号"
    extra = ""
    if rng.random() < 0.5:
        extra = f"{rng.choice(BRAND_CHARS)}{rng.choice(BRAND_CHARS)}{rng.choice(BUILDINGS)}"
        extra += f"{rng.randrange(1, 30)}楼" if rng.random() < 0.6 else f"{rng.randrange(1, 20)}栋"
    return {
        "province": province,
        "city": name,
        "district": rng.choice(districts),
        "street": street,
        "extra": extra,
        "postcode": f"{rng.randrange(100000, 999999)}",
    }


def render_cn_address(rng: random.Random, addr: dict[str, Any]) -> dict[str, Any]:
    province, city = addr["province"], addr["city"]
    street = addr["street"]
    if addr["extra"] and rng.random() < 0.6:
        street += addr["extra"]
    if rng.random() < 0.04:
        street = typo_cn(rng, street)
    if rng.random() < 0.08:
        street = to_full_width(street)
    district = addr["district"] if rng.random() < 0.75 else ""
    if rng.random() < 0.55:
        prov = "" if province in MUNICIPALITIES else province + rng.choice(["省", ""])
        line = prov + city + rng.choice(["市", ""]) + district + street
        return {"type": "office", "line": line}
    out = {
        "type": rng.choice(["office", "billing", "shipping"]),
        "province": province + ("市" if province in MUNICIPALITIES else "省"),
        "city": city + "市",
        "district": district,
        "street": street,
    }
    if rng.random() < 0.5:
        out["postcode"] = addr["postcode"]
    return out


_REGISTERED: set[tuple[str, str]] = set()


def cn_org_entity(rng: random.Random, eid: str, like: Entity | None = None) -> Entity:
    city, brand, industry = CITIES[0], "", ""
    if like is not None and rng.random() < 0.6:
        # namesake in another city: same brand and trade, a different legal person
        city = rng.choice([c for c in CITIES if c[1] != like.attrs["city"][1]])
        brand, industry = like.attrs["brand"], like.attrs["industry"]
    elif like is not None:
        # sister company: same brand and city, another line of business
        city = like.attrs["city"]
        brand = like.attrs["brand"]
        industry = rng.choice([i for i in INDUSTRIES if i != like.attrs["industry"]])
    while not brand or (brand + industry, city[1]) in _REGISTERED:
        # a registration authority refuses a name already taken in its area
        city = rng.choice(CITIES)
        n = 2 if rng.random() < 0.8 else 3
        brand = "".join(rng.choice(BRAND_CHARS) for _ in range(n))
        industry = rng.choice(INDUSTRIES)
    _REGISTERED.add((brand + industry, city[1]))
    legal = rng.choice(LEGAL)
    phones = [f"{rng.randrange(2, 9)}{rng.randrange(1000000, 9999999)}"]
    contacts = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        contacts.append({"name": cn_person_name(rng), "mobile": mobile(rng)})
    domain = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randrange(4, 9)))
    return Entity(
        eid,
        "organization",
        {
            "city": city,
            "brand": brand,
            "industry": industry,
            "legal": legal,
            "uscc": make_uscc(rng, city[3] + f"{rng.randrange(0, 30):02d}"),
            "landlines": phones,
            "contacts": contacts,
            "email": f"{rng.choice(['info', 'sales', 'service', 'admin'])}@{domain}.com",
            "address": cn_address(rng, city),
            "industry_tags": [rng.choice(["制造业", "批发零售", "电子元器件", "家用电器"])],
        },
    )


def render_cn_org_name(rng: random.Random, a: dict[str, Any]) -> str:
    province, city = a["city"][0], a["city"][1]
    core = a["brand"] + a["industry"]
    if rng.random() < 0.08:
        core = typo_cn(rng, core, protect=0)
    if rng.random() < 0.05 and len(a["industry"]) > 2:
        core = a["brand"] + a["industry"][:2]  # shortened trade
    legal = a["legal"]
    r = rng.random()
    if r < 0.18:
        legal = rng.choice(["有限公司", "股份有限公司", "有限责任公司", "公司", ""])
    elif r < 0.24:
        legal = "(集团)" + ("有限公司" if rng.random() < 0.5 else "股份有限公司")
    style = rng.random()
    if style < 0.35:
        name = f"{city}市{core}{legal}"
    elif style < 0.55:
        name = f"{city}{core}{legal}"
    elif style < 0.65 and city not in MUNICIPALITIES:
        name = f"{province}省{city}市{core}{legal}"
    elif style < 0.8:
        name = f"{core}{legal}"
    else:
        paren = rng.choice(["()", "（）"])
        name = f"{core}{paren[0]}{city}{paren[1]}{legal or '有限公司'}"
    if rng.random() < 0.06:
        branch_city = rng.choice(CITIES)[1]
        name += f"{branch_city}{rng.choice(['分公司', '办事处'])}"
    if rng.random() < 0.12:
        name = _S2T.convert(name)
    if rng.random() < 0.1:
        name = to_full_width(name)
    if rng.random() < 0.04:
        name = " ".join(name) if rng.random() < 0.3 else name.replace("公司", " 公司")
    return name


def cn_person_entity(rng: random.Random, eid: str) -> Entity:
    city = rng.choice(CITIES)
    year = rng.randrange(1955, 2002)
    born = f"{year}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
    return Entity(
        eid,
        "person",
        {
            "name": cn_person_name(rng),
            "born": born,
            "ric": make_ric(rng, city[3], born),
            "mobiles": [mobile(rng) for _ in range(rng.choice([1, 1, 1, 2]))],
            "city": city,
            "address": cn_address(rng, city),
            "email": f"{''.join(rng.choice(string.ascii_lowercase) for _ in range(6))}"
            f"{rng.randrange(10, 99)}@{rng.choice(['qq.com', '163.com', '126.com', 'sina.com'])}",
        },
    )


# How often each system holds a field of a company, from how the systems are used: ERP needs the
# credit code for VAT invoices and a billing address, CRM is driven by contact persons, DRP by
# shipping addresses. (uscc, landline, contact, address, email)
ORG_PRESENCE = {
    "erp": (0.8, 0.7, 0.4, 0.9, 0.3),
    "crm": (0.35, 0.5, 0.85, 0.6, 0.5),
    "drp": (0.6, 0.7, 0.6, 0.9, 0.2),
    "oa": (0.4, 0.5, 0.5, 0.5, 0.3),
}


def render_cn_org(rng: random.Random, e: Entity, system: str, sid: str) -> dict[str, Any]:
    a = e.attrs
    p_uscc, p_land, p_contact, p_addr, p_email = ORG_PRESENCE[system]
    ids = []
    if rng.random() < p_uscc:
        if rng.random() < 0.06:
            ids.append({"scheme": "uscc", "value": corrupt_code(rng, a["uscc"], uscc.is_valid)})
        else:
            ids.append({"scheme": rng.choice(["uscc"] * 9 + ["tax_id"]), "value": a["uscc"]})
    ids.append({"scheme": SYSTEM_ID_SCHEME[system], "value": sid})
    phones = []
    if rng.random() < p_land:
        phones.append(phone_cn_landline(rng, a["city"][2], a["landlines"][0]))
    contacts = []
    if rng.random() < p_contact:
        for c in rng.sample(a["contacts"], rng.randint(1, len(a["contacts"]))):
            name = c["name"] if rng.random() > 0.1 else _S2T.convert(c["name"])
            contact = {
                "name": name,
                "salutation": rng.choice(["先生", "女士", ""]),
                "title": "采购",
            }
            if rng.random() < 0.85:
                contact["phones"] = [phone_cn_mobile(rng, c["mobile"])]
            contacts.append(contact)
    email = a["email"].upper() if rng.random() < 0.2 else a["email"]
    record: dict[str, Any] = {
        "kind": "organization",
        "name": render_cn_org_name(rng, a),
        "identifiers": ids,
        "type": rng.choice(["客户", "分销商", "代理商", "供应商"]),
        "status": rng.choice(["潜在", "成功", "试点", "典型"]),
        "frozen": rng.random() < 0.05,
        "addresses": [render_cn_address(rng, a["address"])] if rng.random() < p_addr else [],
        "phones": phones,
        "emails": [email] if rng.random() < p_email else [],
        "contacts": contacts,
        "industry": a["industry_tags"],
        "owner": rng.choice(["张三", "李四", "王五"]),
        "credit_limit": f"{rng.randrange(10, 500) * 1000}.00",
        "currency": "CNY",
        "attributes": {},
    }
    return record


# (resident id, birth date, mobile, address, email) for individual customers per system
PERSON_PRESENCE = {
    "erp": (0.6, 0.5, 0.8, 0.8, 0.2),
    "crm": (0.35, 0.6, 0.95, 0.5, 0.4),
    "drp": (0.4, 0.3, 0.9, 0.8, 0.2),
    "oa": (0.5, 0.5, 0.7, 0.4, 0.3),
}


def render_cn_person(rng: random.Random, e: Entity, system: str, sid: str) -> dict[str, Any]:
    a = e.attrs
    p_id, p_dob, p_mobile, p_addr, p_email = PERSON_PRESENCE[system]
    name = a["name"]
    if rng.random() < 0.05:
        name = typo_cn(rng, name, protect=1)
    if rng.random() < 0.1:
        name = _S2T.convert(name)
    ids = []
    if rng.random() < p_id:
        if rng.random() < 0.06:
            ids.append(
                {"scheme": "national_id", "value": corrupt_code(rng, a["ric"], ric.is_valid)}
            )
        else:
            ids.append({"scheme": "national_id", "value": a["ric"]})
    ids.append({"scheme": SYSTEM_ID_SCHEME[system], "value": sid})
    born = a["born"]
    dob = f"{born[:4]}-{born[4:6]}-{born[6:]}" if rng.random() < p_dob else None
    if dob and rng.random() < 0.04 and int(born[6:]) <= 12:
        dob = f"{born[:4]}-{born[6:]}-{born[4:6]}"
    phones = []
    if rng.random() < p_mobile:
        chosen = rng.sample(a["mobiles"], rng.randint(1, len(a["mobiles"])))
        phones = [phone_cn_mobile(rng, m) for m in chosen]
    return {
        "kind": "person",
        "name": name,
        "identifiers": ids,
        "type": "个人用户",
        "status": rng.choice(["潜在", "成功"]),
        "addresses": [render_cn_address(rng, a["address"])] if rng.random() < p_addr else [],
        "phones": phones,
        "emails": [a["email"]] if rng.random() < p_email else [],
        "birth_date": dob,
        "attributes": {},
    }


# --------------------------------------------------------------------------- Latin set

FIRST = {
    "Robert": ["Bob", "Rob", "Bobby"],
    "William": ["Bill", "Will", "Billy"],
    "Elizabeth": ["Liz", "Beth", "Eliza"],
    "Katherine": ["Kate", "Kathy", "Katie"],
    "Michael": ["Mike", "Mick"],
    "James": ["Jim", "Jimmy"],
    "Margaret": ["Maggie", "Peggy"],
    "Alexander": ["Alex", "Sasha"],
    "Jennifer": ["Jen", "Jenny"],
    "Thomas": ["Tom", "Tommy"],
    "Christopher": ["Chris"],
    "Jonathan": ["Jon", "Johnny"],
    "Patricia": ["Pat", "Trish"],
    "Francisco": ["Paco"],
    "José": [],
    "François": [],
    "Zoë": [],
    "Jürgen": [],
    "Søren": [],
    "Agnès": [],
    "Hélène": [],
    "Lucía": [],
    "Müge": [],
    "Andrés": [],
    "Émile": [],
    "Maria": [],
    "Anna": ["Anne", "Annie"],
    "David": ["Dave"],
    "Daniel": ["Dan", "Danny"],
    "Laura": [],
    "Sarah": [],
    "Peter": ["Pete"],
    "Paul": [],
    "Marco": [],
    "Giulia": [],
    "Sophie": [],
    "Lukas": [],
    "Emma": [],
    "Olivia": [],
    "Noah": [],
    "Ingrid": [],
    "Pierre": [],
    "Carlos": [],
    "Ana": [],
    "Hans": [],
    "Nikolai": ["Kolya"],
    "Oleksandr": ["Sasha"],
    "Fatima": [],
    "Mohammed": [],
    "Aisha": [],
    "Raj": [],
    "Priya": [],
    "Kenji": [],
    "Yuki": [],
}
LAST = words(
    "Smith Johnson Williams Brown Jones Miller Davis García Rodríguez Martínez Hernández "
    "López González Wilson Anderson Taylor Thomas Moore Jackson Martin Lee Thompson White "
    "Harris Clark Lewis Robinson Walker Young Allen King Wright Scott Green Baker Adams "
    "Nelson Hill Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz "
    "Hoffmann Dubois Lefèvre Moreau Laurent Simon Michel Rossi Russo Ferrari Esposito "
    "Bianchi Romano Colombo Nowak Kowalski Wiśniewski Jensen Nielsen Hansen Andersson "
    "Johansson Karlsson Novák Horváth O'Brien O'Connor McDonald Van der Berg De Vries "
    "Janssen Silva Santos Oliveira Pereira Costa Ivanov Petrov Sokolov Kumar Sharma Patel "
    "Tanaka Suzuki Takahashi Kim Park Nguyen Tran Schäfer Łukasz Søndergaard Ødegaard "
    "Núñez Peña Muñoz"
)
COMMON_FIRST = words("John Mary Michael David Maria James Robert Anna")
COMMON_LAST = words("Smith Johnson Brown García Müller Martin Rossi Kim")
CITIES_LATIN = [
    ("London", "UK", "+44", "20"),
    ("Manchester", "UK", "+44", "161"),
    ("New York", "US", "+1", "212"),
    ("Chicago", "US", "+1", "312"),
    ("Berlin", "DE", "+49", "30"),
    ("München", "DE", "+49", "89"),
    ("Paris", "FR", "+33", "1"),
    ("Lyon", "FR", "+33", "4"),
    ("Madrid", "ES", "+34", "91"),
    ("Milano", "IT", "+39", "02"),
    ("Amsterdam", "NL", "+31", "20"),
    ("Stockholm", "SE", "+46", "8"),
    ("Warszawa", "PL", "+48", "22"),
    ("São Paulo", "BR", "+55", "11"),
]
STREETS_LATIN = [
    "Baker Street",
    "High Street",
    "Main Street",
    "Oak Avenue",
    "Maple Road",
    "Church Lane",
    "Park Avenue",
    "Hauptstraße",
    "Bahnhofstraße",
    "Rue de la Paix",
    "Rue Victor Hugo",
    "Calle Mayor",
    "Via Roma",
    "Kerkstraat",
    "Storgatan",
    "Ulica Długa",
    "Avenida Paulista",
    "Elm Drive",
    "Sunset Boulevard",
    "King Street",
]
STREET_ABBR = {
    "Street": ["St", "St.", "Str"],
    "Avenue": ["Ave", "Ave.", "Av"],
    "Road": ["Rd", "Rd."],
    "Lane": ["Ln"],
    "Drive": ["Dr"],
    "Boulevard": ["Blvd"],
    "straße": ["str.", "strasse"],
}
ORG_WORDS = words(
    "Acme Global Nordic Alpine Pacific Atlas Summit Vertex Orion Helix Zenith Apex Crown "
    "Delta Falcon Phoenix Sterling Harbor Cobalt Granite Maple Quantum Silver Bright Blue "
    "River Stone"
)
ORG_TRADES = words(
    "Widgets Electronics Trading Industries Components Appliances Logistics Imports "
    "Technologies Supply Manufacturing Distribution"
)
ORG_LEGAL = ["Ltd", "Limited", "Inc.", "GmbH", "LLC", "S.A.", "B.V.", "Co., Ltd.", "Corp.", "AB"]


_EMAILS: set[str] = set()


def unique_email(rng: random.Random, first: str, last: str) -> str:
    """An address is one mailbox: namesakes get john.smith7@..., as mail providers enforce."""
    family = deaccent(last).lower().replace(" ", "").replace("'", "")
    local = f"{deaccent(first).lower()}.{family}"
    domain = rng.choice(["gmail.com", "outlook.com", "web.de", "orange.fr", "yahoo.com"])
    email = f"{local}@{domain}"
    while email in _EMAILS:
        email = f"{local}{rng.randrange(1, 999)}@{domain}"
    _EMAILS.add(email)
    return email


def ssn_like(rng: random.Random) -> str:
    return f"{rng.randrange(100, 999)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}"


def passport_like(rng: random.Random) -> str:
    return f"{rng.choice(string.ascii_uppercase)}{rng.randrange(10000000, 99999999)}"


def latin_dob(rng: random.Random) -> str:
    return f"{rng.randrange(1940, 2004)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"


def latin_person_entity(rng: random.Random, eid: str, family: Entity | None) -> Entity:
    if family is not None:
        # spouse / sibling: same surname, address and landline, different person
        a = dict(family.attrs)
        first = rng.choice([f for f in FIRST if f != a["first"]])
        return Entity(
            eid,
            "person",
            {
                **a,
                "first": first,
                "dob": latin_dob(rng),
                "id": f"{rng.randrange(100, 999)}-{rng.randrange(10, 99)}-"
                f"{rng.randrange(1000, 9999)}",
                "mobile": f"{rng.randrange(600, 799)}{rng.randrange(1000000, 9999999)}",
                "email": unique_email(rng, first, a["last"]),
            },
        )
    if rng.random() < 0.15:
        first, last = rng.choice(COMMON_FIRST), rng.choice(COMMON_LAST)
    else:
        first, last = rng.choice(list(FIRST)), rng.choice(LAST)
    city = rng.choice(CITIES_LATIN)
    return Entity(
        eid,
        "person",
        {
            "first": first,
            "middle": rng.choice(string.ascii_uppercase) if rng.random() < 0.3 else "",
            "last": last,
            "dob": latin_dob(rng),
            "id": rng.choice([ssn_like(rng), passport_like(rng)]),
            "id_scheme": rng.choice(["national_id", "passport"]),
            "city": city,
            "street": f"{rng.randrange(1, 300)} {rng.choice(STREETS_LATIN)}",
            "postcode": f"{rng.randrange(10000, 99999)}",
            "landline": f"{rng.randrange(2000000, 9999999)}",
            "mobile": f"{rng.randrange(600, 799)}{rng.randrange(1000000, 9999999)}",
            "email": unique_email(rng, first, last),
        },
    )


def render_latin_street(rng: random.Random, street: str) -> str:
    for word, abbrs in STREET_ABBR.items():
        if word in street and rng.random() < 0.5:
            street = street.replace(word, rng.choice(abbrs))
    if rng.random() < 0.3:
        street += rng.choice([", Apt 4", ", Flat 2", " 3rd floor", ", Suite 100"])
    if rng.random() < 0.04:
        street = typo_latin(rng, street)
    return street


def deaccent(text: str) -> str:
    import unicodedata

    table = {"ß": "ss", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L"}
    text = "".join(table.get(ch, ch) for ch in text)
    return "".join(
        ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)
    )


def render_latin_phone(rng: random.Random, cc: str, area: str, number: str) -> str:
    style = rng.randrange(5)
    if style == 0:
        return f"{cc} {area} {number[:3]} {number[3:]}"
    if style == 1:
        return (
            f"0{area} {number[:3]} {number[3:]}"
            if cc != "+1"
            else f"({area}) {number[:3]}-{number[3:]}"
        )
    if style == 2:
        return f"{cc}-{area}-{number}"
    if style == 3:
        return f"00{cc[1:]} {area} {number}"
    return f"{area}.{number[:3]}.{number[3:]}"


def render_latin_person(rng: random.Random, e: Entity, system: str, sid: str) -> dict[str, Any]:
    a = e.attrs
    first, last = a["first"], a["last"]
    if FIRST.get(first) and rng.random() < 0.25:
        first = rng.choice(FIRST[first])
    if rng.random() < 0.3:
        first, last = deaccent(first), deaccent(last)
    if rng.random() < 0.06:
        first = typo_latin(rng, first)
    if rng.random() < 0.06:
        last = typo_latin(rng, last)
    middle = f" {a['middle']}." if a.get("middle") and rng.random() < 0.5 else ""
    r = rng.random()
    if r < 0.12:
        name = f"{last}, {first}{middle}"
    elif r < 0.2:
        name = f"{rng.choice(['Mr.', 'Mrs.', 'Ms.', 'Dr.', 'Herr', 'Mme'])} {first}{middle} {last}"
    else:
        name = f"{first}{middle} {last}"
    if rng.random() < 0.1:
        name = name.upper()
    ids = [{"scheme": SYSTEM_ID_SCHEME[system], "value": sid}]
    r = rng.random()
    if r < 0.45:
        ids.append({"scheme": a.get("id_scheme", "national_id"), "value": a["id"]})
    elif r < 0.48:
        ids.append(
            {
                "scheme": a.get("id_scheme", "national_id"),
                "value": typo_latin(rng, a["id"] + "x")[:-1],
            }
        )
    dob = a["dob"] if rng.random() < 0.8 else None
    if dob and rng.random() < 0.06:
        y, m, d = dob.split("-")
        dob = f"{y}-{d}-{m}" if int(d) <= 12 else f"{y}-{m}-{int(d) % 28 + 1:02d}"
    city, country, cc, area = a["city"]
    phones = []
    if rng.random() < 0.5:
        phones.append(render_latin_phone(rng, cc, area, a["landline"]))
    if rng.random() < 0.5:
        phones.append(f"{cc} {a['mobile']}" if rng.random() < 0.5 else f"0{a['mobile']}")
    address = {
        "type": "home",
        "city": city if rng.random() < 0.8 else deaccent(city),
        "street": render_latin_street(rng, a["street"]),
        "postcode": a["postcode"],
    }
    if rng.random() < 0.3:
        address = {"type": "home", "line": f"{address['street']}, {a['postcode']} {city}"}
    return {
        "kind": "person",
        "name": name,
        "identifiers": ids,
        "addresses": [address] if rng.random() < 0.75 else [],
        "phones": phones,
        "emails": [a["email"]] if rng.random() < 0.4 else [],
        "birth_date": dob,
        "attributes": {"country": country},
    }


def latin_org_entity(rng: random.Random, eid: str) -> Entity:
    words = [rng.choice(ORG_WORDS)]
    if rng.random() < 0.4:
        words.append(rng.choice(ORG_WORDS))
    city = rng.choice(CITIES_LATIN)
    return Entity(
        eid,
        "organization",
        {
            "name": " ".join(words) + " " + rng.choice(ORG_TRADES),
            "legal": rng.choice(ORG_LEGAL),
            "vat": f"{city[1]}{rng.randrange(100000000, 999999999)}",
            "city": city,
            "street": f"{rng.randrange(1, 300)} {rng.choice(STREETS_LATIN)}",
            "postcode": f"{rng.randrange(10000, 99999)}",
            "landline": f"{rng.randrange(2000000, 9999999)}",
            "email": f"{rng.choice(['info', 'sales', 'orders'])}@"
            f"{words[0].lower()}{rng.randrange(10, 999)}.com",
        },
    )


def render_latin_org(rng: random.Random, e: Entity, system: str, sid: str) -> dict[str, Any]:
    a = e.attrs
    name = a["name"]
    if rng.random() < 0.07:
        name = typo_latin(rng, name)
    legal = a["legal"] if rng.random() < 0.7 else rng.choice([*ORG_LEGAL, ""])
    name = f"{name} {legal}".strip()
    if rng.random() < 0.15:
        name = name.upper()
    if rng.random() < 0.05:
        name = "The " + name
    ids = [{"scheme": SYSTEM_ID_SCHEME[system], "value": sid}]
    if rng.random() < 0.5:
        ids.append({"scheme": "tax_id", "value": a["vat"]})
    city, _country, cc, area = a["city"]
    return {
        "kind": "organization",
        "name": name,
        "identifiers": ids,
        "addresses": [
            {"type": "office", "city": city, "street": render_latin_street(rng, a["street"])}
        ]
        if rng.random() < 0.75
        else [],
        "phones": [render_latin_phone(rng, cc, area, a["landline"])] if rng.random() < 0.6 else [],
        "emails": [a["email"]] if rng.random() < 0.35 else [],
        "attributes": {},
    }


# --------------------------------------------------------------------------- driver


def generate(
    n_records: int, seed: int = 7, dataset: str = "cn"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(input rows, truth rows) with exactly n_records each, in a shuffled arrival order."""
    rng = random.Random(f"{dataset}:{seed}")
    _EMAILS.clear()
    _REGISTERED.clear()
    rows: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] = []
    entities: list[Entity] = []
    used: set[str] = set()
    while len(rows) < n_records:
        eid = f"E{len(entities):07d}"
        if dataset == "cn":
            # mostly companies (distributors, dealers, OEM buyers), some individual customers
            if rng.random() < 0.8:
                like = rng.choice(entities) if entities and rng.random() < 0.08 else None
                if like is not None and like.kind != "organization":
                    like = None
                e = cn_org_entity(rng, eid, like)
            else:
                e = cn_person_entity(rng, eid)
        else:
            if rng.random() < 0.7:
                fam = rng.choice(entities) if entities and rng.random() < 0.07 else None
                if fam is not None and fam.kind != "person":
                    fam = None
                e = latin_person_entity(rng, eid, fam)
            else:
                e = latin_org_entity(rng, eid)
        entities.append(e)
        for _ in range(records_per_entity(rng)):
            if len(rows) >= n_records:
                break
            system = rng.choice(SYSTEMS)
            # random, not sequential: neighbouring numbers must not hint at the same entity
            sid = f"{system.upper()}{rng.randrange(10**8):08d}"
            while sid in used:
                sid = f"{system.upper()}{rng.randrange(10**8):08d}"
            used.add(sid)
            if dataset == "cn":
                render = render_cn_org if e.kind == "organization" else render_cn_person
            else:
                render = render_latin_org if e.kind == "organization" else render_latin_person
            rows.append(
                {"source_system": system, "source_id": sid, "record": render(rng, e, system, sid)}
            )
            truth.append({"source_system": system, "source_id": sid, "cluster_id": e.eid})
    order = list(range(len(rows)))
    rng.shuffle(order)
    return [rows[i] for i in order], [truth[i] for i in order]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=["cn", "latin"], default="cn")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    args = parser.parse_args()
    rows, truth = generate(args.records, args.seed, args.set)
    write_jsonl(args.out, rows)
    write_jsonl(args.truth, truth)
    print(f"{len(rows)} records, {len({t['cluster_id'] for t in truth})} entities -> {args.out}")


if __name__ == "__main__":
    main()
