"""A synthetic credit data set with planted traps, for tests and benchmarks.

Every trap the issue tracker found on real data, planted where it can be measured:

* ``neighbourhood`` — a high-cardinality category (Zipf-sized, most values rare) with a
  small real effect per value: naive binning overfits its rare values;
* ``derogatory_records`` and ``income`` — *informative missingness*: rows that leave
  them blank are far riskier than average, so a neutral missing bin would reward
  blanking;
* ``shopping_segment`` — a *planted proxy*: it follows the protected attribute
  ``ethnicity`` (in the audit file, never in the training data) for 80 % of rows and
  is only weakly predictive;
* ``customer_ref`` — a unique text per row (an identifier: refused as a feature).

:func:`planted_credit` returns the training table (with ``row_id``), the audit table
(``row_id``, ``ethnicity``, ``sex``) and the data dictionary as a JSON-ready document.
Deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trustledger.models.artifact import Json

SEGMENTS = ("a", "b", "c", "d")


@dataclass(frozen=True)
class PlantedCredit:
    """The training table, the audit table, and the data dictionary document."""

    data: pd.DataFrame
    audit: pd.DataFrame
    dictionary: dict[str, Json]


def planted_credit(rows: int, seed: int = 0, *, neighbourhoods: int = 1500) -> PlantedCredit:
    """Generate ``rows`` applicants with the traps above (target ``default``: 1 = bad)."""
    rng = np.random.default_rng(seed)
    ethnicity = np.where(rng.random(rows) < 0.3, "group_b", "group_a")
    sex = np.where(rng.random(rows) < 0.5, "female", "male")
    late = rng.poisson(0.6, rows).astype(np.float64)
    utilisation = rng.beta(2, 3, rows)
    income = np.round(rng.lognormal(10.3, 0.45, rows), -1)
    derogatory = rng.poisson(0.3, rows).astype(np.float64)
    sizes = 1.0 / np.arange(1, neighbourhoods + 1) ** 0.9
    place = rng.choice(neighbourhoods, rows, p=sizes / sizes.sum())
    place_effect = rng.normal(0.0, 0.35, neighbourhoods)
    minority = ethnicity == "group_b"
    follows = rng.random(rows) < 0.8
    segment = np.where(follows, np.where(minority, "d", rng.choice(["a", "b", "c"], rows)),
                       rng.choice(list(SEGMENTS), rows))
    risky = rng.random(rows) < 0.12
    logit = (-1.6 + 0.55 * late + 2.2 * (utilisation - 0.4) - 0.9 * (np.log(income) - 10.3)
             + 0.5 * derogatory + place_effect[place] + 0.15 * (segment == "d")
             + 1.6 * risky)
    bad = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    # Risky applicants leave the damaging fields blank far more often.
    derogatory[rng.random(rows) < np.where(risky, 0.7, 0.04)] = np.nan
    income[rng.random(rows) < np.where(risky, 0.5, 0.06)] = np.nan
    row_id = np.asarray([f"r{i:07d}" for i in range(rows)], dtype=object)
    data = pd.DataFrame({
        "row_id": row_id,
        "late_payments_12m": late,
        "utilisation": np.round(utilisation, 4),
        "income": income,
        "derogatory_records": derogatory,
        "neighbourhood": np.asarray([f"n{p:04d}" for p in place], dtype=object),
        "shopping_segment": segment,
        "customer_ref": np.asarray([f"c-{rng.integers(10**9):09d}-{i}" for i in range(rows)],
                                   dtype=object),
        "default": bad,
    })
    audit = pd.DataFrame({"row_id": row_id, "ethnicity": ethnicity, "sex": sex})
    dictionary: dict[str, Json] = {"columns": {
        "late_payments_12m": {"category": "repayment_history",
                              "description": "Late payments in the last 12 months"},
        "utilisation": {"category": "amounts_owed", "description": "Credit utilisation"},
        "income": {"category": "income_and_employment", "description": "Monthly income"},
        "derogatory_records": {"category": "repayment_history",
                               "description": "Derogatory public records"},
        "neighbourhood": {"category": "housing", "description": "Neighbourhood of residence"},
        "shopping_segment": {"category": "contact_and_identity",
                             "description": "Retail shopping segment"},
        "customer_ref": {"category": "contact_and_identity",
                         "description": "Customer reference"},
        "ethnicity": {"category": "racial_or_ethnic_origin", "description": "Ethnic origin"},
        "sex": {"category": "sex", "description": "Sex"},
    }}
    return PlantedCredit(data, audit, dictionary)
