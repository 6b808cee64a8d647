"""Configuration of identity resolution, with defaults that need no tuning to start."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class IdentityConfig(BaseModel):
    """Thresholds, parameter overrides and limits.

    `upper`/`lower` are match probabilities: at or above `upper` a record merges into the best
    candidate, between them it becomes its own golden record and goes to the review queue with
    that candidate, below `lower` it is a new golden record.
    """

    model_config = ConfigDict(extra="forbid")

    # Probabilities are per record: candidates compete for it (see resolver.decide). Measured on
    # labelled data the model is conservative: merges at 0.5 were >99.8% right (bench/).
    upper: float = Field(0.5, gt=0, lt=1)
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

    # fixed parameters instead of estimates: {"name": {"exact": 0.7}}; prior = P(random match)
    prior: float | None = Field(None, gt=0, lt=1)
    m: dict[str, dict[str, float]] = Field(default_factory=dict)
    u: dict[str, dict[str, float]] = Field(default_factory=dict)
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

    @model_validator(mode="after")
    def _ordered(self) -> IdentityConfig:
        if self.lower > self.upper:
            raise ValueError("lower threshold must not exceed upper threshold")
        return self
