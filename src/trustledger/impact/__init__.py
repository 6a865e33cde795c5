"""Policy impact assessment: what a policy does to a population over time, before it goes live.

``trustledger impact POLICY`` simulates a synthetic population living under a policy
month by month (:func:`simulate`, driven by a :class:`Scenario`) and reports score
distributions, inequality, mobility, recovery after one adverse event, group shares under
each measure and threshold crossings — aggregates only, small cells suppressed. See
``docs/impact.md``.
"""

from trustledger.impact.scenario import Scenario, default_scenario, load_scenario, parse_scenario
from trustledger.impact.simulate import REPORT_FORMAT, simulate

__all__ = ["REPORT_FORMAT", "Scenario", "default_scenario", "load_scenario", "parse_scenario",
           "simulate"]
