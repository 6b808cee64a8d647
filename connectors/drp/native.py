"""DRP native records: the distributor portal's dealer files, channel stock and 要货订单.

Dealers are keyed by dealer code (经销商编码 JXS-<province>-<no>), regions by the sales
region code (HN 华南 ...). Quantities are whole numbers as dealers count boxes and units;
timestamps ``2026-11-24 09:30:00``, dates ``2026-11-24``. The DRP trades in CNY only.
"""

from __future__ import annotations

from connectors.common.native import (
    S4,
    S10,
    S20,
    S40,
    S80,
    S120,
    S200,
    AmountStr,
    Code,
    DateStr,
    DateTimeStr,
    NativeModel,
)


class DrpDistributor(NativeModel):
    """经销商档案: a distributor, which to the rest of the company is a customer."""

    dealer_code: S20 | None = None
    dealer_name: S120
    short_name: S40 | None = None
    region: Code  # 大区
    province: S20 | None = None
    city: S20 | None = None
    address: S200 | None = None
    contact: S40 | None = None
    contact_mobile: S40 | None = None
    tel: S40 | None = None
    credit_code: S20 | None = None
    grade: Code  # 等级 A, B, C
    credit_line: AmountStr | None = None  # 授信额度
    join_date: DateStr | None = None  # 合作日期
    status: Code  # 1 正常, 0 停用
    manager: S20 | None = None  # 区域经理
    updated: DateTimeStr | None = None


class DrpInventory(NativeModel):
    """渠道库存: a dealer warehouse's stock of one SKU, with sell-through of the period."""

    dealer_code: S20
    wh_code: S10
    sku: S20  # the ERP material code
    sku_name: S80 | None = None
    region: Code
    stock_qty: AmountStr
    transit_qty: AmountStr
    locked_qty: AmountStr
    unit: S10
    sold_qty: AmountStr | None = None  # 本期销量
    period: S10 | None = None  # 统计期间 2026-11
    stat_time: DateTimeStr


class DrpFactoryStock(NativeModel):
    """厂家库存: the factory's available stock, published to dealers (from the ERP)."""

    wh_code: S20
    sku: S20
    on_hand_qty: AmountStr
    reserved_qty: AmountStr
    transit_qty: AmountStr
    unit: S10
    region: Code | None = None
    stat_time: DateTimeStr


class DrpReplenishmentItem(NativeModel):
    row_no: S4
    sku: S20
    sku_name: S80 | None = None
    req_qty: AmountStr
    unit: S10
    price: AmountStr  # 经销价


class DrpReplenishment(NativeModel):
    """要货订单: a dealer's replenishment request; becomes an ERP sales order."""

    req_no: S20 | None = None
    dealer_code: S20
    req_date: DateStr
    expect_date: DateStr | None = None
    wh_code: S10 | None = None  # receiving dealer warehouse
    status: Code
    remark: S200 | None = None
    items: tuple[DrpReplenishmentItem, ...] = ()
    updated: DateTimeStr | None = None
