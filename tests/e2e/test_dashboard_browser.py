"""The dashboard in a real browser: Debian's headless Chromium driven through Playwright.

A hub with its API runs on the embedded broker and SQLite. The browser signs in with the admin
token, sees the records flow's consumed count move as CRM customers arrive on the webhook, and
re-drives dead letters from the page: one from a rejected webhook call (refused: its origin is
not a Kafka topic, and the page says so) and one from the raw Kafka topic (sent; the API then
shows it re-driven).

Chromium is the distribution's (/usr/bin/chromium; .ci/run installs it with apt): Playwright
never downloads a browser here. Without it the test is skipped and says why. Set
EAI_DASHBOARD_SCREENSHOT=/path.png to keep a screenshot of the page.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from connectors.crm.simulator import generate as crm_traffic
from contracts import topics
from hub.broker.embedded import free_port
from hub.runtime import Hub
from hub.settings import Settings
from tests.conftest import AUTH, TEST_TOKEN
from tests.helpers import produce, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is absent: install Debian's chromium (.ci/run does) "
        "to run the dashboard browser test",
    ),
]

WAIT_MS = 30_000


def crm_customers(n: int) -> list[dict[str, Any]]:
    out = [r for e, r in itertools.islice(crm_traffic(11, 0.0), 400) if e == "customer"]
    assert len(out) >= n
    return out[:n]


@asynccontextmanager
async def api_hub(broker: str, store_url: str) -> AsyncIterator[tuple[Hub, str]]:
    port = free_port()
    settings = Settings(
        kafka_bootstrap=broker,
        database_url=store_url,
        port=port,
        topic_partitions=2,
        admin_token=TEST_TOKEN,
    )
    hub = Hub(settings)
    await hub.start()
    try:
        yield hub, f"http://127.0.0.1:{port}"
    finally:
        await hub.stop()


async def test_dashboard_signs_in_sees_traffic_and_redrives(broker: str, sqlite_url: str) -> None:
    from playwright.async_api import async_playwright, expect

    good = crm_customers(4)
    bad = dict(good[0], create_time="2026/13/45 99:99")
    native_topic = topics.native("crm", "customer")
    async with (
        api_hub(broker, sqlite_url) as (_hub, url),
        httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as api,
        async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            problems: list[str] = []
            urls: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

            def on_console(m: Any) -> None:
                # A 404 of an optional route (/review before it exists) is logged by Chromium.
                if m.type == "error" and "Failed to load resource" not in m.text:
                    problems.append(f"console: {m.text}")

            page.on("console", on_console)
            page.on("request", lambda r: urls.append(r.url))

            # The page is public and holds nothing until signed in.
            await page.goto(f"{url}/dashboard?refresh=0.5")
            await expect(page.get_by_test_id("login")).to_be_visible()
            await expect(page.get_by_test_id("board")).to_be_hidden()
            await page.get_by_test_id("token").fill("eai_wrong-token")
            await page.get_by_test_id("login-button").click()
            await expect(page.get_by_test_id("login-error")).to_contain_text("rejected")
            await page.get_by_test_id("token").fill(TEST_TOKEN)
            await page.get_by_test_id("login-button").click()
            await expect(page.get_by_test_id("board")).to_be_visible()
            consumed = page.get_by_test_id("flow-records-consumed")
            await expect(consumed).to_have_text(re.compile(r"^\d[\d,]*$"), timeout=WAIT_MS)
            before = int((await consumed.inner_text()).replace(",", ""))

            # Messages flow: the number on the page moves.
            r = await api.post("/connectors/crm/customer", json=good)
            assert r.status_code == 202, r.text
            await expect(consumed).not_to_have_text(str(before), timeout=WAIT_MS)

            async def all_consumed() -> bool:
                text = await consumed.inner_text()
                return int(text.replace(",", "")) >= before + len(good)

            await wait_until(all_consumed, what="the page showing every customer consumed")
            await expect(page.get_by_test_id("card-consumed")).not_to_have_text("–")
            await expect(page.get_by_test_id("card-parked")).to_have_text(re.compile(r"^\d[\d,]*$"))
            await expect(page.get_by_test_id("card-overdue")).to_have_text(re.compile(r"^\d+$"))
            await expect(page.get_by_test_id("card-review")).to_have_text(
                re.compile(r"^(\d[\d,]*|n/a)$")
            )

            # A rejected webhook record: listed, but its origin is no topic to re-drive into,
            # so the page disables the button and says why.
            r = await api.post("/connectors/crm/customer", json=bad)
            assert r.status_code == 422, r.text
            webhook_dl = await one_dead_letter(api, "webhook:crm.customer")
            await expect(page.get_by_test_id(f"dl-{webhook_dl}")).to_be_visible(timeout=WAIT_MS)
            button = page.get_by_test_id(f"redrive-{webhook_dl}")
            await expect(button).to_be_disabled()
            await expect(button).to_have_attribute("title", re.compile("not a Kafka topic"))

            # A bad record on the raw Kafka topic: re-driven from the page.
            raw = json.dumps({"cust_name": "无编号客户"}, ensure_ascii=False).encode()
            await produce(broker, native_topic, [(None, raw)])
            native_dl = await one_dead_letter(api, native_topic)
            await expect(page.get_by_test_id("card-dead-letters")).to_have_text(
                "2", timeout=WAIT_MS
            )
            await expect(page.get_by_test_id(f"dl-{native_dl}")).to_be_visible(timeout=WAIT_MS)
            # A viewer sees it but may not re-drive: the page relays the 403.
            r = await api.post("/tokens", json={"name": "dashboard-viewer", "role": "viewer"})
            assert r.status_code == 201, r.text
            viewer = await browser.new_page()
            await viewer.goto(f"{url}/")
            await viewer.get_by_test_id("token").fill(r.json()["token"])
            await viewer.get_by_test_id("login-button").click()
            await viewer.get_by_test_id(f"redrive-{native_dl}").click(timeout=WAIT_MS)
            denied = viewer.get_by_test_id("redrive-result")
            await expect(denied).to_have_attribute("data-outcome", "error")
            await expect(denied).to_contain_text("operator")
            await viewer.close()
            assert (await api.get(f"/dead-letters/{native_dl}")).json()["status"] == "new"

            await page.get_by_test_id(f"redrive-{native_dl}").click()
            result = page.get_by_test_id("redrive-result")
            await expect(result).to_have_attribute("data-outcome", "sent")
            await expect(result).to_contain_text(native_topic)
            detail = (await api.get(f"/dead-letters/{native_dl}")).json()
            assert detail["status"] == "redriven", detail
            assert detail["redrives"][0]["actor"] == "admin (EAI_ADMIN_TOKEN)"
            await expect(page.get_by_test_id(f"dl-{native_dl}")).to_be_hidden(timeout=WAIT_MS)

            shot = os.environ.get("EAI_DASHBOARD_SCREENSHOT")
            if shot:
                await page.screenshot(path=shot, full_page=True)

            # The token: in this tab's sessionStorage, in no URL, not in the page.
            stored = await page.evaluate("sessionStorage.getItem('eai-hub.token')")
            assert stored == TEST_TOKEN
            assert TEST_TOKEN not in await page.content()
            assert urls and not [u for u in urls if TEST_TOKEN in u]
            assert all(u.startswith(url + "/") for u in urls), "only the hub is contacted"
            await page.get_by_test_id("logout").click()
            await expect(page.get_by_test_id("login")).to_be_visible()
            assert await page.evaluate("sessionStorage.getItem('eai-hub.token')") is None
            assert not problems, problems
        finally:
            await browser.close()


async def one_dead_letter(api: httpx.AsyncClient, topic: str) -> int:
    """The id of the newest open dead letter from this topic, once there is one."""
    found: list[int] = []

    async def there() -> bool:
        r = await api.get("/dead-letters", params={"topic": topic, "status": "new"})
        found[:] = [i["id"] for i in r.json()["items"]]
        return bool(found)

    await wait_until(there, what=f"a dead letter from {topic}")
    return found[0]


async def test_api_docs_render_with_no_network_beyond_the_hub(broker: str, sqlite_url: str) -> None:
    """/docs and /redoc on a plant network that reaches no CDN: every script and style sheet the
    pages load comes from the hub, and Swagger UI renders the hub's OpenAPI 3.1 document."""
    from urllib.parse import urlsplit

    from playwright.async_api import Route, async_playwright, expect

    async with api_hub(broker, sqlite_url) as (_hub, url), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            outside: list[str] = []
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))

            async def only_the_hub(route: Route) -> None:
                if urlsplit(route.request.url).hostname == "127.0.0.1":
                    await route.continue_()
                    return
                # ReDoc's "API docs by Redocly" footer links its logo from a CDN: a missing
                # image offline, nothing the page needs to work.
                if route.request.resource_type != "image":
                    outside.append(route.request.url)
                await route.abort()

            await page.route("**/*", only_the_hub)
            await page.goto(f"{url}/docs")
            await expect(page.locator(".opblock").first).to_be_visible(timeout=WAIT_MS)
            assert await page.locator(".opblock").count() >= 20
            await expect(page.locator(".opblock-summary-path", has_text="/health")).to_be_visible()
            await page.goto(f"{url}/redoc")
            await expect(page.get_by_text("eai-hub admin API").first).to_be_visible(timeout=WAIT_MS)
            await expect(page.get_by_text("/dead-letters").first).to_be_attached()
            assert not outside, f"the docs pages reached outside the hub: {outside}"
            assert not problems, problems
        finally:
            await browser.close()
