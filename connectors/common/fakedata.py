"""A deterministic little world of companies, people and parts, and the ways staff mistype them.

Every simulator builds the same ``World`` from the same seed, so that "the same customer
re-entered in another system" really is the same company (same credit code, same street) seen
through a different clerk's keyboard: city prefix or not, 有限公司 or 股份有限公司, full-width
（集团） or half-width (集团), Traditional script from a Hong Kong colleague, a homophone typo,
a phone number with or without +86 and dashes. Identity resolution in the hub has to see
through exactly these variations, so the generator produces them on purpose.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache

from stdnum.cn import ric, uscc

# city -> (province, districts, postcode, telephone area code, GB/T 2260 region code)
CITIES: dict[str, tuple[str, tuple[str, ...], str, str, str]] = {
    "深圳": ("广东省", ("南山区", "宝安区", "龙岗区", "福田区"), "518000", "0755", "440300"),
    "广州": ("广东省", ("天河区", "番禺区", "白云区"), "510000", "020", "440100"),
    "东莞": ("广东省", ("长安镇", "虎门镇", "松山湖"), "523000", "0769", "441900"),
    "佛山": ("广东省", ("顺德区", "南海区"), "528000", "0757", "440600"),
    "宁波": ("浙江省", ("鄞州区", "慈溪市", "余姚市"), "315000", "0574", "330200"),
    "温州": ("浙江省", ("鹿城区", "乐清市", "瑞安市"), "325000", "0577", "330300"),
    "苏州": ("江苏省", ("工业园区", "吴中区", "昆山市"), "215000", "0512", "320500"),
    "杭州": ("浙江省", ("滨江区", "余杭区", "萧山区"), "310000", "0571", "330100"),
    "上海": ("上海市", ("浦东新区", "闵行区", "嘉定区"), "200000", "021", "310115"),
    "北京": ("北京市", ("朝阳区", "海淀区", "大兴区"), "100000", "010", "110105"),
    "成都": ("四川省", ("高新区", "武侯区", "双流区"), "610000", "028", "510100"),
    "武汉": ("湖北省", ("江汉区", "洪山区", "东西湖区"), "430000", "027", "420100"),
    "郑州": ("河南省", ("金水区", "二七区"), "450000", "0371", "410100"),
    "西安": ("陕西省", ("雁塔区", "未央区"), "710000", "029", "610100"),
    "青岛": ("山东省", ("市南区", "黄岛区", "城阳区"), "266000", "0532", "370200"),
    "厦门": ("福建省", ("思明区", "湖里区"), "361000", "0592", "350200"),
    "南京": ("江苏省", ("江宁区", "鼓楼区"), "210000", "025", "320100"),
    "长沙": ("湖南省", ("岳麓区", "雨花区"), "410000", "0731", "430100"),
    "重庆": ("重庆市", ("渝北区", "九龙坡区"), "400000", "023", "500112"),
    "沈阳": ("辽宁省", ("和平区", "浑南区"), "110000", "024", "210100"),
}
CORES = [
    "华丰",
    "宏达",
    "永盛",
    "鑫源",
    "恒泰",
    "德力",
    "新科",
    "美嘉",
    "锦华",
    "泰和",
    "盛世",
    "海天",
    "荣昌",
    "天润",
    "佳和",
    "瑞丰",
    "汇通",
    "百川",
    "众诚",
    "利民",
    "启明",
    "万隆",
    "顺发",
    "兴旺",
    "博远",
    "嘉禾",
    "康达",
    "富源",
    "龙腾",
    "中联",
    "金帆",
    "长城",
    "宝丽",
    "奥达",
    "凯信",
    "TK",
    "3H",
    "ABK",
]
TRADES = [
    "电器",
    "电子",
    "科技",
    "贸易",
    "商贸",
    "五金",
    "精密",
    "塑胶",
    "实业",
    "家电",
    "进出口",
    "电器销售",
]
FORMS = ("有限公司", "股份有限公司", "有限责任公司", "(集团)有限公司")
BRANCHES = ("深圳分公司", "华南分公司", "销售分公司", "北京分公司")
STREETS = [
    "科技园路",
    "创业路",
    "工业大道",
    "人民路",
    "解放路",
    "建设路",
    "中山路",
    "滨海大道",
    "金融街",
    "新华路",
]
HOMOPHONES = dict(
    zip(
        "华丰宏达盛源恒泰德利新嘉锦和荣润汇通众诚民明万隆发兴旺博远富龙腾中联帆城丽凯信伟芳敏静强军洋勇杰涛",
        "花峰鸿大胜元衡太得力欣佳金禾容闰会同重成明名方龙法星望搏园福隆藤钟连凡成莉恺新玮方民静墙君阳永洁滔",
        strict=True,
    )
)
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵万钱严武戴莫孔汤"
)
GIVEN_M = [
    "伟",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "杰",
    "涛",
    "明",
    "超",
    "刚",
    "平",
    "建华",
    "志强",
    "晓明",
    "国平",
    "文博",
    "浩然",
    "子轩",
    "宇航",
]
GIVEN_F = [
    "芳",
    "娜",
    "敏",
    "静",
    "丽",
    "艳",
    "娟",
    "霞",
    "秀英",
    "桂英",
    "海燕",
    "丽华",
    "婷",
    "雪梅",
    "欣怡",
    "梓涵",
    "诗琪",
]
MOBILE_PREFIXES = [
    "138",
    "139",
    "135",
    "136",
    "137",
    "150",
    "151",
    "152",
    "158",
    "159",
    "182",
    "187",
    "188",
    "130",
    "131",
    "132",
    "155",
    "156",
    "185",
    "186",
    "133",
    "153",
    "180",
    "189",
    "177",
    "199",
]
TITLES = ("总经理", "采购经理", "采购主管", "财务经理", "销售总监", "老板", "店长", "业务员")
INDUSTRIES = (
    ("制造业", "家用电器"),
    ("制造业", "电子元器件"),
    ("批发和零售业", "家电批发"),
    ("批发和零售业", "电商零售"),
    ("批发和零售业", "百货零售"),
    ("服务业", "售后维修"),
)


def full_width(text: str) -> str:
    """ASCII letters, digits and brackets as an IME in full-width mode types them."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0x21 <= code <= 0x7E:
            out.append(chr(code + 0xFEE0))
        elif ch == " ":
            out.append("\u3000")
        else:
            out.append(ch)
    return "".join(out)


@lru_cache(maxsize=1)
def _s2t() -> object:
    from opencc import OpenCC

    return OpenCC("s2t")


def traditional(text: str) -> str:
    return str(_s2t().convert(text))  # type: ignore[attr-defined]


def make_uscc(rng: random.Random, region: str) -> str:
    """A Unified Social Credit Code with both check characters right (GB 32100, GB 11714)."""
    body = "".join(rng.choice("0123456789") for _ in range(8))
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    check = 11 - sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11
    org = body + ("X" if check == 10 else "0" if check == 11 else str(check))
    first17 = "91" + region + org
    return first17 + uscc.calc_check_digit(first17)


def make_resident_id(rng: random.Random, region: str, birth: date, male: bool) -> str:
    seq = rng.randrange(0, 50) * 2 + (1 if male else 0)
    first17 = f"{region}{birth:%Y%m%d}{rng.randrange(1, 10)}{seq:02d}"[:17]
    # stdnum computes the check over number[:-1]: hand it a placeholder in 18th place.
    return first17 + ric.calc_check_digit(first17 + "0")


def mobile(rng: random.Random) -> str:
    return rng.choice(MOBILE_PREFIXES) + "".join(rng.choice("0123456789") for _ in range(8))


def phone_variant(rng: random.Random, number: str, area: str = "") -> str:
    """The same number as different people type it."""
    if len(number) == 11 and number.startswith("1"):
        return rng.choice(
            (
                number,
                f"{number[:3]}-{number[3:7]}-{number[7:]}",
                f"+86 {number[:3]} {number[3:7]} {number[7:]}",
                f"+86{number}",
                f"0086-{number}",
                f"{number[:3]} {number[3:7]} {number[7:]}",
            )
        )
    return rng.choice(
        (
            f"{area}-{number}",
            f"({area}){number}",
            f"+86-{area.lstrip('0')}-{number}",
            f"{area} {number[:4]} {number[4:]}",
            number,
        )
    )


def typo(rng: random.Random, text: str) -> str:
    spots = [i for i, ch in enumerate(text) if ch in HOMOPHONES]
    if not spots:
        return text
    i = rng.choice(spots)
    return text[:i] + HOMOPHONES[text[i]] + text[i + 1 :]


@dataclass(frozen=True)
class Person:
    surname: str
    given: str
    male: bool
    mobile: str
    birth: date
    resident_id: str

    @property
    def name(self) -> str:
        return self.surname + self.given

    def salutation(self) -> str:
        return f"{self.surname}{'先生' if self.male else '女士'}"


@dataclass(frozen=True)
class Company:
    index: int
    city: str
    core: str
    trade: str
    form: str
    branch: str | None
    uscc: str
    district: str
    street: str
    landline: str
    contacts: tuple[Person, ...]
    industry: tuple[str, str]
    headcount: int
    credit_limit: Decimal
    founded: date

    @property
    def province(self) -> str:
        return CITIES[self.city][0]

    @property
    def postcode(self) -> str:
        return CITIES[self.city][2]

    @property
    def area_code(self) -> str:
        return CITIES[self.city][3]

    @property
    def legal_name(self) -> str:
        """The name on the business licence."""
        return f"{self.city}市{self.core}{self.trade}{self.form}{self.branch or ''}"

    def name_variant(self, rng: random.Random) -> str:
        """The legal name as some clerk typed it."""
        prefix = rng.choice((f"{self.city}市", self.city, "", ""))
        form = self.form
        roll = rng.random()
        if roll < 0.2:
            form = ""
        elif roll < 0.3 and form == "有限公司":
            form = "有限责任公司"
        elif roll < 0.4 and "(集团)" in form:
            form = form.replace("(集团)", "（集团）")
        elif roll < 0.45 and "(集团)" in form:
            form = form.replace("(集团)", "")
        name = f"{prefix}{self.core}{self.trade}{form}"
        if self.branch and rng.random() < 0.7:
            name += self.branch
        roll = rng.random()
        if roll < 0.1:
            name = traditional(name)
        elif roll < 0.2:
            name = typo(rng, name)
        elif roll < 0.25:
            name = name.replace(self.core, f"{self.core} ", 1)
        elif roll < 0.3:
            name = full_width(name)
        return name

    @property
    def address(self) -> str:
        return f"{self.province}{self.city}市{self.district}{self.street}"


@dataclass(frozen=True)
class Part:
    drawing_no: str
    revision: str
    name: str
    spec: str
    unit: str  # canonical unit code
    category: str  # FG finished, SF semi-finished, RM-MT metal, RM-PL plastic, RM-EL electronic
    material_no: str  # the ERP material number this part gets
    std_price: Decimal
    children: tuple[tuple[str, Decimal], ...] = ()  # (drawing_no, quantity per parent)


@dataclass
class World:
    seed: int
    companies: list[Company] = field(default_factory=list)
    parts: dict[str, Part] = field(default_factory=dict)
    products: list[str] = field(default_factory=list)

    def company(self, rng: random.Random) -> Company:
        return rng.choice(self.companies)

    def assemblies(self) -> list[Part]:
        return [p for p in self.parts.values() if p.children]

    def leaves(self) -> list[Part]:
        return [p for p in self.parts.values() if not p.children]

    def tree(self, drawing_no: str, level: int = 1) -> list[tuple[int, Part, Decimal]]:
        """Depth-first (level, child, quantity) under a part: a PDM multi-level BOM."""
        out: list[tuple[int, Part, Decimal]] = []
        for child_no, qty in self.parts[drawing_no].children:
            child = self.parts[child_no]
            out.append((level, child, qty))
            out.extend(self.tree(child_no, level + 1))
        return out


# County codes of birth places (户籍) that exist since 1983: an ID names the county as it was
# when the person was born, and counties created later would make the number invalid.
HUKOU_REGIONS = [
    "440305",
    "330203",
    "330302",
    "420103",
    "410105",
    "610113",
    "370202",
    "350203",
    "320104",
    "430104",
    "210102",
    "330106",
    "440304",
    "110105",
]


def _person(rng: random.Random) -> Person:
    male = rng.random() < 0.6
    birth = date(1983, 1, 1) + timedelta(days=rng.randrange(0, 17 * 365))
    region = rng.choice(HUKOU_REGIONS)
    return Person(
        surname=rng.choice(SURNAMES),
        given=rng.choice(GIVEN_M if male else GIVEN_F),
        male=male,
        mobile=mobile(rng),
        birth=birth,
        resident_id=make_resident_id(rng, region, birth, male),
    )


def person(rng: random.Random) -> Person:
    return _person(rng)


def company(rng: random.Random, index: int) -> Company:
    city = rng.choice(list(CITIES))
    _, districts, _, _, region = CITIES[city]
    form = rng.choices(FORMS, weights=(6, 2, 1, 1))[0]
    return Company(
        index=index,
        city=city,
        core=rng.choice(CORES),
        trade=rng.choice(TRADES),
        form=form,
        branch=rng.choice(BRANCHES) if rng.random() < 0.1 else None,
        uscc=make_uscc(rng, region),
        district=rng.choice(districts),
        street=f"{rng.choice(STREETS)}{rng.randrange(1, 999)}号",
        landline=str(rng.randrange(20000000, 89999999)),
        contacts=tuple(_person(rng) for _ in range(rng.randrange(1, 4))),
        industry=rng.choice(INDUSTRIES),
        headcount=rng.choice((8, 25, 60, 150, 400, 1200)),
        credit_limit=Decimal(rng.choice((50, 100, 200, 500, 1200, 3000))) * 1000,
        founded=date(1995, 1, 1) + timedelta(days=rng.randrange(0, 25 * 365)),
    )


# Product structure of an electric-shaver maker: a product, its assemblies, their parts.
_PRODUCTS = (
    ("RS-7100", "旋转式三刀头电动剃须刀", "三刀头 USB-C 快充 IPX7"),
    ("RS-5200", "往复式电动剃须刀", "三刀网 干湿两用"),
    ("RS-3300", "旅行款电动剃须刀", "双刀头 便携 AA电池"),
    ("RS-9900", "旗舰款电动剃须刀", "五刀头 自清洁底座"),
)
_ASSEMBLIES = (
    ("10", "刀头组件", "不锈钢刀网 自磨刀片"),
    ("20", "电机组件", "直流电机 7000rpm"),
    ("30", "机身组件", "ABS+TPU 包胶"),
    ("40", "电源组件", "锂电池 3.7V"),
)
_LEAVES = {
    "10": (
        ("外刀网", "SUS420 0.05mm", "PCE", "RM-MT"),
        ("内刀片", "SUS440A", "PCE", "RM-MT"),
        ("刀头支架", "POM 黑色", "PCE", "RM-PL"),
        ("压簧", "SWP-B 0.3mm", "PCE", "RM-MT"),
    ),
    "20": (
        ("直流电机", "RS-280 3.7V", "PCE", "RM-EL"),
        ("齿轮", "POM m0.5 z24", "PCE", "RM-PL"),
        ("电机支架", "PA66+GF30", "PCE", "RM-PL"),
    ),
    "30": (
        ("前壳", "ABS 哑光黑", "PCE", "RM-PL"),
        ("后壳", "ABS+TPU", "PCE", "RM-PL"),
        ("开关按键", "硅胶 邵氏50A", "PCE", "RM-PL"),
        ("自攻螺丝", "PA2x6 镀镍", "PCE", "RM-MT"),
    ),
    "40": (
        ("锂电池", "18650 3.7V 1400mAh", "PCE", "RM-EL"),
        ("主控板", "PCBA FR-4 1.0mm", "PCE", "RM-EL"),
        ("充电线", "USB-C 1m 白色", "PCE", "RM-EL"),
        ("导线", "UL1007 26AWG", "MTR", "RM-EL"),
    ),
}


def _parts(rng: random.Random) -> tuple[dict[str, Part], list[str]]:
    parts: dict[str, Part] = {}
    products: list[str] = []
    serial = {"FG": 3000000000, "SF": 2000000000, "RM": 1000000000}
    shared_screw: str | None = None
    for model, pname, pspec in _PRODUCTS:
        assembly_refs: list[tuple[str, Decimal]] = []
        base = model.replace("-", "")
        for code, aname, aspec in _ASSEMBLIES:
            child_refs: list[tuple[str, Decimal]] = []
            for i, (lname, lspec, unit, cat) in enumerate(_LEAVES[code], start=1):
                if lname == "自攻螺丝" and shared_screw is not None:
                    # One screw across every model: the same part in many BOMs, as in life.
                    child_refs.append((shared_screw, Decimal(rng.choice((2, 4, 6)))))
                    continue
                dno = f"{base}-{code}-{i:03d}"
                serial["RM"] += rng.randrange(1, 40)
                qty = Decimal("0.35") if unit == "MTR" else Decimal(rng.choice((1, 1, 1, 2, 3)))
                parts[dno] = Part(
                    dno,
                    rng.choice("AAB"),
                    lname,
                    lspec,
                    unit,
                    cat,
                    f"{serial['RM']:010d}",
                    Decimal(rng.randrange(5, 4000)) / 100,
                )
                if lname == "自攻螺丝":
                    shared_screw = dno
                child_refs.append((dno, qty))
            dno = f"{base}-{code}-000"
            serial["SF"] += rng.randrange(1, 40)
            parts[dno] = Part(
                dno,
                rng.choice("AB"),
                aname,
                aspec,
                "PCE",
                "SF",
                f"{serial['SF']:010d}",
                Decimal(rng.randrange(500, 9000)) / 100,
                tuple(child_refs),
            )
            assembly_refs.append((dno, Decimal(1)))
        dno = f"{base}-00-000"
        serial["FG"] += rng.randrange(1, 40)
        parts[dno] = Part(
            dno,
            rng.choice("ABC"),
            f"{model} {pname}",
            pspec,
            "SET",
            "FG",
            f"{serial['FG']:010d}",
            Decimal(rng.randrange(9900, 69900)) / 100,
            tuple(assembly_refs),
        )
        products.append(dno)
    return parts, products


@lru_cache(maxsize=8)
def world(seed: int, companies: int = 60) -> World:
    """The world for a seed. Cached: five simulators in one process share one instance."""
    rng = random.Random(f"world:{seed}")
    parts, products = _parts(rng)
    return World(
        seed=seed,
        companies=[company(rng, i) for i in range(companies)],
        parts=parts,
        products=products,
    )


def pick_company(
    rng: random.Random, w: World, system: str, duplicates: float, private_no: int
) -> Company:
    """A company for a new record: with probability ``duplicates`` one the other systems also
    know (the shared world), otherwise one only this system has ever seen."""
    if rng.random() < duplicates:
        return rng.choice(w.companies)
    return company(random.Random(f"{w.seed}:{system}:{private_no}"), 10_000 + private_no)


def salutation(p: Person, title: str | None) -> str:
    if title and ("总" in title or title == "老板"):
        return f"{p.surname}总"
    if title and "经理" in title:
        return f"{p.surname}经理"
    return p.salutation()


def person_name_variant(rng: random.Random, p: Person) -> str:
    roll = rng.random()
    if roll < 0.1:
        return traditional(p.name)
    if roll < 0.2:
        return f"{p.surname} {p.given}"
    if roll < 0.25:
        return typo(rng, p.name)
    return p.name


@dataclass
class Clock:
    """Simulated business time: deterministic, moving forward a few minutes per record."""

    now: datetime
    rng: random.Random

    def tick(self, max_minutes: int = 20) -> datetime:
        self.now += timedelta(minutes=self.rng.randrange(1, max_minutes + 1))
        # Offices work 08:30-18:00; jump to the next morning outside those hours.
        if self.now.hour >= 18:
            self.now = (self.now + timedelta(days=1)).replace(hour=8, minute=30)
        return self.now


def clock(rng: random.Random) -> Clock:
    from connectors.common.parse import CN_TZ

    return Clock(datetime(2026, 11, 2, 8, 30, tzinfo=CN_TZ), rng)
