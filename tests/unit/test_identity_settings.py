"""EAI_IDENTITY_CONFIG and EAI_IDENTITY_MODEL_DIR configure the identity flow the hub runs, and a
bad file or folder stops the hub when it builds its flows, naming what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.identity.flow import IdentityFlow, flow_of
from flows.identity.scoring import Model
from hub.runtime import Hub
from hub.settings import Settings


def identity_flow(hub: Hub) -> IdentityFlow:
    flows = [f for f in (flow_of(s) for s in hub.flows) if f is not None]
    assert len(flows) == 1
    return flows[0]


def test_the_hub_runs_identity_with_the_configured_thresholds_and_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "identity.yaml"
    path.write_text(
        "matching:\n  upper: 0.9\n  lower: 0.4\n  block_cap: 30\n"
        "survivorship:\n  customer:\n    name: {rule: priority, sources: [erp, crm]}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("EAI_IDENTITY_CONFIG", str(path))
    flow = identity_flow(Hub(Settings()))
    assert flow.config.upper == {"customer": 0.9, "material": 0.9}
    assert (flow.config.lower, flow.config.block_cap) == (0.4, 30)
    rule = flow.survivorship.rules("customer")["name"]
    assert rule.rule == "priority" and rule.sources == ("erp", "crm")


def test_without_identity_settings_the_defaults_apply() -> None:
    flow = identity_flow(Hub(Settings()))
    assert flow.config.upper == {"customer": 0.6, "material": 0.5}
    assert flow.config.lower == 0.2
    assert "default parameters" in flow.models["customer"].notes[0]


@pytest.mark.parametrize(
    ("text", "suffix", "needle"),
    [
        ("matching:\n  uper: 0.9\n", ".yaml", "uper"),  # a typo must not be ignored
        ("matching:\n  upper: 0.3\n  lower: 0.6\n", ".yaml", "lower threshold"),
        ('{"matching": {"upper": 2}}', ".json", "upper"),
        ("{not json", ".json", "identity configuration"),
    ],
)
def test_a_bad_identity_file_stops_the_hub_naming_the_problem(
    tmp_path: Path, text: str, suffix: str, needle: str
) -> None:
    path = tmp_path / f"identity{suffix}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=needle) as info:
        Hub(Settings(identity_config=path))
    assert str(path) in str(info.value)


def test_a_missing_identity_file_stops_the_hub(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="identity configuration"):
        Hub(Settings(identity_config=tmp_path / "nowhere.yaml"))


def test_the_model_folder_supplies_fitted_models(tmp_path: Path) -> None:
    fitted = Model.default("customer", prior=0.0123)
    fitted.notes = ["fitted on the legacy backlog"]
    (tmp_path / "customer.json").write_text(json.dumps(fitted.to_dict()), encoding="utf-8")
    flow = identity_flow(Hub(Settings(identity_model_dir=tmp_path)))
    assert flow.models["customer"].prior == 0.0123
    # no material.json: materials score with the defaults
    assert "default parameters" in flow.models["material"].notes[0]


def test_a_missing_or_broken_model_folder_stops_the_hub(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        Hub(Settings(identity_model_dir=tmp_path / "models"))
    (tmp_path / "customer.json").write_text('{"entity": "customer"}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"customer\.json is not a model"):
        Hub(Settings(identity_model_dir=tmp_path))
    (tmp_path / "customer.json").write_text(
        json.dumps(Model.default("material").to_dict()), encoding="utf-8"
    )
    with pytest.raises(ValueError, match="holds a material model"):
        Hub(Settings(identity_model_dir=tmp_path))
