"""Statistical scorecards: trained with optbinning, scored by a compiled path, with reasons.

The API the policy engine calls::

    from trustledger.models import CompiledScorecard

    card = CompiledScorecard.load(models_dir, content_hash)   # verifies the hash
    result = card.score({"late_payments_12m": 2.0, "housing": "rent", ...})
    result.points, result.feature_points, result.reasons       # reasons: up to four
    batch = card.score_batch({"late_payments_12m": array, ...})  # vectorised

Training (``trustledger model train``) lives in :mod:`trustledger.models.train`;
the protected-attribute rules in :mod:`trustledger.models.features`.
"""

from trustledger.models.artifact import (
    ArtifactIntegrityError,
    FeatureBins,
    ScorecardArtifact,
    load_artifact,
    save_artifact,
)
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
    "BatchScores",
    "CompiledScorecard",
    "FeatureBins",
    "FeatureValue",
    "ReasonCode",
    "ScoreResult",
    "ScorecardArtifact",
    "load_artifact",
    "save_artifact",
]
