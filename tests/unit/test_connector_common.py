"""Shared connector machinery: parsers, value maps, the sink's classification, fake data."""

from __future__ import annotations

import itertools
import random
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.cn import ric, uscc

from connectors.common import fakedata as fd
from connectors.common.errors import NativeRecordError
from connectors.common.parse import (
    CN_TZ,
    format_amount,
    is_mobile,
    parse_amount,
    parse_date,
    parse_datetime,
    parse_percent,
)
from connectors.common.sink import Outcome, Sink
from connectors.common.valuemaps import ValueMapConfigError, load_value_maps
from connectors.crm.connector import VALUEMAPS as CRM_MAPS
from connectors.registry import build_connectors


# ---------------------------------------------------------------------------- parsers
@pytest.mark.parametrize(
    "text",
    ["2026/11/24", "20261124", "2026-11-24", "2026.11.24", "2026年11月24日", "２０２６/11/24"],
)
def test_dates_in_every_native_spelling(text: str) -> None:
    assert parse_date(text, "d") == date(2026, 11, 24)


@pytest.mark.parametrize("text", ["2026/02/30", "24/11/2026", "", "tomorrow"])
def test_bad_dates_name_the_field(text: str) -> None:
    with pytest.raises(NativeRecordError) as err:
        parse_date(text, "order_date")
    assert err.value.field == "order_date"


def test_naive_native_times_are_china_time() -> None:
    got = parse_datetime("2026/11/24 09:30", "t")
    assert got == datetime(2026, 11, 24, 9, 30, tzinfo=CN_TZ)
    assert got.utcoffset() is not None and got.utcoffset().total_seconds() == 8 * 3600  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1,200,000.00", Decimal("1200000.00")),
        ("１，２００．５", Decimal("1200.5")),
        ("¥ 35.80", Decimal("35.80")),
        ("0", Decimal(0)),
        (12.5, Decimal("12.5")),
    ],
)
def test_amounts(text: Any, value: Decimal) -> None:
    assert parse_amount(text, "a") == value


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("1,20,000", "must be a number"),
        ("12.345", "at most 2 decimal places"),
        ("-1", "must not be negative"),
        ("1e5", "must be a number"),
        ("NaN", "must be a number"),
    ],
)
def test_bad_amounts(text: str, rule: str) -> None:
    with pytest.raises(NativeRecordError) as err:
        parse_amount(text, "KLIMK", places=2)
    assert (err.value.field, err.value.value) == ("KLIMK", text)
    assert rule in err.value.rule


@given(st.decimals(min_value=0, max_value=10**12, places=2, allow_nan=False))
def test_amount_format_parses_back(value: Decimal) -> None:
    assert parse_amount(format_amount(value), "a") == value


def test_percent_and_mobile() -> None:
    assert parse_percent("3.5%", "p") == Decimal("0.035")
    assert is_mobile("+86 138 1234 5678") and is_mobile("0086-13812345678")
    assert not is_mobile("0755-86012345")


# ---------------------------------------------------------------------------- value maps
def test_override_file_changes_adds_and_removes_codes(tmp_path: Path) -> None:
    override = tmp_path / "crm.yaml"
    override.write_text(
        'stage:\n  "04": interested\n  "03": null\nlevel:\n  "S": vip\n', encoding="utf-8"
    )
    maps = load_value_maps("crm", CRM_MAPS, override)
    assert maps.to_canonical("stage", "04", "stage") == "interested"
    assert maps.to_canonical("stage", "01", "stage") == "prospect"
    with pytest.raises(NativeRecordError) as err:
        maps.to_canonical("stage", "03", "stage")
    assert "unknown code in value map crm.stage (known: 01, 02, 04)" in err.value.rule
    # Several codes for one value: the first wins on the way back unless _reverse says.
    assert maps.to_native("level", "vip", "level") == "V"


def test_connector_uses_operator_override(tmp_path: Path) -> None:
    override = tmp_path / "crm.yaml"
    override.write_text('status:\n  "5": reference\n', encoding="utf-8")
    crm = build_connectors({"crm": override})["crm"]
    assert crm.value_maps.to_canonical("status", "5", "status") == "reference"
    assert build_connectors()["crm"].value_maps["status"].codes.get("5") is None


def test_unquoted_codes_are_refused_at_load(tmp_path: Path) -> None:
    override = tmp_path / "crm.yaml"
    override.write_text("stage:\n  01: prospect\n", encoding="utf-8")
    with pytest.raises(ValueMapConfigError, match="must be a quoted string"):
        load_value_maps("crm", CRM_MAPS, override)


def test_inconsistent_reverse_is_refused(tmp_path: Path) -> None:
    override = tmp_path / "crm.yaml"
    override.write_text('unit:\n  _reverse:\n    PCS: "套"\n', encoding="utf-8")
    with pytest.raises(ValueMapConfigError, match="does not map back"):
        load_value_maps("crm", CRM_MAPS, override)


def test_unknown_canonical_value_has_no_native_code() -> None:
    maps = build_connectors()["drp"].value_maps
    with pytest.raises(NativeRecordError) as err:
        maps.to_native("unit", "KG", "uom")
    assert err.value.value == "KG" and "no native code in value map drp.unit" in err.value.rule


# ---------------------------------------------------------------------------- sink
CUSTOMER = {
    "kind": "organization",
    "name": "深圳市华丰电器有限公司",
    "identifiers": [{"scheme": "uscc", "value": "91440300MA5F000001"}],
    "type": "customer",
    "status": "successful",
    "phones": ["0755-86012345"],
}


async def deliver(
    handler: Any, *, local_id: str | None = None, body: dict[str, Any] | None = None
) -> tuple[Any, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)  # type: ignore[no-any-return]

    connector = build_connectors()["erp"]
    client = httpx.AsyncClient(transport=httpx.MockTransport(record), base_url="http://erp")
    async with Sink(connector, "http://erp", client=client, timeout=1) as sink:
        result = await sink.deliver("customer", body or CUSTOMER, "key-1", local_id=local_id)
    await client.aclose()
    return result, seen


async def test_sink_delivered_returns_local_id_and_sends_native_with_key() -> None:
    result, seen = await deliver(lambda r: httpx.Response(201, json={"local_id": "0000500001"}))
    assert result.outcome is Outcome.delivered and result.ok
    assert result.local_id == "0000500001"
    [request] = seen
    assert request.method == "POST" and request.url.path == "/api/customers"
    assert request.headers["Idempotency-Key"] == "key-1"
    sent = request.read().decode()
    assert '"NAME1":"深圳市华丰电器有限公司"' in sent.replace(" ", "")
    assert '"STCEG":"91440300MA5F000001"' in sent.replace(" ", "")


async def test_sink_update_goes_to_the_known_local_id() -> None:
    result, seen = await deliver(lambda r: httpx.Response(200, json={}), local_id="0000100007")
    assert result.outcome is Outcome.delivered and result.local_id == "0000100007"
    assert seen[0].method == "PUT" and seen[0].url.path == "/api/customers/0000100007"


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (409, Outcome.duplicate),
        (400, Outcome.permanent),
        (422, Outcome.permanent),
        (404, Outcome.permanent),
        (408, Outcome.transient),
        (429, Outcome.transient),
        (500, Outcome.transient),
        (503, Outcome.transient),
    ],
)
async def test_sink_classifies_http_status(status: int, outcome: Outcome) -> None:
    result, _ = await deliver(
        lambda r: httpx.Response(status, json={"local_id": "0000100009", "error": "x"})
    )
    assert result.outcome is outcome
    assert result.status_code == status
    if outcome is Outcome.duplicate:
        assert result.ok and result.local_id == "0000100009"


async def test_sink_timeouts_and_connection_errors_are_transient() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    for handler in (timeout, refused):
        result, _ = await deliver(handler)
        assert result.outcome is Outcome.transient and not result.ok


async def test_sink_record_the_system_cannot_hold_is_permanent_without_a_call() -> None:
    body = dict(CUSTOMER, name="很" * 90)  # NAME1 + NAME2 hold 80 characters
    result, seen = await deliver(lambda r: httpx.Response(201), body=body)
    assert result.outcome is Outcome.permanent and not seen
    assert "at most 80 characters" in result.reason


# ---------------------------------------------------------------------------- fake data
def test_world_is_deterministic_and_codes_are_valid() -> None:
    a, b = fd.world(42), fd.world(42)
    assert a is b or a.companies == b.companies
    assert all(uscc.is_valid(c.uscc) for c in a.companies)
    assert all(ric.is_valid(p.resident_id) for c in a.companies for p in c.contacts)
    assert fd.world(43).companies[0] != a.companies[0]


def test_name_variants_are_the_real_ones() -> None:
    rng = random.Random(3)
    company = fd.world(1).companies[0]
    names = {company.name_variant(rng) for _ in range(400)}
    assert any(fd.traditional(company.core) in n for n in names)  # Traditional script
    assert any(n.startswith(company.city) and not n.startswith(f"{company.city}市") for n in names)
    assert any(company.core in n and company.city not in n for n in names)  # no city prefix
    # Full-width Latin letters, digits and brackets, across the companies of a world.
    widths = {c.name_variant(rng) for c in fd.world(1).companies for _ in range(30)}
    assert any("\uff10" <= ch <= "\uff5a" for n in widths for ch in n)
    assert any("（集团）" in n for n in widths) and any("(集团)" in n for n in widths)
    phones = {fd.phone_variant(rng, "13812345678") for _ in range(100)}
    assert {"13812345678", "138-1234-5678", "+8613812345678"} <= phones


def test_traffic_is_deterministic_per_seed() -> None:
    from connectors.crm.simulator import generate

    first = list(itertools.islice(generate(5, 0.3), 50))
    again = list(itertools.islice(generate(5, 0.3), 50))
    other = list(itertools.islice(generate(6, 0.3), 50))
    assert first == again and first != other


def credit_codes(system: str, entity: str, field: str, duplicates: float) -> set[str]:
    import importlib

    sim = importlib.import_module(f"connectors.{system}.simulator")
    records = itertools.islice(sim.generate(9, duplicates), 600)
    return {r[field] for e, r in records if e == entity and r.get(field)}


def test_duplicates_rate_controls_re_entry_across_systems() -> None:
    none = credit_codes("crm", "customer", "credit_code", 0.0) & credit_codes(
        "erp", "customer", "STCEG", 0.0
    )
    many = credit_codes("crm", "customer", "credit_code", 0.8) & credit_codes(
        "erp", "customer", "STCEG", 0.8
    )
    assert not none
    assert len(many) >= 10


def test_requisitions_cover_every_authority_band() -> None:
    from connectors.erp.simulator import generate

    connector = build_connectors()["erp"]
    amounts = [
        connector.to_canonical("requisition", r).amount  # type: ignore[attr-defined]
        for e, r in itertools.islice(generate(2, 0.2), 1500)
        if e == "requisition"
    ]
    assert any(a < 1000 for a in amounts)
    assert any(1000 <= a <= 5000 for a in amounts)
    assert any(a > 5000 for a in amounts)


# The sink's own HTTP session (no client given: how the hub delivers) against a real server.
async def test_sink_over_its_own_session_classifies_real_answers() -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    answers = [
        web.json_response({"local_id": "0000500001"}, status=201),
        web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "7"}),
        web.json_response({"error": "bad plant"}, status=422),
    ]
    seen: list[tuple[str, str, str, bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(
            (request.method, request.path, request.headers["Idempotency-Key"], await request.read())
        )
        return answers.pop(0)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with TestServer(app) as server:
        base = str(server.make_url("/"))
        async with Sink(build_connectors()["erp"], base, timeout=5) as sink:
            created = await sink.deliver("customer", CUSTOMER, "key-1")
            busy = await sink.deliver("customer", CUSTOMER, "key-2", local_id="0000500001")
            refused = await sink.deliver("customer", CUSTOMER, "key-3")
    assert created.outcome is Outcome.delivered and created.local_id == "0000500001"
    assert busy.outcome is Outcome.transient and busy.retry_after == 7.0
    assert busy.status_code == 503 and "busy" in busy.reason
    assert refused.outcome is Outcome.permanent and "bad plant" in refused.reason
    assert [(m, p, k) for m, p, k, _ in seen] == [
        ("POST", "/api/customers", "key-1"),
        ("PUT", "/api/customers/0000500001", "key-2"),
        ("POST", "/api/customers", "key-3"),
    ]
    assert '"NAME1":"深圳市华丰电器有限公司"' in seen[0][3].decode().replace(" ", "")


async def test_sink_over_its_own_session_counts_a_closed_port_and_a_slow_answer_transient() -> None:
    import asyncio

    from aiohttp import web
    from aiohttp.test_utils import TestServer

    erp = build_connectors()["erp"]

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.json_response({"local_id": "1"}, status=201)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", slow)
    server = TestServer(app)
    async with server, Sink(erp, str(server.make_url("/")), timeout=0.2) as sink:
        late = await sink.deliver("customer", CUSTOMER, "key-1")
    port = server.port
    async with Sink(erp, f"http://127.0.0.1:{port}", timeout=1) as sink:
        down = await sink.deliver("customer", CUSTOMER, "key-2")
    assert late.outcome is Outcome.transient and late.reason.startswith("timeout after 0.2s")
    assert down.outcome is Outcome.transient and down.reason.startswith("connection failed")


async def test_sink_goes_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    seen: list[tuple[str, str]] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append((request.host, request.path))
        return web.json_response({"local_id": "0000500001"}, status=201)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    erp = build_connectors()["erp"]
    async with TestServer(app) as server:
        for name in ("http_proxy", "https_proxy", "no_proxy", "HTTPS_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", str(server.make_url("/")))
        monkeypatch.setenv("NO_PROXY", "erp.local")
        async with Sink(erp, "http://erp.corp", timeout=5) as sink:
            via_proxy = await sink.deliver("customer", CUSTOMER, "key-1")
        async with Sink(erp, "http://erp.local:9", timeout=5) as sink:
            direct = await sink.deliver("customer", CUSTOMER, "key-2")
    assert via_proxy.outcome is Outcome.delivered
    assert seen == [("erp.corp", "/api/customers")]
    # NO_PROXY: straight to a host that does not resolve, so the call fails
    assert direct.outcome is Outcome.transient and direct.reason.startswith("connection failed")
