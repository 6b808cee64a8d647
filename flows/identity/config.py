"""Configuration of identity resolution, with defaults that need no tuning to start.

Problems are reported as ``ConfigIssue`` (key path, offending value, rule) so that a file an
operator wrote can be corrected from the message alone; ``config_file`` adds the file's name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flows.identity.scoring import COMPARISONS

Loc = tuple[str | int, ...]
# entity -> comparison -> level -> probability
Overrides = dict[str, dict[str, dict[str, float]]]
# entity -> match probability
Thresholds = dict[str, float]
# The merge threshold of each entity unless the configuration says otherwise. Customers 0.6:
# with names weighed per frequency bucket the model is calibrated, and a pair it rates between
# 0.5 and 0.6 (a name and little else) goes to review. Measured (decision 51b): Latin precision
# back above 0.99 (0.9944 / 0.9919; 0.9897 / 0.9855 at 0.5), Chinese recall 0.982-0.987 on three
# 20,000-record seeds and 0.9700 at 100,000 (0.7 cost 100,000 records recall: 0.9659).
# Materials lose recall above 0.5.
DEFAULT_UPPER: Thresholds = {"customer": 0.6, "material": 0.5}


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration: where (key path), what value, which rule."""

    loc: Loc
    value: object
    rule: str

    @property
    def path(self) -> str:
        return ".".join(str(part) for part in self.loc) or "(top level)"

    def __str__(self) -> str:
        return f"{self.path} = {show(self.value)}: {self.rule}"


class ConfigIssues(ValueError):
    """Issues raised inside a validator; pydantic keeps the exception, so its key paths survive
    the wrapping and are joined to the path of the model that raised them."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("; ".join(str(i) for i in self.issues))


def show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _names(items: Sequence[str] | Mapping[str, Any]) -> str:
    return ", ".join(items)


def _comparisons(entity: str) -> dict[str, tuple[str, ...]]:
    return {c.name: c.labels for c in COMPARISONS[entity]}


def _levels(
    entity: str, comparison: str, levels: Any, loc: Loc, issues: list[ConfigIssue], what: str
) -> dict[str, float]:
    labels = _comparisons(entity)[comparison]
    if not isinstance(levels, Mapping):
        issues.append(
            ConfigIssue(loc, levels, f"must map levels of {comparison!r} to a probability")
        )
        return {}
    out: dict[str, float] = {}
    for label, value in levels.items():
        where = (*loc, label)
        if label not in labels:
            rule = f"unknown level {label!r} of {what}; valid levels: "
            issues.append(ConfigIssue(where, value, rule + _names(labels)))
        elif isinstance(value, bool) or not isinstance(value, int | float):
            issues.append(ConfigIssue(where, value, "must be a number, a probability"))
        elif not 0 < value <= 1:
            issues.append(ConfigIssue(where, value, "must be a probability: 0 < value <= 1"))
        else:
            out[str(label)] = float(value)
    return out


def per_entity_overrides(value: Any) -> Overrides:
    """`m` / `u` as {entity: {comparison: {level: value}}}, from either accepted form.

    Keyed by entity (``{material: {spec: {exact: 0.98}}}``): the comparisons of that entity.
    Flat (``{spec: {exact: 0.98}}``, the older form): a name applies to every entity that has
    that comparison (``id`` and ``weak_id`` to both, ``spec`` to materials); a name no entity
    has is refused. Entity names and comparison names never coincide, so the form is known from
    the keys; mixing the two is refused rather than given a precedence nobody would guess.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        rule = "must be a mapping {entity: {comparison: {level: probability}}}"
        raise ConfigIssues([ConfigIssue((), value, rule)])
    issues: list[ConfigIssue] = []
    out: Overrides = {}
    by_entity = [k for k in value if k in COMPARISONS]
    if by_entity and len(by_entity) < len(value):
        for key in value:
            if key not in COMPARISONS:
                rule = (
                    f"the per-entity form ({_names(by_entity)}: ...) and the flat form are mixed; "
                    f"put {key!r} under {_names(COMPARISONS)}"
                )
                issues.append(ConfigIssue((key,), value[key], rule))
        raise ConfigIssues(issues)
    if by_entity:
        for entity, comparisons in value.items():
            known = _comparisons(entity)
            if not isinstance(comparisons, Mapping):
                rule = f"must map comparisons of {entity} to their levels"
                issues.append(ConfigIssue((entity,), comparisons, rule))
                continue
            for name, levels in comparisons.items():
                if name not in known:
                    rule = f"unknown comparison {name!r} of {entity}; valid: {_names(known)}"
                    issues.append(ConfigIssue((entity, name), levels, rule))
                    continue
                what = f"{entity} comparison {name!r}"
                got = _levels(entity, name, levels, (entity, name), issues, what)
                out.setdefault(entity, {})[str(name)] = got
    else:
        for name, levels in value.items():
            owners = [e for e in COMPARISONS if name in _comparisons(e)]
            if not owners:
                valid = "; ".join(f"{e}: {_names(_comparisons(e))}" for e in COMPARISONS)
                rule = f"unknown comparison {name!r} (no entity has it); valid: {valid}"
                issues.append(ConfigIssue((name,), levels, rule))
                continue
            for entity in owners:
                # a shared comparison (id, weak_id) has the same levels in every entity:
                # report a wrong level once
                found: list[ConfigIssue] = []
                got = _levels(entity, name, levels, (name,), found, f"comparison {name!r}")
                issues.extend(i for i in found if i not in issues)
                out.setdefault(entity, {})[str(name)] = got
    if issues:
        raise ConfigIssues(issues)
    return out


def per_entity_threshold(value: Any, default: Thresholds) -> Thresholds:
    """`upper` as {entity: probability}, from a number (every entity) or a mapping.

    A mapping names the entities it changes (``{customer: 0.8}``); the others keep `default`.
    Every problem is reported at once, each with its key path, value and rule.
    """
    number = "a probability: 0 < value < 1"
    rule = "must be " + number
    if isinstance(value, Mapping):
        issues: list[ConfigIssue] = []
        out = dict(default)
        for entity, threshold in value.items():
            if entity not in COMPARISONS:
                issues.append(
                    ConfigIssue(
                        (entity,),
                        threshold,
                        f"unknown entity {entity!r}; valid entities: {_names(COMPARISONS)}",
                    )
                )
            elif isinstance(threshold, bool) or not isinstance(threshold, int | float):
                issues.append(ConfigIssue((entity,), threshold, "must be a number, " + number))
            elif not 0 < threshold < 1:
                issues.append(ConfigIssue((entity,), threshold, rule))
            else:
                out[str(entity)] = float(threshold)
        if issues:
            raise ConfigIssues(issues)
        return out
    if isinstance(value, bool) or not isinstance(value, int | float):
        shape = "must be a probability (every entity) or a mapping {entity: probability} of "
        raise ConfigIssues([ConfigIssue((), value, shape + _names(COMPARISONS))])
    if not 0 < value < 1:
        raise ConfigIssues([ConfigIssue((), value, rule)])
    return {entity: float(value) for entity in COMPARISONS}


class IdentityConfig(BaseModel):
    """Thresholds, parameter overrides and limits.

    `upper`/`lower` are match probabilities: at or above `upper` a record merges into the best
    candidate, between them it becomes its own golden record and goes to the review queue with
    that candidate, below `lower` it is a new golden record. `upper` is per entity (a number in
    a file sets every entity, a mapping the entities it names; read it with `upper_for`).
    """

    model_config = ConfigDict(extra="forbid")

    # Probabilities are per record: candidates compete for it (see resolver.decide). A number
    # sets every entity, a mapping {customer: 0.7} the entities it names (see DEFAULT_UPPER)
    upper: Thresholds = Field(default_factory=lambda: dict(DEFAULT_UPPER))
    lower: float = Field(0.2, gt=0, lt=1)
    # a blocking key shared by more golden records than this is ignored at lookup
    block_cap: int = Field(60, ge=2)
    # candidates scored per record, those sharing most keys first
    max_candidates: int = Field(8, ge=1)
    # values kept per field in a cluster's representative profile
    max_values_per_field: int = Field(12, ge=1)
    default_country: str = "86"
    # a person-name disagreement stops an automatic merge, unless the family name and the
    # birth date agree exactly (see resolver.decide)
    dob_lifts_name_veto: bool = True
    # systems whose part numbers identify a part: two different material codes of one of these
    # systems stop an automatic merge (decision 44). PDM is the engineering master (one drawing
    # number per part); ERP is not listed because one material under several ERP codes
    # (一物多码) is the classic duplicate the hub exists to merge
    distinct_code_systems: list[str] = Field(default_factory=lambda: ["pdm"])

    # fixed parameters instead of estimates, per entity: {"material": {"spec": {"exact": 0.98}}}
    # (the flat {"spec": {...}} is accepted: see per_entity_overrides); prior = P(random match)
    prior: float | None = Field(None, gt=0, lt=1)
    m: Overrides = Field(default_factory=dict)
    u: Overrides = Field(default_factory=dict)
    tf_weight: float = Field(1.0, ge=0)
    # smallest m an estimated level may get: no disagreement is impossible between true matches
    m_floor: float = Field(0.01, ge=0, lt=0.5)

    # below this many usable records m and u keep their defaults and only the prior is fitted
    min_fit_records: int = Field(300, ge=2)
    # estimation budget
    seed: int = 20240601
    u_max_pairs: int = Field(60_000, ge=100)
    em_max_pairs: int = Field(60_000, ge=100)
    em_pairs_per_block: int = Field(20, ge=1)
    em_iterations: int = Field(40, ge=1)
    # EM for m, then prior, then u corrected for the matches among random pairs; repeated
    fit_rounds: int = Field(2, ge=1)
    tf_max_values: int = Field(200_000, ge=0)
    prior_block_size: int = Field(8, ge=2)
    prior_max_pairs: int = Field(1_000_000, ge=100)

    @field_validator("m", "u", mode="before")
    @classmethod
    def _per_entity(cls, value: Any) -> Overrides:
        return per_entity_overrides(value)

    @field_validator("upper", mode="before")
    @classmethod
    def _per_entity_upper(cls, value: Any) -> Thresholds:
        return per_entity_threshold(value, DEFAULT_UPPER)

    @model_validator(mode="after")
    def _ordered(self) -> IdentityConfig:
        below = [f"{e} {t:g}" for e, t in self.upper.items() if self.lower > t]
        if below:
            rule = f"lower threshold must not exceed upper threshold ({', '.join(below)})"
            raise ConfigIssues([ConfigIssue(("lower",), self.lower, rule)])
        return self

    def upper_for(self, entity: str) -> float:
        """The merge threshold of `entity`."""
        return self.upper[entity]
