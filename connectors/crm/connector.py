"""The CRM as the hub sees it: which native entities it sends and receives, and how."""

from __future__ import annotations

from pathlib import Path

from connectors.common.base import Connector, EntityBinding
from connectors.common.valuemaps import load_value_maps
from connectors.crm import mapping as m
from connectors.crm.native import CrmCustomer, CrmOrder
from contracts.customer import Customer
from contracts.envelope import Entity
from contracts.order import Order

VALUEMAPS = Path(__file__).with_name("valuemaps.yaml")

# Column titles of the CRM's Excel export (客户列表导出), so an operator can import the file
# exactly as the CRM wrote it.
CUSTOMER_TITLES = {
    "客户编号": "cust_no",
    "客户名称": "cust_name",
    "客户类型": "cust_type",
    "统一社会信用代码": "credit_code",
    "身份证号": "id_card",
    "公司": "company",
    "职务": "job_title",
    "手机": "mobile",
    "电话": "tel",
    "邮箱": "email",
    "地址": "addr",
    "阶段": "stage",
    "客户状态": "status",
    "冻结": "frozen",
    "行业": "industry",
    "规模": "size",
    "来源": "source",
    "级别": "level",
    "所属销售": "sales_rep",
    "性别": "gender",
    "生日": "birthday",
    "信用额度": "credit_limit",
    "币种": "currency",
    "最后联系": "last_contact",
    "创建时间": "create_time",
    "修改时间": "update_time",
    "备注": "remark",
}
ORDER_TITLES = {
    "订单编号": "order_no",
    "客户编号": "cust_no",
    "客户名称": "cust_name",
    "订单日期": "order_date",
    "交货日期": "delivery_date",
    "币种": "currency",
    "订单状态": "status",
    "所属销售": "sales_rep",
    "订单金额": "total_amount",
    "备注": "remark",
    "行号": "items.line_no",
    "产品编码": "items.product_code",
    "产品名称": "items.product_name",
    "数量": "items.qty",
    "单位": "items.unit",
    "单价": "items.price",
    "金额": "items.amount",
}


def build(valuemaps_override: str | Path | None = None) -> Connector:
    return Connector(
        system="crm",
        title="CRM (sales customer cards, opportunities, orders)",
        bindings={
            "customer": EntityBinding(
                name="customer",
                entity=Entity.customer,
                native=CrmCustomer,
                canonical=Customer,
                to_canonical=m.customer_to_canonical,
                from_canonical=m.customer_from_canonical,
                id_field="cust_no",
                ts_field=("update_time", "create_time"),
                api_path="/api/customers",
                table="crm_customer",
                column_titles=CUSTOMER_TITLES,
                description="客户卡片: customer cards, organizations and individuals",
            ),
            "order": EntityBinding(
                name="order",
                entity=Entity.order,
                native=CrmOrder,
                canonical=Order,
                to_canonical=m.order_to_canonical,
                from_canonical=m.order_from_canonical,
                id_field="order_no",
                ts_field="update_time",
                api_path="/api/orders",
                table="crm_order",
                column_titles=ORDER_TITLES,
                description="销售订单: sales orders captured by sales staff",
            ),
        },
        value_maps=load_value_maps("crm", VALUEMAPS, valuemaps_override),
        valuemaps_default=VALUEMAPS,
    )
