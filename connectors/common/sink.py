"""Outbound sink: canonical -> native -> one HTTP call to the system's API.

The sink makes exactly one attempt and says what happened; retry, backoff and dead-lettering
belong to the hub, which owns the outbox and knows what else is waiting. The classification is
what the hub needs to decide:

- ``delivered``: 2xx, the system's local id is returned for the cross-reference table;
- ``duplicate``: 409, the system already has this idempotency key (an earlier attempt whose
  answer we lost went through) - treat as delivered, with the local id it reports;
- ``permanent``: any other 4xx, or a record this system cannot represent - retrying the same
  bytes cannot succeed, dead-letter it;
- ``transient``: 5xx, 408, 429, timeouts and connection errors - retry later with the *same*
  idempotency key, so a request that did land is not applied twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
import httpx
from pydantic import BaseModel

from connectors.common.base import Connector, native_json
from contracts.envelope import Entity
from contracts.errors import ContractError

TRANSIENT_4XX = {408, 425, 429}


class Outcome(StrEnum):
    delivered = "delivered"
    duplicate = "duplicate"
    permanent = "permanent"
    transient = "transient"


@dataclass(frozen=True)
class DeliveryResult:
    outcome: Outcome
    system: str
    native_entity: str
    status_code: int | None = None
    local_id: str | None = None
    reason: str = ""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        """The target has the record: record the cross-reference and mark the outbox row."""
        return self.outcome in (Outcome.delivered, Outcome.duplicate)


# Idle connections are dropped before the 5 s keep-alive of common servers (uvicorn, nginx's
# default is longer): a POST sent on a connection the server has just closed fails, and is
# then retried with backoff instead of at once.
KEEPALIVE_S = 4.0


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _body(content: bytes) -> dict[str, Any]:
    try:
        data = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _proxy_for(base_url: str) -> str | None:
    """The proxy the environment names for this target (HTTP(S)_PROXY, NO_PROXY), as httpx
    honoured them. Read once: aiohttp's ``trust_env`` reads the whole environment on every
    request, which cost more CPU than the rest of the call."""
    parts = urlsplit(base_url)
    if not parts.hostname or proxy_bypass(parts.hostname):
        return None
    return getproxies().get(parts.scheme)


class Sink:
    """Deliver canonical records to one system.

    Without ``client`` the calls go over one aiohttp session of the sink's own (decision 40:
    httpx cost ~1.3 ms of CPU per call here and capped a target at a few hundred calls/s;
    aiohttp ~0.2 ms). ``client`` (httpx) may be shared across sinks; pass
    ``httpx.AsyncClient(transport=ASGITransport(app))`` to talk to an in-process simulator.
    """

    def __init__(
        self,
        connector: Connector,
        base_url: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.connector = connector
        self.base_url = base_url.rstrip("/")
        self.client = client
        # created on the first call: an aiohttp session belongs to the running event loop
        self._session: aiohttp.ClientSession | None = None
        self.timeout = timeout
        self.headers = headers or {}
        self._proxy = _proxy_for(self.base_url)

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _own_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_S),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._session

    async def _send(
        self, method: str, url: str, payload: bytes, headers: dict[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        if self.client is not None:
            r = await self.client.request(
                method, url, content=payload, headers=headers, timeout=self.timeout
            )
            return r.status_code, r.headers, r.content
        session = self._own_session()
        async with session.request(
            method, url, data=payload, headers=headers, proxy=self._proxy
        ) as resp:
            return resp.status, resp.headers, await resp.read()

    async def __aenter__(self) -> Sink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def deliver(
        self,
        entity: Entity | str,
        body: dict[str, Any] | BaseModel,
        idempotency_key: str,
        *,
        local_id: str | None = None,
    ) -> DeliveryResult:
        """Create (``local_id`` unknown) or update (``local_id`` from the cross-reference)."""
        system = self.connector.system
        try:
            binding, native = self.connector.to_native(entity, body)
        except ContractError as exc:
            name = Entity(entity).value
            self.connector.status.failed(name, exc.reason, transient=False)
            return DeliveryResult(Outcome.permanent, system, name, reason=exc.reason)
        url = f"{self.base_url}{binding.api_path}"
        method = "POST"
        if local_id is not None:
            url = f"{url}/{quote(local_id, safe='/')}"
            method = "PUT"
        headers = {
            **self.headers,
            "Idempotency-Key": idempotency_key,
            "Content-Type": "application/json; charset=utf-8",
        }
        payload = json.dumps(native_json(native), ensure_ascii=False).encode("utf-8")
        try:
            code, answer_headers, content = await self._send(method, url, payload, headers)
        except (httpx.TimeoutException, TimeoutError) as exc:
            return self._fail(binding.name, None, f"timeout after {self.timeout}s: {exc!r}")
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            return self._fail(binding.name, None, f"connection failed: {exc!r}")
        return self._classify(binding.name, code, answer_headers, content, local_id)

    def _fail(
        self,
        name: str,
        status: int | None,
        reason: str,
        *,
        transient: bool = True,
        retry_after: float | None = None,
    ) -> DeliveryResult:
        self.connector.status.failed(name, reason, transient=transient)
        outcome = Outcome.transient if transient else Outcome.permanent
        return DeliveryResult(
            outcome, self.connector.system, name, status, reason=reason, retry_after=retry_after
        )

    def _classify(
        self,
        name: str,
        code: int,
        headers: Mapping[str, str],
        content: bytes,
        local_id: str | None,
    ) -> DeliveryResult:
        data = _body(content)
        returned = data.get("local_id") or local_id
        system = self.connector.system
        if 200 <= code < 300:
            self.connector.status.delivered(name)
            reason = "" if returned else "system answered without a local id"
            return DeliveryResult(
                Outcome.delivered, system, name, code, str(returned) if returned else None, reason
            )
        if code == 409:
            self.connector.status.delivered(name, duplicate=True)
            return DeliveryResult(
                Outcome.duplicate,
                system,
                name,
                code,
                str(returned) if returned else None,
                str(data.get("detail") or data.get("error") or "already delivered"),
            )
        text = str(
            data.get("detail") or data.get("error") or content[:300].decode("utf-8", "replace")
        )
        reason = f"HTTP {code} from {system}: {text}"
        if code >= 500 or code in TRANSIENT_4XX:
            return self._fail(name, code, reason, retry_after=_retry_after(headers))
        return self._fail(name, code, reason, transient=False)
