"""The ERP as the hub sees it: master data, orders, BOMs, stock, requisitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.common.base import Connector, EntityBinding
from connectors.common.valuemaps import load_value_maps
from connectors.erp import mapping as m
from connectors.erp.native import (
    ErpBom,
    ErpChannelStock,
    ErpCustomer,
    ErpMaterial,
    ErpOrder,
    ErpRelease,
    ErpRequisition,
    ErpStock,
)
from contracts.approval import ApprovalDecision, ApprovalRequest
from contracts.bom import Bom
from contracts.customer import Customer
from contracts.envelope import Entity, Op
from contracts.inventory import Inventory
from contracts.material import Material
from contracts.order import Order

VALUEMAPS = Path(__file__).with_name("valuemaps.yaml")

# Column titles of the ERP's Chinese list exports (GBK CSV or XLSX).
CUSTOMER_TITLES = {
    "客户编号": "KUNNR",
    "账户组": "KTOKD",
    "名称1": "NAME1",
    "名称2": "NAME2",
    "检索项": "SORTL",
    "税号": "STCEG",
    "国家": "LAND1",
    "地区": "REGIO",
    "城市": "ORT01",
    "区县": "ORT02",
    "街道": "STRAS",
    "邮编": "PSTLZ",
    "电话": "TELF1",
    "传真": "TELFX",
    "邮箱": "SMTP_ADDR",
    "行业": "BRSCH",
    "信用额度": "KLIMK",
    "币种": "WAERS",
    "付款条件": "ZTERM",
    "冻结": "SPERR",
    "销售员": "ZZSALES",
    "创建日期": "ERDAT",
    "修改日期": "AEDAT",
    "修改时间": "AEZET",
}
MATERIAL_TITLES = {
    "物料编码": "MATNR",
    "物料描述": "MAKTX",
    "物料类型": "MTART",
    "物料组": "MATKL",
    "基本单位": "MEINS",
    "规格型号": "GROES",
    "图号": "ZEINR",
    "图纸版本": "ZEIVR",
    "删除标记": "LVORM",
    "创建日期": "ERSDA",
    "修改日期": "LAEDA",
}
STOCK_TITLES = {
    "物料编码": "MATNR",
    "工厂": "WERKS",
    "库存地点": "LGORT",
    "非限制库存": "LABST",
    "质检库存": "INSME",
    "冻结库存": "SPEME",
    "在途库存": "UMLME",
    "预留数量": "BDMNG",
    "单位": "MEINS",
    "日期": "LAEDA",
    "时间": "UZEIT",
}
ORDER_TITLES = {
    "销售订单": "VBELN",
    "订单类型": "AUART",
    "售达方": "KUNNR",
    "客户参考": "BSTNK",
    "凭证日期": "AUDAT",
    "交货日期": "VDATU",
    "币种": "WAERK",
    "状态": "ZZSTATUS",
    "销售组织": "VKORG",
    "分销渠道": "VTWEG",
    "创建人": "ERNAM",
    "行项目": "ITEMS.POSNR",
    "物料": "ITEMS.MATNR",
    "物料描述": "ITEMS.ARKTX",
    "数量": "ITEMS.KWMENG",
    "销售单位": "ITEMS.VRKME",
    "净价": "ITEMS.NETPR",
}
BOM_TITLES = {
    "父项物料": "MATNR",
    "工厂": "WERKS",
    "用途": "STLAN",
    "可选BOM": "STLAL",
    "版本": "REVLV",
    "变更号": "AENNR",
    "项目": "ITEMS.POSNR",
    "组件": "ITEMS.IDNRK",
    "数量": "ITEMS.MENGE",
    "单位": "ITEMS.MEINS",
    "损耗率%": "ITEMS.AUSCH",
    "生效日期": "ITEMS.DATUV",
    "失效日期": "ITEMS.DATUB",
    "位号": "ITEMS.EBORT",
}


def _changed(n: Any) -> Any:
    return m.erp_ts(n.AEDAT, n.AEZET, "AEDAT", "AEZET")


def build(valuemaps_override: str | Path | None = None) -> Connector:
    b = EntityBinding
    return Connector(
        system="erp",
        title="ERP (SAP-style: KNA1, VBAK/VBAP, MARA, STKO/STPO, MARD, EBAN)",
        bindings={
            "customer": b(
                name="customer",
                entity=Entity.customer,
                native=ErpCustomer,
                canonical=Customer,
                to_canonical=m.customer_to_canonical,
                from_canonical=m.customer_from_canonical,
                id_field="KUNNR",
                ts_of=_changed,
                api_path="/api/customers",
                table="KNA1",
                column_titles=CUSTOMER_TITLES,
                description="客户主数据: customer master with credit limit and payment terms",
            ),
            "order": b(
                name="order",
                entity=Entity.order,
                native=ErpOrder,
                canonical=Order,
                to_canonical=m.order_to_canonical,
                from_canonical=m.order_from_canonical,
                id_field="VBELN",
                ts_of=_changed,
                api_path="/api/sales-orders",
                table="VBAK",
                column_titles=ORDER_TITLES,
                description="销售订单: sales orders, the CRM's and DRP's orders executed here",
            ),
            "material": b(
                name="material",
                entity=Entity.material,
                native=ErpMaterial,
                canonical=Material,
                to_canonical=m.material_to_canonical,
                from_canonical=m.material_from_canonical,
                id_field="MATNR",
                ts_field=("LAEDA", "ERSDA"),
                api_path="/api/materials",
                table="MARA",
                column_titles=MATERIAL_TITLES,
                description="物料主数据: material master",
            ),
            "bom": b(
                name="bom",
                entity=Entity.bom,
                native=ErpBom,
                canonical=Bom,
                to_canonical=m.bom_to_canonical,
                from_canonical=m.bom_from_canonical,
                id_field=("MATNR", "WERKS", "STLAN", "STLAL"),
                ts_of=_changed,
                api_path="/api/boms",
                table="STKO",
                column_titles=BOM_TITLES,
                description="生产BOM: manufacturing BOMs, built from the PDM's design BOMs",
            ),
            "stock": b(
                name="stock",
                entity=Entity.inventory,
                native=ErpStock,
                canonical=Inventory,
                to_canonical=m.stock_to_canonical,
                from_canonical=m.stock_from_canonical,
                outbound=False,  # stock is the ERP's own truth; nobody writes it from outside
                id_field=("MATNR", "WERKS", "LGORT"),
                ts_of=lambda n: m.erp_ts(n.LAEDA, n.UZEIT, "LAEDA", "UZEIT"),
                api_path="/api/stock",
                table="MARD",
                column_titles=STOCK_TITLES,
                description="库存: stock per plant and storage location",
            ),
            "channel_stock": b(
                name="channel_stock",
                entity=Entity.inventory,
                native=ErpChannelStock,
                canonical=Inventory,
                to_canonical=m.channel_stock_to_canonical,
                from_canonical=m.channel_stock_from_canonical,
                # A copy of the DRP's figures: publishing it would send dealer stock back
                # round as if it were the ERP's own.
                inbound=False,
                id_field=("ZDEALER", "ZWHCODE", "MATNR"),
                ts_of=lambda n: m.erp_ts(n.LAEDA, n.UZEIT, "LAEDA", "UZEIT"),
                api_path="/api/channel-stock",
                table="ZCHSTOCK",
                description="渠道库存: distributor stock and sell-through from the DRP (Z-table)",
            ),
            "requisition": b(
                name="requisition",
                entity=Entity.approval,
                native=ErpRequisition,
                canonical=ApprovalRequest,
                to_canonical=m.requisition_to_canonical,
                from_canonical=m.requisition_from_canonical,
                outbound=False,  # requisitions are approved in OA, never created from it
                op=Op.request,
                id_field=("BANFN", "BNFPO"),
                ts_of=lambda n: m.erp_ts(n.BADAT, n.ERZET, "BADAT", "ERZET"),
                api_path="/api/requisitions",
                table="EBAN",
                description="请购: purchase requisitions awaiting approval in OA",
            ),
            "release": b(
                name="release",
                entity=Entity.approval,
                native=ErpRelease,
                canonical=ApprovalDecision,
                to_canonical=m.release_to_canonical,
                from_canonical=m.release_from_canonical,
                op=Op.decide,
                id_field=("BANFN", "BNFPO"),
                ts_of=lambda n: m.erp_ts(n.REL_DATE, n.REL_TIME, "REL_DATE", "REL_TIME"),
                api_path="/api/releases",
                table="EBAN_REL",
                description="审批结果: release or rejection of a requisition, from OA's decision",
            ),
        },
        value_maps=load_value_maps("erp", VALUEMAPS, valuemaps_override),
        valuemaps_default=VALUEMAPS,
    )
