"""A dealer that reaches the DRP from the CRM names a city, often without its province: the
DRP's sales region comes from the city's province (python-stdnum's division list)."""

from __future__ import annotations

import pytest

from connectors.common.errors import ContractError
from connectors.registry import CONNECTORS


def dealer(**address: str) -> dict[str, object]:
    return {
        "kind": "organization",
        "name": "温州市瓯海阀门经销部",
        "type": "distributor",
        "addresses": [{"type": "office", "country": "CN", **address}],
    }


@pytest.mark.parametrize(
    ("address", "region"),
    [
        ({"province": "浙江省", "city": "温州市"}, "HD"),
        ({"city": "温州市"}, "HD"),
        ({"city": "深圳"}, "HN"),
        ({"line": "苏州市工业园区星湖街328号"}, "HD"),
    ],
)
def test_the_region_comes_from_the_province_or_the_city(
    address: dict[str, str], region: str
) -> None:
    _, native = CONNECTORS["drp"].to_native("customer", dealer(**address))
    assert native.region == region


def test_a_dealer_with_no_place_at_all_is_refused_naming_the_rule() -> None:
    with pytest.raises(ContractError, match="a dealer needs a sales region or a province"):
        CONNECTORS["drp"].to_native("customer", dealer(street="瓯海大道1号"))
