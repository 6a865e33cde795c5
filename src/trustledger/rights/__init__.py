"""Subject rights: consent, disputes, human review, the access log, retention and erasure.

Each right is a set of ledger records about the subject with a pure fold and a few
ledger helpers (one module per right). Scoring applies them around the single
``evaluate`` call (:func:`trustledger.scoring.assess_subject`). Built on top of
scoring, and imported from their modules: :mod:`trustledger.rights.whatif`
(what-if and "what it takes"), :mod:`trustledger.rights.report` (the subject's
full report; :mod:`~trustledger.rights.html` renders it as a printable page) and
:mod:`trustledger.rights.commands` (the CLI). See docs/rights.md.
"""

from trustledger.rights.access import Access, access_log, fold_access, record_access
from trustledger.rights.consent import (
    Consent,
    active_consents,
    consents,
    fold_consents,
    grant_decision_consent,
    grant_opt_in,
    opt_ins,
    withdraw_consent,
)
from trustledger.rights.dispute import (
    Answer,
    Dispute,
    DisputeStatus,
    Outcome,
    add_dispute_information,
    answer_dispute,
    disputes,
    fold_disputes,
    get_dispute,
    is_adverse,
    open_dispute,
    resolve_dispute,
    split_disputed,
)
from trustledger.rights.erasure import Erasure, erase, erased_at, is_erased
from trustledger.rights.retention import Maintenance, maintain, past_retention
from trustledger.rights.review import (
    Decision,
    Review,
    apply_reviews,
    fold_reviews,
    get_review,
    is_adverse_measure,
    request_review,
    resolve_review,
    reviews,
)

__all__ = [
    "Access",
    "Answer",
    "Consent",
    "Decision",
    "Dispute",
    "DisputeStatus",
    "Erasure",
    "Maintenance",
    "Outcome",
    "Review",
    "access_log",
    "active_consents",
    "add_dispute_information",
    "answer_dispute",
    "apply_reviews",
    "consents",
    "disputes",
    "erase",
    "erased_at",
    "fold_access",
    "fold_consents",
    "fold_disputes",
    "fold_reviews",
    "get_dispute",
    "get_review",
    "grant_decision_consent",
    "grant_opt_in",
    "is_adverse",
    "is_adverse_measure",
    "is_erased",
    "maintain",
    "open_dispute",
    "opt_ins",
    "past_retention",
    "record_access",
    "request_review",
    "resolve_dispute",
    "resolve_review",
    "reviews",
    "split_disputed",
    "withdraw_consent",
]
