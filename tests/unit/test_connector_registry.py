"""The registry, the bindings and the simulators describe the same systems."""

from __future__ import annotations

from connectors.registry import CONNECTORS, connector
from connectors.simulators import SYSTEMS, spec
from contracts.topics import SYSTEMS as TOPIC_SYSTEMS
from contracts.topics import native


def test_every_system_has_a_connector_and_a_simulator() -> None:
    assert set(CONNECTORS) == set(SYSTEMS) == set(TOPIC_SYSTEMS)
    assert connector("crm") is CONNECTORS["crm"]


def test_bindings_point_at_the_simulators_api_and_tables() -> None:
    for system, c in CONNECTORS.items():
        sim = {e.name: e for e in spec(system).entities}
        for b in c.bindings.values():
            assert b.name in sim, f"{system}.{b.name} has no simulator entity"
            assert b.api_path == sim[b.name].path, (system, b.name)
            assert b.table == sim[b.name].table, (system, b.name)
            assert b.native is sim[b.name].native, (system, b.name)


def test_pushed_entities_are_the_ones_the_connector_accepts() -> None:
    for system, c in CONNECTORS.items():
        # The ERP could publish releases made in the ERP itself; its simulated users do not.
        assert spec(system).pushable <= set(c.inbound_entities), system


def test_raw_topics_are_named_by_native_entity() -> None:
    assert native("erp", CONNECTORS["erp"].inbound("stock").name) == "erp.stock.native"


def test_erp_and_pdm_tables_are_pollable() -> None:
    for system in ("erp", "pdm"):
        for name in CONNECTORS[system].inbound_entities:
            b = CONNECTORS[system].binding(name)
            assert b.table and b.watermark_column == "change_seq"
