"""Principals and their API keys, and the ledger operations the service adds.

ledger = ServiceLedger.open(url)
issued = add_principal(ledger, "bank-a", Role.SOURCE, accreditations=("bill_paid",),
                       domains=("finance",))   # checked against the register in force
issued.key                      # shown once; only its SHA-256 is stored
authenticate(ledger, issued.key).role is Role.SOURCE
revoke_principal(ledger, issued.principal.id)
"""

from trustledger.principals.ledger import Change, Record, ServiceLedger
from trustledger.principals.store import (
    ADDED,
    KINDS,
    REVOKED,
    Audit,
    AuthenticationError,
    Issued,
    PermissionDeniedError,
    Principal,
    Role,
    add_principal,
    authenticate,
    get_principal,
    key_hash,
    list_principals,
    principals,
    revoke_principal,
    rotate_key,
    well_formed,
)

__all__ = [
    "ADDED",
    "KINDS",
    "REVOKED",
    "Audit",
    "AuthenticationError",
    "Change",
    "Issued",
    "PermissionDeniedError",
    "Principal",
    "Record",
    "Role",
    "ServiceLedger",
    "add_principal",
    "authenticate",
    "get_principal",
    "key_hash",
    "list_principals",
    "principals",
    "revoke_principal",
    "rotate_key",
    "well_formed",
]
