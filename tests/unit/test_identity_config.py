"""What a user of EAI_IDENTITY_CONFIG and `dedup batch --config` sees: per-entity m/u overrides
that change that entity's scores only, a misspelled name refused with the file, the key path,
the value and the valid names, and one file format for the hub and the command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contracts.customer import Customer
from contracts.material import Material
from flows.identity.cli import dedup_app
from flows.identity.config import IdentityConfig
from flows.identity.config_file import IdentityConfigError, load_identity_file, load_matching
from flows.identity.flow import IdentityFlow, default_model, flow_of
from flows.identity.profile import build_profile
from flows.identity.scoring import Model, score
from flows.identity.survivorship import DEFAULTS, FIELDS
from hub.runtime import Hub
from hub.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "identity.md"

ORG_A = {"kind": "organization", "name": "深圳市华强电子有限公司", "phones": ["0755-83030000"]}
ORG_B = {"kind": "organization", "name": "华强电子有限公司", "phones": ["0755-83030000"]}
PART_A = {"code": "P-300", "name": "不锈钢304内六角螺钉", "specification": "M3x8", "uom": "PCS"}
PART_B = {"code": "P-301", "name": "十字盘头螺钉", "specification": "M3×8", "uom": "个"}


def write(tmp_path: Path, text: str, name: str = "identity.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def hub_flow(path: Path) -> IdentityFlow:
    flows = [f for f in (flow_of(s) for s in Hub(Settings(identity_config=path)).flows) if f]
    assert len(flows) == 1
    return flows[0]


def weight(model: Model, a: dict[str, object], b: dict[str, object]) -> float:
    entity = model.entity
    return score(model, build_profile(entity, a), build_profile(entity, b)).weight


# --------------------------------------------------------------------- per-entity overrides


def test_a_per_entity_override_changes_that_entity_only(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "matching:\n  m:\n    customer: {org_name: {exact: 0.9}}\n"
        "    material: {spec: {exact: 0.98}}\n",
    )
    flow = hub_flow(path)
    customer, material = flow.models["customer"], flow.models["material"]
    base_c, base_m = default_model("customer"), default_model("material")
    assert customer.params["org_name"].m[0] == 0.9
    assert material.params["spec"].m[0] == 0.98
    # the other levels, the other comparisons and the other entity keep their defaults
    assert customer.params["org_name"].m[1:] == base_c.params["org_name"].m[1:]
    assert customer.params["place"] == base_c.params["place"]
    assert "spec" not in customer.params and "org_name" not in material.params
    # scores: an override moves the pairs of its own entity and no other
    assert weight(customer, ORG_A, ORG_B) > weight(base_c, ORG_A, ORG_B)
    assert weight(material, PART_A, PART_B) > weight(base_m, PART_A, PART_B)
    only_c = default_model("customer", IdentityConfig(m={"customer": {"org_name": {"exact": 0.9}}}))
    only_m = default_model("material", IdentityConfig(m={"customer": {"org_name": {"exact": 0.9}}}))
    assert weight(only_c, ORG_A, ORG_B) > weight(base_c, ORG_A, ORG_B)
    assert weight(only_m, PART_A, PART_B) == weight(base_m, PART_A, PART_B)


def test_the_flat_form_applies_a_name_to_the_entities_that_have_it(tmp_path: Path) -> None:
    # the form the docs and tests used: `spec` stopped the hub before, as customers lack it
    path = write(tmp_path, "matching:\n  m: {spec: {exact: 0.98}, id: {exact: 0.95}}\n")
    config = hub_flow(path).config
    assert config.m == {
        "customer": {"id": {"exact": 0.95}},
        "material": {"spec": {"exact": 0.98}, "id": {"exact": 0.95}},
    }
    assert default_model("material", config).params["spec"].m[0] == 0.98
    assert default_model("customer", config).params["id"].m[0] == 0.95


def assert_refused(tmp_path: Path, text: str, path: str, value: str, rule: str) -> None:
    """The hub does not start on this file, and says which file, key path, value and rule."""
    file = write(tmp_path, text)
    with pytest.raises(IdentityConfigError) as info:
        Hub(Settings(identity_config=file))
    message = str(info.value)
    assert message.startswith(f"identity configuration {file}: ")
    assert f"{path} = {value}: " in message
    assert rule in message


@pytest.mark.parametrize(
    ("text", "path", "value", "rule"),
    [
        # a comparison of the other entity
        (
            "matching:\n  m:\n    customer: {spec: {exact: 0.98}}\n",
            "matching.m.customer.spec",
            "{'exact': 0.98}",
            "unknown comparison 'spec' of customer; valid: id, weak_id, org_name",
        ),
        # a name no entity has
        (
            "matching:\n  u: {spce: {exact: 0.001}}\n",
            "matching.u.spce",
            "{'exact': 0.001}",
            "unknown comparison 'spce' (no entity has it); valid: customer: id",
        ),
        (
            "matching:\n  m:\n    material: {spec: {exakt: 0.98}}\n",
            "matching.m.material.spec.exakt",
            "0.98",
            "unknown level 'exakt' of material comparison 'spec'; valid levels: exact, else",
        ),
        (
            "matching:\n  m:\n    material: {spec: {exact: 1.5}}\n",
            "matching.m.material.spec.exact",
            "1.5",
            "must be a probability: 0 < value <= 1",
        ),
        (
            "matching:\n  m:\n    material: {spec: {exact: 0.98}}\n    dob: {exact: 0.9}\n",
            "matching.m.dob",
            "{'exact': 0.9}",
            "the per-entity form (material: ...) and the flat form are mixed",
        ),
        (
            "matching:\n  m:\n    materials: {spec: {exact: 0.98}}\n",
            "matching.m.materials",
            "{'spec': {'exact': 0.98}}",
            "unknown comparison 'materials' (no entity has it)",
        ),
        (
            "matching:\n  uper: 0.9\n",
            "matching.uper",
            "0.9",
            "unknown key 'uper'; valid keys: upper",
        ),
        (
            "matching:\n  upper: 0.3\n  lower: 0.6\n",
            "matching.lower",
            "0.6",
            "lower threshold must not exceed upper threshold (customer 0.3, material 0.3)",
        ),
        ("matching:\n  upper: 2\n", "matching.upper", "2", "must be a probability: 0 < value < 1"),
        # per-entity merge thresholds (decision 51)
        (
            "matching:\n  upper: {customer: 0.8, materials: 0.6}\n",
            "matching.upper.materials",
            "0.6",
            "unknown entity 'materials'; valid entities: customer, material",
        ),
        (
            "matching:\n  upper: {customer: 1.5}\n",
            "matching.upper.customer",
            "1.5",
            "must be a probability: 0 < value < 1",
        ),
        (
            "matching:\n  upper: {customer: high}\n",
            "matching.upper.customer",
            "'high'",
            "must be a number, a probability: 0 < value < 1",
        ),
        (
            "matching:\n  upper: [0.7, 0.5]\n",
            "matching.upper",
            "[0.7, 0.5]",
            "must be a probability (every entity) or a mapping {entity: probability} of customer, "
            "material",
        ),
        (
            "matching:\n  upper: {customer: 0.15}\n",
            "matching.lower",
            "0.2",
            "lower threshold must not exceed upper threshold (customer 0.15)",
        ),
        (
            # an entity the mapping leaves out keeps its default (0.5), which counts too
            "matching:\n  upper: {customer: 0.8}\n  lower: 0.6\n",
            "matching.lower",
            "0.6",
            "lower threshold must not exceed upper threshold (material 0.5)",
        ),
        (
            "upper: 0.9\n",
            "upper",
            "0.9",
            "unknown key 'upper'; valid keys: matching, survivorship (a matching setting",
        ),
    ],
)
def test_a_wrong_matching_value_stops_the_hub_naming_file_path_value_and_rule(
    tmp_path: Path, text: str, path: str, value: str, rule: str
) -> None:
    assert_refused(tmp_path, text, path, value, rule)


# --------------------------------------------------------------------- merge threshold


def test_the_merge_threshold_is_per_entity_06_for_customers_05_for_materials() -> None:
    assert IdentityConfig().upper == {"customer": 0.6, "material": 0.5}
    assert IdentityConfig(upper={"customer": 0.8}).upper_for("customer") == 0.8
    assert IdentityConfig(upper={"customer": 0.8}).upper_for("material") == 0.5


@pytest.mark.parametrize(
    ("text", "customer", "material"),
    [
        ("matching:\n  upper: 0.6\n", 0.6, 0.6),  # a number: every entity
        ("matching:\n  upper: {customer: 0.8}\n", 0.8, 0.5),  # a mapping: the others default
        ("matching:\n  upper: {material: 0.55, customer: 0.65}\n", 0.65, 0.55),
        ("upper: {material: 0.4}\n", 0.6, 0.4),  # the keys alone, as `dedup batch` takes them
    ],
)
def test_a_file_sets_the_merge_threshold_for_all_entities_or_per_entity(
    tmp_path: Path, text: str, customer: float, material: float
) -> None:
    config = load_matching(write(tmp_path, text))
    assert (config.upper_for("customer"), config.upper_for("material")) == (customer, material)


# --------------------------------------------------------------------- survivorship names


@pytest.mark.parametrize(
    ("text", "path", "value", "rule"),
    [
        (
            "survivorship:\n  customer:\n    nmae: {rule: priority, sources: [erp, crm]}\n",
            "survivorship.customer.nmae",
            "{'rule': 'priority', 'sources': ['erp', 'crm']}",
            "unknown customer field 'nmae'; valid fields: kind, name, identifiers",
        ),
        (
            "survivorship:\n  material:\n    spec: {rule: recent}\n",
            "survivorship.material.spec",
            "{'rule': 'recent'}",
            "unknown material field 'spec'; valid fields: code, name, specification",
        ),
        (
            "survivorship:\n  custmer:\n    name: {rule: recent}\n",
            "survivorship.custmer",
            "{'name': {'rule': 'recent'}}",
            "unknown key 'custmer'; valid keys: customer, material, default",
        ),
        (
            "survivorship:\n  customer:\n    name: {rule: newest}\n",
            "survivorship.customer.name.rule",
            "'newest'",
            "'priority', 'recent', 'complete' or 'union'",
        ),
        (
            "survivorship:\n  customer:\n    name: {rule: recent, source: [crm]}\n",
            "survivorship.customer.name.source",
            "['crm']",
            "unknown key 'source'; valid keys: rule, sources, only, follows",
        ),
        (
            "survivorship:\n  customer:\n    frozen: {follows: state}\n",
            "survivorship.customer.frozen.follows",
            "'state'",
            "must name a field with a rule of its own; valid: kind, name",
        ),
    ],
)
def test_a_wrong_survivorship_name_stops_the_hub_with_the_valid_names(
    tmp_path: Path, text: str, path: str, value: str, rule: str
) -> None:
    assert_refused(tmp_path, text, path, value, rule)


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "matching:\n  uper: 0.9\nsurvivorship:\n  customer:\n    nmae: {rule: recent}\n",
    )
    with pytest.raises(IdentityConfigError) as info:
        load_identity_file(file)
    assert [i.path for i in info.value.issues] == ["matching.uper", "survivorship.customer.nmae"]
    assert str(info.value).startswith(f"identity configuration {file}: 2 problems\n")


def test_rules_may_name_every_field_of_the_canonical_bodies() -> None:
    assert set(FIELDS["customer"]) == set(Customer.model_fields) | set(DEFAULTS["customer"])
    assert set(FIELDS["material"]) == set(Material.model_fields) | set(DEFAULTS["material"])


# --------------------------------------------------------------------- one format, hub and CLI


def _doc_section() -> tuple[list[str], str]:
    """The YAML examples of docs/identity.md's configuration section and its error output."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("### `EAI_IDENTITY_CONFIG`") : text.index("### `EAI_IDENTITY_MODEL")]
    examples, errors = section.split("#### Errors")
    blocks = re.findall(r"```yaml\n(.*?)```", examples, re.S)
    wrong = re.search(r"```yaml\n(.*?)```\s*```\n(.*?)```", errors, re.S)
    assert blocks and wrong is not None
    return blocks, wrong.group(1) + "\0" + wrong.group(2)


def test_the_documented_examples_load_in_the_hub_and_in_the_command(tmp_path: Path) -> None:
    for n, block in enumerate(_doc_section()[0]):
        file = write(tmp_path, block, f"example{n}.yaml")
        loaded = load_identity_file(file)
        assert hub_flow(file).config == loaded.matching
        assert load_matching(file) == loaded.matching


def test_the_documented_error_output_is_what_the_hub_prints(tmp_path: Path) -> None:
    text, output = _doc_section()[1].split("\0")
    file = write(tmp_path, text)
    with pytest.raises(IdentityConfigError) as info:
        Hub(Settings(identity_config=file))
    shown = "error: " + str(info.value).replace(str(file), "identity.yaml")
    assert shown == output.strip()


def _rows(tmp_path: Path) -> Path:
    parts = [
        ("S1", PART_A),
        ("S2", {**PART_A, "code": "P300", "specification": "M3×8"}),
        ("S3", PART_B),
    ]
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(
            json.dumps({"source_system": "erp", "source_id": sid, "record": body}) + "\n"
            for sid, body in parts
        ),
        encoding="utf-8",
    )
    return src


def _batch(tmp_path: Path, config: Path) -> tuple[int, str, Path]:
    saved = tmp_path / "model.json"
    result = CliRunner().invoke(
        dedup_app,
        [
            "batch",
            "--entity",
            "material",
            "--input",
            str(_rows(tmp_path)),
            "--output",
            str(tmp_path / "out.jsonl"),
            "--config",
            str(config),
            "--save-model",
            str(saved),
        ],
    )
    return result.exit_code, result.output, saved


def test_the_command_takes_the_hubs_file(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "matching:\n  prior: 0.0123\n  m:\n    material: {spec: {exact: 0.97}}\n"
        "survivorship:\n  material:\n    specification: {rule: recent}\n",
    )
    code, output, saved = _batch(tmp_path, config)
    assert code == 0, output
    model = json.loads(saved.read_text(encoding="utf-8"))
    assert model["prior"] == 0.0123
    assert model["params"]["spec"]["m"][0] == 0.97


def test_the_command_still_takes_the_matching_keys_alone(tmp_path: Path) -> None:
    config = write(tmp_path, '{"prior": 0.0123, "m": {"spec": {"exact": 0.97}}}', "m.json")
    code, output, saved = _batch(tmp_path, config)
    assert code == 0, output
    model = json.loads(saved.read_text(encoding="utf-8"))
    assert (model["prior"], model["params"]["spec"]["m"][0]) == (0.0123, 0.97)


def test_the_command_refuses_a_wrong_file_naming_it(tmp_path: Path) -> None:
    config = write(tmp_path, "matching:\n  m:\n    material: {spec: {exakt: 0.98}}\n")
    code, output, _ = _batch(tmp_path, config)
    assert code == 2
    assert f"identity configuration {config}: matching.m.material.spec.exakt = 0.98: " in output
    assert not (tmp_path / "out.jsonl").exists()
