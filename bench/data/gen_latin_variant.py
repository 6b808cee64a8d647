"""A second, independent generator of labelled Latin-script customers (issue 4, overfitting check).

Written apart from gen_customers.py with other name pools, other error processes and other
hard negatives, so a matcher tuned to that generator shows it here:
- typos from a QWERTY neighbour map, phonetic misspellings (ph/f, ck/k, y/ie, double letters
  dropped) and letter drops, in given name, family name, street and e-mail alike;
- nicknames from a list of its own (some absent from any table in flows/identity);
- dates of birth as DD/MM/YYYY, DD.MM.YYYY, ISO, and US MM/DD/YYYY for US records (ambiguous
  when the day is <= 12: read wrongly by a day-first parser, as happens in practice);
- identity numbers with and without separators, street lines with the number after the street
  (Hauptstr. 12) or a unit before it (Flat 3, 12 High St), UK-style postcodes;
- hard negatives: father and son with the same name at one address (Sr./Jr., other birth
  dates), spouses sharing surname, address and landline, and common-name namesakes.

    python -m bench.data.gen_latin_variant --records 10000 --seed 3 --out v.jsonl --truth t.jsonl
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

from bench.data.gen_customers import write_jsonl

GIVEN: dict[str, list[str]] = {
    "Elizabeth": ["Betsy", "Liz", "Eliza"],
    "Margaret": ["Maggie", "Greta"],
    "Katharina": ["Kathi", "Katja"],
    "Alexander": ["Alex", "Xander"],
    "Giuseppe": ["Beppe", "Peppe"],
    "Francesca": ["Cesca", "Franci"],
    "Wojciech": ["Wojtek"],
    "Aleksandr": ["Sasha", "Shura"],
    "William": ["Bill", "Will"],
    "Patrick": ["Paddy", "Pat"],
    "Siobhan": [],
    "Niamh": [],
    "Eoin": [],
    "Ciaran": [],
    "Joao": [],
    "Goncalo": [],
    "Ines": [],
    "Beatriz": ["Bia"],
    "Sebastian": ["Basti", "Seb"],
    "Johanna": ["Hanna"],
    "Maximilian": ["Max"],
    "Friederike": ["Rike"],
    "Mateusz": [],
    "Zofia": ["Zosia"],
    "Henrik": [],
    "Astrid": [],
    "Lars": [],
    "Pieter": ["Piet"],
    "Anouk": [],
    "Thijs": [],
    "Chiara": [],
    "Lorenzo": ["Enzo"],
    "Camille": [],
    "Theo": [],
    "Manon": [],
    "Dmitri": ["Dima"],
    "Olga": ["Olya"],
    "Stephen": ["Steve"],
    "Philip": ["Phil"],
    "Catherine": ["Cathy", "Kate"],
    "Samuel": ["Sam"],
    "Rebecca": ["Becky"],
}
FAMILY = [
    "Murphy",
    "Kelly",
    "O'Sullivan",
    "Walsh",
    "Byrne",
    "Ryan",
    "McCarthy",
    "Doyle",
    "Gallagher",
    "Fitzgerald",
    "Ferreira",
    "Rodrigues",
    "Almeida",
    "Carvalho",
    "Gomes",
    "Sousa",
    "Lopes",
    "Marques",
    "Krüger",
    "Zimmermann",
    "Braun",
    "Hartmann",
    "Lange",
    "Werner",
    "Krause",
    "Lehmann",
    "Köhler",
    "Kowalczyk",
    "Wójcik",
    "Kamiński",
    "Lewandowski",
    "Zieliński",
    "Szymański",
    "Lindqvist",
    "Berg",
    "Holm",
    "Nyström",
    "Lund",
    "Dahl",
    "Eriksen",
    "Haugen",
    "Bakker",
    "Visser",
    "Smit",
    "Meijer",
    "De",
    "Jong",
    "Mulder",
    "Bos",
    "Greco",
    "Bruno",
    "Gallo",
    "Conti",
    "Marino",
    "Ricci",
    "Lombardi",
    "Moretti",
    "Girard",
    "Bonnet",
    "Dupont",
    "Lambert",
    "Fontaine",
    "Rousseau",
    "Blanc",
    "Smirnov",
    "Kuznetsov",
    "Popov",
    "Volkov",
    "Fedorov",
    "Hughes",
    "Price",
    "Bennett",
    "Morgan",
    "Cooper",
    "Reed",
    "Bailey",
    "Bell",
    "Ward",
    "Cox",
]
COMMON = [("Stephen", "Murphy"), ("Margaret", "Kelly"), ("Alexander", "Berg"), ("Chiara", "Greco")]
CITIES = [
    ("Dublin", "IE", "+353", "1"),
    ("Cork", "IE", "+353", "21"),
    ("Lisboa", "PT", "+351", "21"),
    ("Porto", "PT", "+351", "22"),
    ("Hamburg", "DE", "+49", "40"),
    ("Köln", "DE", "+49", "221"),
    ("Kraków", "PL", "+48", "12"),
    ("Göteborg", "SE", "+46", "31"),
    ("Oslo", "NO", "+47", "2"),
    ("Rotterdam", "NL", "+31", "10"),
    ("Torino", "IT", "+39", "011"),
    ("Marseille", "FR", "+33", "4"),
    ("Boston", "US", "+1", "617"),
    ("Leeds", "UK", "+44", "113"),
]
STREETS = [
    ("Harbour", "Road"),
    ("Station", "Road"),
    ("Mill", "Lane"),
    ("Church", "Street"),
    ("Queen", "Street"),
    ("Elm", "Avenue"),
    ("Linden", "straße"),
    ("Kirch", "weg"),
    ("Rua", "Augusta"),
    ("Via", "Garibaldi"),
    ("Storgata", ""),
    ("Dorpsstraat", ""),
    ("Rue", "Nationale"),
    ("Ulica", "Floriańska"),
    ("Beacon", "Street"),
]
ORG_NAMES = [
    "Northwind",
    "Bluefin",
    "Ironbark",
    "Redwood",
    "Lighthouse",
    "Keystone",
    "Meridian",
    "Solstice",
    "Evergreen",
    "Tidewater",
    "Copperfield",
    "Brightwater",
    "Oakridge",
    "Riverbend",
    "Highland",
    "Westgate",
    "Eastbrook",
    "Silverline",
    "Foxglove",
    "Kingfisher",
    "Blackthorn",
    "Larkspur",
    "Windmill",
    "Sandstone",
    "Driftwood",
]
ORG_PLACES = [
    "Atlantic",
    "Baltic",
    "Celtic",
    "Alpine",
    "Danube",
    "Iberian",
    "Nordic",
    "Adriatic",
    "Rhine",
]
ORG_TRADES = [
    ("Manufacturing", "Mfg"),
    ("International", "Intl"),
    ("Engineering", "Eng"),
    ("Laboratories", "Labs"),
    ("Associates", "Assoc"),
    ("Brothers", "Bros"),
    ("Distributors", "Dist"),
    ("Foods", "Foods"),
]
ORG_LEGAL = ["Pty Ltd", "S.r.l.", "Oy", "Lda", "Sp. z o.o.", "GmbH & Co. KG", "plc", "LLC", "SAS"]
NEIGHBOURS = {
    "a": "qsz",
    "b": "vn",
    "c": "xv",
    "d": "sf",
    "e": "wr",
    "f": "dg",
    "g": "fh",
    "h": "gj",
    "i": "uo",
    "j": "hk",
    "k": "jl",
    "l": "k",
    "m": "n",
    "n": "bm",
    "o": "ip",
    "p": "o",
    "r": "et",
    "s": "ad",
    "t": "ry",
    "u": "yi",
    "v": "cb",
    "w": "qe",
    "y": "tu",
    "z": "x",
}
PHONETIC = [
    ("ph", "f"),
    ("ck", "k"),
    ("ie", "y"),
    ("ll", "l"),
    ("nn", "n"),
    ("tt", "t"),
    ("ss", "s"),
]
SYSTEMS = ("crm", "erp", "shop", "helpdesk")


def typo(rng: random.Random, text: str) -> str:
    """One error of a kind people make: neighbouring key, phonetic spelling, or a dropped letter."""
    lower = text.lower()
    r = rng.random()
    if r < 0.35:
        found = [(a, b) for a, b in PHONETIC if a in lower[1:]]
        if found:
            a, b = rng.choice(found)
            i = lower.index(a, 1)
            return text[:i] + b + text[i + len(a) :]
    positions = [i for i, ch in enumerate(text) if ch.lower() in NEIGHBOURS and i > 0]
    if not positions:
        return text
    i = rng.choice(positions)
    if r < 0.7:
        ch = rng.choice(NEIGHBOURS[text[i].lower()])
        return text[:i] + (ch.upper() if text[i].isupper() else ch) + text[i + 1 :]
    return text[:i] + text[i + 1 :]


def plain(text: str) -> str:
    import unicodedata

    text = text.replace("ß", "ss").replace("ø", "o").replace("ł", "l")
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def dob_text(rng: random.Random, dob: tuple[int, int, int], country: str) -> str | None:
    y, m, d = dob
    r = rng.random()
    if r < 0.15:
        return None
    if country == "US" and r < 0.7:
        return f"{m:02d}/{d:02d}/{y}"  # US order; a day-first reader swaps day and month
    if r < 0.45:
        return f"{d:02d}/{m:02d}/{y}"
    if r < 0.7:
        return f"{d}.{m}.{y}"
    if r < 0.95:
        return f"{y}-{m:02d}-{d:02d}"
    # one digit mistyped
    d2 = d + 1 if d < 28 else d - 1
    return f"{y}-{m:02d}-{d2:02d}"


def street_text(rng: random.Random, number: int, street: tuple[str, str], unit: str) -> str:
    name, kind = street
    if kind in ("straße", "weg") or name in ("Storgata", "Dorpsstraat"):
        base = f"{name}{kind} {number}"
        if kind == "straße" and rng.random() < 0.4:
            base = f"{name}str. {number}"
    elif name in ("Rua", "Via", "Rue", "Ulica"):
        base = f"{name} {kind}, {number}"
    else:
        abbrev = {"Road": "Rd", "Street": "St", "Lane": "Ln", "Avenue": "Ave"}
        word = abbrev[kind] if rng.random() < 0.4 else kind
        base = f"{number} {name} {word}"
    if unit and rng.random() < 0.5:
        base = f"{unit}, {base}" if rng.random() < 0.5 else f"{base}, {unit}"
    if rng.random() < 0.05:
        base = typo(rng, base)
    return base


def phone_text(rng: random.Random, cc: str, area: str, number: str) -> str:
    r = rng.random()
    if r < 0.3:
        return f"{cc} {area} {number}"
    if r < 0.6:
        return f"{cc}{area}{number}"
    if r < 0.8:
        return f"0{area.lstrip('0')}-{number}"
    return f"({cc}) {area} {number[:3]} {number[3:]}"


def person(rng: random.Random, eid: str, base: dict[str, Any] | None, how: str) -> dict[str, Any]:
    if base is not None:
        p = dict(base)
        y = p["dob"][0]
        if how == "junior":
            p["dob"] = (y + rng.randrange(22, 35), rng.randrange(1, 13), rng.randrange(1, 29))
        else:  # spouse
            p["given"] = rng.choice([g for g in GIVEN if g != p["given"]])
            p["dob"] = (y + rng.randrange(-6, 7), rng.randrange(1, 13), rng.randrange(1, 29))
        p["mobile"] = str(rng.randrange(300000000, 899999999))
        p["idno"] = "".join(rng.choice("0123456789") for _ in range(9))
        p["eid"] = eid
        p["suffix"] = "Jr." if how == "junior" else ""
        return p
    if rng.random() < 0.1:
        given, family = rng.choice(COMMON)
    else:
        given, family = rng.choice(list(GIVEN)), rng.choice(FAMILY)
    city = rng.choice(CITIES)
    return {
        "eid": eid,
        "given": given,
        "family": family,
        "dob": (rng.randrange(1945, 2005), rng.randrange(1, 13), rng.randrange(1, 29)),
        "city": city,
        "street": (rng.randrange(1, 250), rng.choice(STREETS)),
        "unit": rng.choice(["", "", f"Flat {rng.randrange(1, 30)}", f"Apt {rng.randrange(1, 9)}"]),
        "postcode": f"{rng.choice('ABCDEFGHKLMN')}{rng.randrange(1, 30)} {rng.randrange(1, 9)}"
        f"{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}",
        "landline": str(rng.randrange(2000000, 9999999)),
        "mobile": str(rng.randrange(300000000, 899999999)),
        "idno": "".join(rng.choice("0123456789") for _ in range(9)),
        "suffix": "",
    }


_MAILBOXES: set[str] = set()


def mailbox(rng: random.Random, p: dict[str, Any]) -> None:
    """One mailbox per person, as providers enforce: namesakes get jsmith2, jsmith7..."""
    base = f"{plain(p['given'])[0]}{plain(p['family'])}".lower().replace(" ", "").replace("'", "")
    domain = rng.choice(["mail.com", "proton.me", "gmx.net", "icloud.com"])
    local = base
    while f"{local}@{domain}" in _MAILBOXES:
        local = f"{base}{rng.randrange(2, 99)}"
    _MAILBOXES.add(f"{local}@{domain}")
    p["email"], p["domain"] = local, domain


def render_person(rng: random.Random, p: dict[str, Any], system: str, sid: str) -> dict[str, Any]:
    given, family = p["given"], p["family"]
    if GIVEN.get(given) and rng.random() < 0.2:
        given = rng.choice(GIVEN[given])
    if rng.random() < 0.25:
        given, family = plain(given), plain(family)
    if rng.random() < 0.08:
        given = typo(rng, given)
    if rng.random() < 0.08:
        family = typo(rng, family)
    suffix = f" {p['suffix']}" if p["suffix"] and rng.random() < 0.5 else ""
    r = rng.random()
    if r < 0.1:
        name = f"{family.upper()} {given}"  # family name first, marked only by case
    elif r < 0.2:
        name = f"{family}, {given}{suffix}"
    elif r < 0.25:
        name = f"{given[0]}. {family}{suffix}"
    else:
        name = f"{given} {family}{suffix}"
    city, country, cc, area = p["city"]
    ids: list[dict[str, str]] = [{"scheme": f"{system}.customer_id", "value": sid}]
    if rng.random() < 0.4:
        raw = p["idno"]
        value = f"{raw[:3]} {raw[3:6]} {raw[6:]}" if rng.random() < 0.5 else raw
        ids.append({"scheme": "national_id", "value": value})
    phones = []
    if rng.random() < 0.45:
        phones.append(phone_text(rng, cc, area, p["landline"]))
    if rng.random() < 0.45:
        phones.append(f"{cc} {p['mobile']}")
    emails = []
    if rng.random() < 0.35:
        local = p["email"]
        if rng.random() < 0.05:
            local = typo(rng, local)
        emails.append(f"{local}@{p['domain']}")
    address: dict[str, Any] = {
        "type": "home",
        "street": street_text(rng, p["street"][0], p["street"][1], p["unit"]),
        "city": city if rng.random() < 0.7 else plain(city),
        "postcode": p["postcode"],
    }
    return {
        "kind": "person",
        "name": name,
        "identifiers": ids,
        "addresses": [address] if rng.random() < 0.7 else [],
        "phones": phones,
        "emails": emails,
        "birth_date": dob_text(rng, p["dob"], country),
    }


def org(rng: random.Random, eid: str) -> dict[str, Any]:
    city = rng.choice(CITIES)
    trade = rng.choice(ORG_TRADES)
    return {
        "eid": eid,
        # two words: namesakes exist (as in any register) without every name being shared
        "name": f"{rng.choice(ORG_NAMES)} {rng.choice(ORG_PLACES)}"
        if rng.random() < 0.8
        else rng.choice(ORG_NAMES),
        "trade": trade,
        "legal": rng.choice(ORG_LEGAL),
        "city": city,
        "street": (rng.randrange(1, 250), rng.choice(STREETS)),
        "landline": str(rng.randrange(2000000, 9999999)),
        "vat": f"{city[1]}{rng.randrange(10**8, 10**9)}",
    }


def render_org(rng: random.Random, o: dict[str, Any], system: str, sid: str) -> dict[str, Any]:
    name = o["name"]
    if rng.random() < 0.08:
        name = typo(rng, name)
    full, short = o["trade"]
    trade = short if rng.random() < 0.4 else full
    legal = o["legal"] if rng.random() < 0.75 else ""
    text = f"{name} {trade} {legal}".strip()
    if rng.random() < 0.1:
        text = text.upper()
    city, _country, cc, area = o["city"]
    ids: list[dict[str, str]] = [{"scheme": f"{system}.customer_id", "value": sid}]
    if rng.random() < 0.45:
        ids.append({"scheme": "vat_id", "value": o["vat"]})
    return {
        "kind": "organization",
        "name": text,
        "identifiers": ids,
        "addresses": [
            {"type": "office", "street": street_text(rng, *o["street"], ""), "city": city}
        ]
        if rng.random() < 0.7
        else [],
        "phones": [phone_text(rng, cc, area, o["landline"])] if rng.random() < 0.55 else [],
        "emails": [],
    }


def generate(n_records: int, seed: int = 3) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(input rows, truth rows), n_records each, shuffled."""
    rng = random.Random(f"latin-variant:{seed}")
    _MAILBOXES.clear()
    rows: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] = []
    people: list[dict[str, Any]] = []
    n = 0
    while len(rows) < n_records:
        eid = f"V{n:07d}"
        n += 1
        entity: dict[str, Any]
        if rng.random() < 0.72:
            r = rng.random()
            if people and r < 0.04:
                entity = person(rng, eid, rng.choice(people), "junior")
            elif people and r < 0.10:
                entity = person(rng, eid, rng.choice(people), "spouse")
            else:
                entity = person(rng, eid, None, "")
            mailbox(rng, entity)
            people.append(entity)
            render = render_person
        else:
            entity = org(rng, eid)
            render = render_org
        copies = min(1 + int(rng.expovariate(0.8)), 7)
        for _ in range(copies):
            if len(rows) >= n_records:
                break
            system = rng.choice(SYSTEMS)
            sid = f"{system[:2].upper()}-{len(rows):06d}-{rng.randrange(100):02d}"
            rows.append(
                {
                    "source_system": system,
                    "source_id": sid,
                    "record": render(rng, entity, system, sid),
                }
            )
            truth.append({"source_system": system, "source_id": sid, "cluster_id": eid})
    order = list(range(len(rows)))
    rng.shuffle(order)
    return [rows[i] for i in order], [truth[i] for i in order]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    args = parser.parse_args()
    rows, truth = generate(args.records, args.seed)
    write_jsonl(args.out, rows)
    write_jsonl(args.truth, truth)
    print(f"{len(rows)} records, {len({t['cluster_id'] for t in truth})} entities -> {args.out}")


if __name__ == "__main__":
    main()
