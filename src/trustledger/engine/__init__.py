"""Pure evaluation: events and a compiled policy in, scores, tiers, measures and reasons out.

Nothing here reads a clock, a file or a database; time is always an argument.
"""

from trustledger.engine.events import RETRACTION, Event

__all__ = ["RETRACTION", "Event"]
