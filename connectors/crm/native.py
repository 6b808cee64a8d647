"""CRM native records, as a domestic sales CRM exposes them through its open API.

Field names follow the product's API (``cust_no``, ``cust_name``, ``sales_rep``); codes are the
product's own code lists (stage ``01``/``02``/``03``, level ``N``/``V``, status ``0``..``4``),
translated by ``valuemaps.yaml``. Timestamps are written ``2026/11/24 09:30``, dates of
contact ``20261124``, money ``1,200,000.00``.
"""

from __future__ import annotations

from connectors.common.native import (
    S2,
    S10,
    S20,
    S40,
    S80,
    S120,
    S200,
    S500,
    AmountStr,
    Code,
    DateStr,
    DateTimeStr,
    NativeModel,
)


class CrmAddress(NativeModel):
    """One typed address on the card (地址类型: 办公/开票/收货/注册/家庭/其他)."""

    addr_type: Code
    province: S20 | None = None
    city: S20 | None = None
    district: S40 | None = None
    street: S200 | None = None
    zip_code: S10 | None = None


class CrmContact(NativeModel):
    """A contact person (联系人) with the salutation staff use on the phone (称呼)."""

    contact_name: S40
    salutation: S20 | None = None  # 王总, 李经理, 张先生
    job_title: S40 | None = None
    mobile: S40 | None = None
    tel: S40 | None = None
    email: S80 | None = None


class CrmCustomer(NativeModel):
    """The customer card (客户卡片)."""

    cust_no: S20 | None = None  # 客户编号, assigned by the CRM on creation
    cust_name: S120  # 客户名称: the organization, or the person for 个人用户
    cust_type: Code  # 客户类型
    credit_code: S20 | None = None  # 统一社会信用代码
    id_card: S20 | None = None  # 身份证号, individuals only
    company: S120 | None = None  # 公司: employer of an individual, or the group of a company
    job_title: S40 | None = None  # 职务
    mobile: S40 | None = None  # 手机
    tel: S40 | None = None  # 电话
    email: S80 | None = None
    addr: S200 | None = None  # 地址 (the card's main address, one free line)
    addresses: tuple[CrmAddress, ...] = ()
    contacts: tuple[CrmContact, ...] = ()
    stage: Code | None = None  # 阶段: 01 准客户, 02 意向客户, 03 暂停客户
    status: Code  # 客户状态: 0 无效 .. 4 典型
    frozen: S2 = "N"  # 冻结 Y/N
    industry: Code | None = None  # 行业 (code of a tree node)
    size: Code | None = None  # 规模 (headcount band)
    source: Code | None = None  # 来源: 01 主动联系, 02 广告媒体, 03 朋友介绍, ...
    level: Code | None = None  # 级别: N 普通, V VIP
    sales_rep: S40 | None = None  # 所属销售 (employee number)
    gender: Code | None = None  # 性别: M/F
    birthday: DateStr | None = None  # 生日 19850312
    credit_limit: AmountStr | None = None  # 信用额度 1,200,000.00
    currency: S10 = "CNY"
    last_contact: DateStr | None = None  # 最后联系 20261124
    create_time: DateTimeStr | None = None  # 创建时间 2026/11/24 09:30, set by the CRM
    update_time: DateTimeStr | None = None  # 修改时间
    remark: S500 | None = None


class CrmOpportunity(NativeModel):
    """A sales opportunity (商机) with its reminder date. Kept in the CRM: the canonical model
    has no opportunity, and ERP only sees the order it may become."""

    opp_no: S20 | None = None
    opp_name: S120
    cust_no: S20
    stage: Code  # 01 初步接洽 .. 05 赢单, 06 输单
    amount: AmountStr | None = None
    expected_close: DateStr | None = None
    remind_date: DateStr | None = None  # 提醒日期
    sales_rep: S40 | None = None
    create_time: DateTimeStr


class CrmOrderItem(NativeModel):
    line_no: S10
    product_code: S40  # the ERP material code the CRM product catalogue carries
    product_name: S120 | None = None
    qty: AmountStr
    unit: S10  # 个, 台, 套, 件, 箱
    price: AmountStr  # 单价
    amount: AmountStr | None = None  # 金额 = qty x price, as the CRM prints it


class CrmOrder(NativeModel):
    """A sales order (销售订单) captured in the CRM, to be executed by the ERP."""

    order_no: S20 | None = None
    cust_no: S20
    cust_name: S120 | None = None
    order_date: DateStr  # 2026/11/24
    delivery_date: DateStr | None = None  # 交货日期
    currency: S10 = "CNY"
    status: Code  # 10 草稿 .. 99 已关闭
    sales_rep: S40 | None = None
    total_amount: AmountStr | None = None
    items: tuple[CrmOrderItem, ...] = ()
    remark: S500 | None = None
    update_time: DateTimeStr | None = None
