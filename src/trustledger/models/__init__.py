"""Statistical scorecards: trained with optbinning, scored by a compiled path, with reasons.

The API the policy engine calls::

    from trustledger.models import CompiledScorecard

    card = CompiledScorecard.load(models_dir, content_hash)   # verifies the hash
    result = card.score({"late_payments_12m": 2.0, "housing": "rent", ...})
    result.points, result.feature_points, result.reasons       # reasons: up to four
    batch = card.score_batch({"late_payments_12m": array, ...})  # vectorised

Training (``trustledger model train``) lives in :mod:`trustledger.models.train`;
the protected-attribute rules in :mod:`trustledger.models.features`; audit data, the
proxy screen and a model's audit status in :mod:`trustledger.models.audit`. The policy
linter asks ``audit_status(artifact).audited`` (or ``is_audited(artifact)``): a
restriction may not depend on an unaudited model.
"""

from trustledger.models.artifact import (
    ArtifactIntegrityError,
    FeatureBins,
    ScorecardArtifact,
    load_artifact,
    save_artifact,
)
from trustledger.models.audit import AuditStatus, audit_status, is_audited
from trustledger.models.compiled import (
    MAX_REASONS,
    BatchScores,
    CompiledScorecard,
    FeatureValue,
    ReasonCode,
    ScoreResult,
)

__all__ = [
    "MAX_REASONS",
    "ArtifactIntegrityError",
    "AuditStatus",
    "BatchScores",
    "CompiledScorecard",
    "FeatureBins",
    "FeatureValue",
    "ReasonCode",
    "ScoreResult",
    "ScorecardArtifact",
    "audit_status",
    "is_audited",
    "load_artifact",
    "save_artifact",
]
