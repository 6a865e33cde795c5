"""Subject rights: consent (and, as they come, disputes, review, retention and erasure)."""

from trustledger.rights.consent import (
    Consent,
    active_consents,
    consents,
    grant_decision_consent,
    grant_opt_in,
    opt_ins,
    withdraw_consent,
)

__all__ = [
    "Consent",
    "active_consents",
    "consents",
    "grant_decision_consent",
    "grant_opt_in",
    "opt_ins",
    "withdraw_consent",
]
