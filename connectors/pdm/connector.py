"""The PDM as the hub sees it: parts, design BOMs and engineering changes flow out of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.common.base import Connector, EntityBinding
from connectors.common.valuemaps import load_value_maps
from connectors.pdm import mapping as m
from connectors.pdm.native import PdmBom, PdmEco, PdmPart
from contracts.approval import ApprovalRequest
from contracts.bom import Bom
from contracts.envelope import Entity, Op
from contracts.material import Material

VALUEMAPS = Path(__file__).with_name("valuemaps.yaml")

PART_TITLES = {
    "图号": "part_no",
    "版本": "revision",
    "名称": "part_name",
    "规格": "spec",
    "材质": "material",
    "单位": "unit",
    "分类": "category",
    "状态": "state",
    "设计者": "designer",
    "重量": "weight",
    "ERP物料编码": "erp_code",
    "创建时间": "created_at",
    "修改时间": "modified_at",
}


def _bom_piece_id(bom: Any) -> str:
    # Each assembly's BOM is its own record downstream, keyed by the assembly's drawing no.
    return str(bom.parent)


def build(valuemaps_override: str | Path | None = None) -> Connector:
    return Connector(
        system="pdm",
        title="PDM (parts, multi-level design BOMs, engineering change orders)",
        bindings={
            "part": EntityBinding(
                name="part",
                entity=Entity.material,
                native=PdmPart,
                canonical=Material,
                to_canonical=m.part_to_canonical,
                from_canonical=m.part_from_canonical,
                # Parts are designed here; the hub only updates them with the ERP's material
                # number (ERP code write-back), never creates one (the mapping refuses).
                id_field="part_no",
                ts_field=("modified_at", "created_at"),
                api_path="/api/parts",
                table="pdm_part",
                column_titles=PART_TITLES,
                description="零部件: parts by drawing number and revision",
            ),
            "bom": EntityBinding(
                name="bom",
                entity=Entity.bom,
                native=PdmBom,
                canonical=Bom,
                to_canonical=m.bom_to_canonical,
                from_canonical=None,  # rebuilt from pieces by m.bom_tree_from_canonical
                outbound=False,
                id_field="top_part_no",
                piece_id=_bom_piece_id,
                ts_field="released_at",
                api_path="/api/boms",
                table="pdm_bom",
                description="设计BOM: indented multi-level design BOM of a top part",
            ),
            "eco": EntityBinding(
                name="eco",
                entity=Entity.approval,
                native=PdmEco,
                canonical=ApprovalRequest,
                to_canonical=m.eco_to_canonical,
                from_canonical=m.eco_from_canonical,
                outbound=False,
                op=Op.request,
                id_field="eco_no",
                ts_field="submit_time",
                api_path="/api/ecos",
                table="pdm_eco",
                description="工程变更单: engineering change orders, approved in OA",
            ),
        },
        value_maps=load_value_maps("pdm", VALUEMAPS, valuemaps_override),
        valuemaps_default=VALUEMAPS,
    )
