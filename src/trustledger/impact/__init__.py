"""Policy impact assessment: what a policy does to a population over time, before it goes live.

``trustledger impact POLICY`` simulates a synthetic population living under a policy
month by month (:func:`simulate`, driven by a :class:`Scenario`) and reports score
distributions, inequality, mobility, recovery after one adverse event, group shares under
each measure and threshold crossings — aggregates only, small cells suppressed. See
``docs/impact.md``.

The names below are imported on first use, so the command line does not load the
simulation (engine, policy stack, NumPy) until ``trustledger impact`` runs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trustledger.impact.scenario import (
        Scenario,
        default_scenario,
        load_scenario,
        parse_scenario,
    )
    from trustledger.impact.simulate import REPORT_FORMAT, simulate

_WHERE = {
    "REPORT_FORMAT": "trustledger.impact.simulate",
    "Scenario": "trustledger.impact.scenario",
    "default_scenario": "trustledger.impact.scenario",
    "load_scenario": "trustledger.impact.scenario",
    "parse_scenario": "trustledger.impact.scenario",
    "simulate": "trustledger.impact.simulate",
}

__all__ = ["REPORT_FORMAT", "Scenario", "default_scenario", "load_scenario", "parse_scenario",
           "simulate"]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(where), name)
