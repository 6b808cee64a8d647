"""PDM native records, as a domestic PDM/PLM's integration interface returns them.

Parts are keyed by drawing number (图号) and revision (版本); the design BOM comes as an
indented multi-level list (层级 1, 2, 3 ...) under a top part, the way engineers read it;
engineering change orders (ECO, 工程变更单) list the affected parts with old and new revisions.
Timestamps are ``2026-11-24 09:30:00``, dates ``2026-11-24``.
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


class PdmPart(NativeModel):
    """A part (零部件) at one revision."""

    part_no: S40  # 图号
    revision: S4  # 版本
    part_name: S80  # 名称
    spec: S120 | None = None  # 规格
    material: S40 | None = None  # 材质
    unit: S10  # 单位: 件, 个, 套, 米, 千克
    category: Code  # 分类: 01 标准件 .. 05 成品
    state: Code  # 状态: IW 设计中, IR 审核中, RL 已发布, OB 作废
    designer: S20 | None = None
    weight: AmountStr | None = None  # 重量 g
    erp_code: S20 | None = None  # ERP物料编码: the material number the ERP gave this part
    created_at: DateTimeStr | None = None
    modified_at: DateTimeStr | None = None


class PdmBomItem(NativeModel):
    level: S4  # 层级: 1 directly under the top part, 2 under the level-1 row above, ...
    find_no: S10  # 序号
    part_no: S40
    revision: S4 | None = None
    qty: AmountStr
    unit: S10
    ref_des: S200 | None = None  # 位号


class PdmBom(NativeModel):
    """A multi-level design BOM (设计BOM) of one top part."""

    top_part_no: S40
    top_revision: S4
    bom_state: Code  # IW, RL
    eco_no: S20 | None = None  # the ECO that released this revision
    released_at: DateTimeStr | None = None
    items: tuple[PdmBomItem, ...] = ()


class PdmEcoItem(NativeModel):
    part_no: S40
    action: Code  # A 新增, M 修改, D 删除
    from_rev: S4 | None = None
    to_rev: S4 | None = None
    description: S200 | None = None


class PdmEco(NativeModel):
    """Engineering change order (工程变更单), approved in OA before the BOM changes."""

    canonical_types = ("engineering_change",)

    eco_no: S20
    title: S120
    reason: Code  # 01 设计缺陷, 02 成本优化, 03 客户要求, 04 供应商变更, 05 法规要求
    urgency: Code  # H, M, L
    initiator: S20
    dept: S40 | None = None
    approver: S20
    submit_time: DateTimeStr
    need_date: DateStr | None = None  # 要求完成日期
    state: Code  # 01 草稿 .. 05 已实施
    items: tuple[PdmEcoItem, ...] = ()
