"""The fixed category taxonomy and the gravity scale.

Every event type declares one category. A category is either *allowed* (a kind
of conduct a trust score may legitimately weigh) or *out of bounds* (safeguard
1: what law and decency forbid scoring). The lists are code, not configuration:
a policy cannot add a category, and it cannot re-classify one.

The gravity scale orders both the gravity of events and the severity of
restrictions, so the proportionality safeguard can compare them.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Final


class Gravity(StrEnum):
    """How grave an event is, or how severe a restriction is: minor < moderate < serious < grave."""

    MINOR = "minor"
    MODERATE = "moderate"
    SERIOUS = "serious"
    GRAVE = "grave"

    @property
    def rank(self) -> int:
        """Position on the scale, 0 for minor up to 3 for grave."""
        return _GRAVITY_ORDER.index(self)


_GRAVITY_ORDER: Final = (Gravity.MINOR, Gravity.MODERATE, Gravity.SERIOUS, Gravity.GRAVE)

ALLOWED_CATEGORIES: Final = MappingProxyType(
    {
        "credit_repayment": "repaying loans and credit, on time or late",
        "debt_default": "defaulting on a debt",
        "bill_payment": "paying bills and charges, on time or late",
        "contract_performance": "keeping or breaching a commercial or private contract",
        "guarantee": "honouring a guarantee given for someone else's debt, as a guarantor",
        "rental_conduct": "returning rented goods on time and intact",
        "identity_verification": "verifying one's own identity",
        "commercial_conduct": "trading honestly: fraud, counterfeits, pyramid selling",
        "financial_conduct": "lawful conduct in lending and fund-raising",
        "court_judgement": "a court judgement or arbitration award against the subject",
        "public_service_fees": "paying fees for public services",
        "public_utility_use": "lawful use of public utilities: theft, tampering, damage",
        "traffic_conduct": "road traffic offences",
        "driver_training": "attending remedial driving courses",
        "peer_rating": "peers' ratings of a contribution's usefulness (votes, accepts)",
        "platform_conduct": "conduct on a platform independent of opinion: spam, voting, bounties",
        "tax_compliance": "filing and paying taxes",
        "licence_compliance": "keeping the terms of a licence or permit",
    }
)
"""Categories a policy may score, with what each covers."""

OUT_OF_BOUNDS_CATEGORIES: Final = MappingProxyType(
    {
        "political_opinion": (
            "political opinions are a special category of personal data (GDPR Art. 9(1)) "
            "and protected expression (ICCPR Art. 19, 25)"
        ),
        "religious_belief": (
            "religious or philosophical beliefs are a special category of personal data "
            "(GDPR Art. 9(1)); freedom of thought, conscience and religion (ECHR Art. 9)"
        ),
        "speech_expression": (
            "what someone says, posts, comments or messages is protected expression "
            "(ECHR Art. 10, ICCPR Art. 19); scoring it chills speech"
        ),
        "assembly_protest": (
            "freedom of peaceful assembly and protest (ECHR Art. 11, ICCPR Art. 21)"
        ),
        "association": (
            "whom someone knows, associates with, or what other people's scores are is "
            "freedom of association (ECHR Art. 11) and guilt by association"
        ),
        "trade_union": (
            "trade-union membership is a special category of personal data (GDPR Art. 9(1))"
        ),
        "racial_ethnic_origin": (
            "racial or ethnic origin is a special category of personal data (GDPR Art. 9(1)) "
            "and a prohibited ground of discrimination (ICERD)"
        ),
        "health": "data concerning health is a special category of personal data (GDPR Art. 9(1))",
        "genetic_biometric": (
            "genetic and biometric data are special categories of personal data (GDPR Art. 9(1))"
        ),
        "sex_life_orientation": (
            "sex life and sexual orientation are special categories of personal data "
            "(GDPR Art. 9(1))"
        ),
    }
)
"""Categories no policy may score (safeguard 1), each with the legal reason it is refused."""
