"""Identity resolution: normalize, block, score (Fellegi-Sunter) and resolve into golden records.

Pure decision logic; the store-backed candidate index and cluster store live in hub/.

    profile = build_profile("customer", record)
    keys = blocking_keys(profile)
    decision = decide(model, config, system, source_id, profile, candidates)
"""

# ruff: noqa: E402 (the compiled build must be on the package path before the imports below)

from flows.identity import native as _native

# before any compiled module is imported: the mypyc build of these very sources, if there is one
NATIVE = _native.activate(__path__)

from flows.identity.batch import (
    BatchResult,
    InputRow,
    PairwiseMetrics,
    evaluate,
    read_rows,
    run_batch,
    write_rows,
)
from flows.identity.blocking import blocking_keys, keys
from flows.identity.config import IdentityConfig
from flows.identity.profile import (
    CUSTOMER,
    MATERIAL,
    Profile,
    build_profile,
    cluster_profile,
    merge_profiles,
)
from flows.identity.resolver import (
    CandidateIndex,
    ClusterStore,
    Decision,
    InMemoryClusters,
    InMemoryIndex,
    Resolver,
    decide,
    golden_id_for,
)
from flows.identity.scoring import FieldEvidence, Model, Score, score
from flows.identity.training import FitReport, fit

__all__ = [
    "CUSTOMER",
    "MATERIAL",
    "BatchResult",
    "CandidateIndex",
    "ClusterStore",
    "Decision",
    "FieldEvidence",
    "FitReport",
    "IdentityConfig",
    "InMemoryClusters",
    "InMemoryIndex",
    "InputRow",
    "Model",
    "PairwiseMetrics",
    "Profile",
    "Resolver",
    "Score",
    "blocking_keys",
    "build_profile",
    "cluster_profile",
    "decide",
    "evaluate",
    "fit",
    "golden_id_for",
    "keys",
    "merge_profiles",
    "read_rows",
    "run_batch",
    "score",
    "write_rows",
]
