"""Re-driving a native record that a connector rejected (webhook, table polling, file import).

Such a dead letter has no Kafka origin to publish to again: its ``topic`` is where it came
from (``webhook:crm.customer``) and its value the native bytes as they arrived. Its
``eai.native.*`` headers (hub.ingest.store.native_headers) name the system, the native entity
and the charset, so a re-drive runs the bytes, optionally fixed by a JSON merge patch, through
the connector's mapping again, as if they had just arrived:

* every record maps: the canonical envelopes go to the outbox for ``canonical.<entity>`` in the
  caller's transaction, with message ids derived from the dead letter (the id it would have had,
  or its row id), so the records flow's ledger drops any second copy;
* a record still fails: nothing is written and the reason says which field, value and rule.

``remap`` is pure (bytes in, envelopes or a reason out); hub.redrive does the I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from contracts.envelope import Envelope
from contracts.errors import ContractError
from hub.ingest.store import NATIVE, stable_id


@dataclass(frozen=True)
class NativeOrigin:
    system: str
    entity: str
    charset: str = "utf-8"
    truncated: bool = False


def native_origin(headers: list[tuple[str, bytes]]) -> NativeOrigin | None:
    """The connector and entity of a rejected native record, from its dead letter's headers;
    None for dead letters that did not come from a connector's inbound edge."""
    found = {k.removeprefix(NATIVE): v.decode("utf-8", "replace") for k, v in headers}
    system, entity = found.get("system"), found.get("entity")
    if not system or not entity:
        return None
    return NativeOrigin(
        system, entity, found.get("charset") or "utf-8", "truncated_from_bytes" in found
    )


@dataclass
class Remapped:
    envelopes: list[Envelope] = field(default_factory=list)
    error: str | None = None  # why it still does not map (field, value, rule)
    value: bytes = b""  # the native bytes that were mapped (patched: UTF-8 JSON)


def remap(
    origin: NativeOrigin,
    value: bytes,
    patch: dict[str, Any] | None,
    *,
    id_base: str,
) -> Remapped:
    """Map the native bytes (patched first, when a patch is given) with the connector.

    A body that held an array is patched record by record (the patch applies to each). Message
    ids are ``stable_id("redrive", id_base, n)``: the same dead letter always gives the same
    envelopes, so a second copy is a duplicate for the ledger.
    """
    from connectors.registry import CONNECTORS
    from hub.redrive import merge_patch

    conn = CONNECTORS.get(origin.system)
    where = f"{origin.system}.{origin.entity}"
    if conn is None:
        return Remapped(error=f"no connector {origin.system!r} in this hub", value=value)
    if origin.truncated:
        return Remapped(
            error="the dead letter holds only the start of an oversize body: nothing to map",
            value=value,
        )
    try:
        text = value.decode(origin.charset)
    except (UnicodeDecodeError, LookupError) as exc:
        return Remapped(error=f"{where}: the bytes are not {origin.charset}: {exc}", value=value)
    try:
        data = json.loads(text)
    except ValueError as exc:
        return Remapped(error=f"{where}: the bytes are not JSON: {exc}", value=value)
    records = data if isinstance(data, list) else [data]
    if patch:
        records = [merge_patch(r, patch) for r in records]
        data = records if isinstance(data, list) else records[0]
        value = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    out = Remapped(value=value)
    try:
        conn.inbound(origin.entity)
        for pos, record in enumerate(records):
            try:
                out.envelopes.extend(conn.to_envelopes(origin.entity, record))
            except ContractError as exc:
                at = f" #{pos}" if len(records) > 1 else ""
                out.error = f"{where}{at}: {exc}"
                out.envelopes = []
                return out
    except ContractError as exc:
        out.error = f"{where}: {exc}"
        return out
    out.envelopes = [
        env.model_copy(update={"message_id": stable_id("redrive", id_base, n)})
        for n, env in enumerate(out.envelopes)
    ]
    return out
