"""Pure evaluation: events and a compiled policy in, scores, tiers, measures and reasons out.

Nothing here reads a clock, a file or a database; time is always an argument::

    from trustledger.engine import evaluate
    result = evaluate(policy, events, valid_at=..., known_at=..., opt_ins={"sesame"})
"""

from trustledger.engine.evaluate import evaluate
from trustledger.engine.events import RETRACTION, Event
from trustledger.engine.result import (
    Contribution,
    Evaluation,
    EventOutcome,
    FeatureScore,
    MeasureResult,
    MeasureState,
    Reason,
    ScorecardResult,
)

__all__ = [
    "RETRACTION",
    "Contribution",
    "Evaluation",
    "Event",
    "EventOutcome",
    "FeatureScore",
    "MeasureResult",
    "MeasureState",
    "Reason",
    "ScorecardResult",
    "evaluate",
]
