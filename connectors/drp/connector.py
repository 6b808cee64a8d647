"""The DRP as the hub sees it: dealers, channel stock, replenishment requests."""

from __future__ import annotations

from pathlib import Path

from connectors.common.base import Connector, EntityBinding
from connectors.common.valuemaps import load_value_maps
from connectors.drp import mapping as m
from connectors.drp.native import (
    DrpDistributor,
    DrpFactoryStock,
    DrpInventory,
    DrpReplenishment,
)
from contracts.customer import Customer
from contracts.envelope import Entity
from contracts.inventory import Inventory
from contracts.order import Order

VALUEMAPS = Path(__file__).with_name("valuemaps.yaml")

INVENTORY_TITLES = {
    "经销商编码": "dealer_code",
    "仓库": "wh_code",
    "产品编码": "sku",
    "产品名称": "sku_name",
    "大区": "region",
    "库存数量": "stock_qty",
    "在途数量": "transit_qty",
    "锁定数量": "locked_qty",
    "单位": "unit",
    "本期销量": "sold_qty",
    "统计期间": "period",
    "统计时间": "stat_time",
}


def build(valuemaps_override: str | Path | None = None) -> Connector:
    return Connector(
        system="drp",
        title="DRP (distributor portal: dealers, channel stock, replenishment requests)",
        bindings={
            "distributor": EntityBinding(
                name="distributor",
                entity=Entity.customer,
                native=DrpDistributor,
                canonical=Customer,
                to_canonical=m.distributor_to_canonical,
                from_canonical=m.distributor_from_canonical,
                id_field="dealer_code",
                ts_field="updated",
                api_path="/api/dealers",
                table="drp_dealer",
                description="经销商档案: distributors (customers of type distributor)",
            ),
            "inventory": EntityBinding(
                name="inventory",
                entity=Entity.inventory,
                native=DrpInventory,
                canonical=Inventory,
                to_canonical=m.inventory_to_canonical,
                from_canonical=m.inventory_from_canonical,
                outbound=False,  # dealers report their stock; the hub never writes it
                id_field=("dealer_code", "wh_code", "sku"),
                ts_field="stat_time",
                api_path="/api/channel-stock",
                table="drp_channel_stock",
                column_titles=INVENTORY_TITLES,
                description="渠道库存: dealer stock and sell-through per region",
            ),
            "factory_stock": EntityBinding(
                name="factory_stock",
                entity=Entity.inventory,
                native=DrpFactoryStock,
                canonical=Inventory,
                to_canonical=m.factory_stock_to_canonical,
                from_canonical=m.factory_stock_from_canonical,
                inbound=False,  # the ERP's stock, published to dealers
                id_field=("wh_code", "sku"),
                ts_field="stat_time",
                api_path="/api/factory-stock",
                table="drp_factory_stock",
                description="厂家库存: the factory's stock, from the ERP, shown to dealers",
            ),
            "replenishment": EntityBinding(
                name="replenishment",
                entity=Entity.order,
                native=DrpReplenishment,
                canonical=Order,
                to_canonical=m.replenishment_to_canonical,
                from_canonical=m.replenishment_from_canonical,
                id_field="req_no",
                ts_field=("updated",),
                api_path="/api/replenishments",
                table="drp_replenishment",
                description="要货订单: replenishment requests, executed as ERP sales orders",
            ),
        },
        value_maps=load_value_maps("drp", VALUEMAPS, valuemaps_override),
        valuemaps_default=VALUEMAPS,
    )
