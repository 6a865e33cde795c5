"""The fixed category taxonomy and the gravity scale.

Every event type declares one category (in the event-type register). A category is
either *allowed* (a kind of conduct a trust score may legitimately weigh) or *out of
bounds* (safeguard 1: what law and decency forbid scoring). The lists are code, not
configuration: neither a register nor a policy can add a category or re-classify one.

The gravity scale orders both the gravity of events and the severity of
restrictions, so the proportionality safeguard can compare them.
"""

from __future__ import annotations

from dataclasses import dataclass
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

@dataclass(frozen=True)
class CategoryRule:
    """What an allowed category covers, the domains it belongs to and its highest gravity.

    An event type's ``domain`` must be one of ``domains`` (rule ``category-domain``) and
    its ``gravity`` at most ``max_gravity`` (rule ``gravity-cap``): the event-type register
    declares both, and these bounds keep a declaration from moving an event across the
    context firewall or up the gravity scale past what its kind of conduct can weigh.
    """

    description: str
    domains: frozenset[str]
    max_gravity: Gravity


def _rule(description: str, domains: str, max_gravity: Gravity) -> CategoryRule:
    return CategoryRule(description, frozenset(domains.split()), max_gravity)


_G = Gravity
CATEGORY_RULES: Final = MappingProxyType(
    {
        "credit_repayment": _rule("repaying loans and credit, on time or late",
                                  "finance commerce", _G.SERIOUS),
        "debt_default": _rule("defaulting on a debt", "finance commerce", _G.SERIOUS),
        "bill_payment": _rule("paying bills and charges, on time or late",
                              "finance commerce housing utilities", _G.MODERATE),
        "contract_performance": _rule(
            "keeping or breaching a commercial or private contract",
            "commerce finance housing rental transport utilities", _G.SERIOUS),
        "guarantee": _rule(
            "honouring a guarantee given for someone else's debt, as a guarantor",
            "finance", _G.SERIOUS),
        "rental_conduct": _rule("returning rented goods on time and intact",
                                "rental housing", _G.SERIOUS),
        "identity_verification": _rule("verifying one's own identity", "identity", _G.MINOR),
        "commercial_conduct": _rule("trading honestly: fraud, counterfeits, pyramid selling",
                                    "commerce", _G.GRAVE),
        "financial_conduct": _rule("lawful conduct in lending and fund-raising",
                                   "finance", _G.GRAVE),
        "court_judgement": _rule(
            "a court judgement or arbitration award against the subject, in the domain of "
            "the dispute it settles",
            "commerce finance housing rental utilities", _G.GRAVE),
        "public_service_fees": _rule("paying fees for public services", "utilities civic",
                                     _G.MODERATE),
        "public_utility_use": _rule(
            "lawful use of public utilities: theft, tampering, damage", "utilities", _G.GRAVE),
        "traffic_conduct": _rule("road traffic offences dealt with by a ticket or fine",
                                 "transport", _G.SERIOUS),
        "traffic_crime": _rule(
            "a court conviction for a road-traffic crime (drunk, reckless or hit-and-run "
            "driving)", "transport", _G.GRAVE),
        "driver_training": _rule("attending remedial driving courses", "transport", _G.MINOR),
        "peer_rating": _rule("peers' ratings of a contribution's usefulness (votes, accepts)",
                             "community", _G.MINOR),
        "platform_conduct": _rule(
            "conduct on a platform independent of opinion: spam, voting, bounties",
            "community commerce", _G.MODERATE),
        "tax_compliance": _rule("filing and paying taxes", "tax civic", _G.SERIOUS),
        "licence_compliance": _rule(
            "keeping the terms of a licence or permit",
            "commerce finance housing transport utilities", _G.SERIOUS),
    }
)
"""Each allowed category's rule: what it covers, its domains and its highest gravity.

The domains are a closed vocabulary (:data:`DOMAINS`): a category names a kind of
conduct, and the domain follows from it (a traffic offence is ``transport``, a debt
default ``finance`` or ``commerce``), so no register can file a court judgement under
``transport`` or put every event into one umbrella domain. The gravity caps follow the
worst conduct the category covers: a ticket (``traffic_conduct``) is at most
``serious``, only a conviction (``traffic_crime``) may be ``grave``; a late bill is at
most ``moderate``; a vote or a verification is ``minor``.
"""

ALLOWED_CATEGORIES: Final = MappingProxyType(
    {name: rule.description for name, rule in CATEGORY_RULES.items()})
"""Categories a policy may score, with what each covers."""

DOMAINS: Final = frozenset().union(*(rule.domains for rule in CATEGORY_RULES.values()))
"""Every domain an event type may be in: the union of the categories' domains."""

_CREDIT = "finance commerce"
FEATURE_DOMAINS: Final = MappingProxyType({
    "repayment_history": frozenset(_CREDIT.split()),
    "amounts_owed": frozenset(_CREDIT.split()),
    "credit_history": frozenset(_CREDIT.split()),
    "loan_terms": frozenset(_CREDIT.split()),
    "obligations": frozenset(_CREDIT.split()),
    "assets": frozenset(f"{_CREDIT} housing rental".split()),
    "income_and_employment": frozenset(f"{_CREDIT} housing rental".split()),
    "housing": frozenset(f"{_CREDIT} housing rental".split()),
    "contact_and_identity": DOMAINS,
    "behaviour_record": DOMAINS,
})
"""The domains a statistical scorecard may be in, by the category of a feature it is fed
from a decision-time attribute (the categories of :mod:`trustledger.models.features`).

A credit model (repayment history, amounts owed, loan terms) is ``finance`` or
``commerce``: it cannot be declared ``transport`` to restrict travel (rule
``category-domain``). Identity and ledger-metric features bound nothing: a metric's
events bring their own domains."""

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


def category_table() -> str:
    """The allowed categories as a Markdown table: what each covers, its domains, its cap.

    ``docs/safeguards.md`` holds the table; a test compares it with this one.
    """
    lines = ["| category | covers | domains | at most |", "|---|---|---|---|"]
    for name, rule in CATEGORY_RULES.items():
        domains = ", ".join(f"`{d}`" for d in sorted(rule.domains))
        lines.append(f"| `{name}` | {rule.description} | {domains} | "
                     f"`{rule.max_gravity.value}` |")
    return "\n".join(lines) + "\n"
