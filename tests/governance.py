"""Test helper: put an event-type register in force the way operators do it (two of them).

``put_in_force(ledger)`` proposes ``policies/register.yaml`` with one operator principal
and approves it with a second (each issued if missing): real principals, real ledger
records, the real rules of :mod:`trustledger.registry`. Tests that publish a policy call
it first; tests of an inline old-style policy pass its declarations
(``register_of(text)``, from ``tests/policies/support.split_declarations``).
"""

from __future__ import annotations

from pathlib import Path

from tests.policies.support import split_declarations
from trustledger.ledger import Ledger
from trustledger.policy import parse_register
from trustledger.policy.register import Register
from trustledger.principals import Role, ServiceLedger, add_principal, list_principals
from trustledger.registry import (
    approve_register,
    propose_register,
    register_in_force,
    registers,
)

ROOT = Path(__file__).parent.parent
SHIPPED = ROOT / "policies" / "register.yaml"
"""The register of the shipped policies."""
TEST_PROGRAMMES = Path(__file__).parent / "policies" / "register.yaml"
"""The register of the test policies in ``tests/policies/`` (driving, German credit)."""
PROPOSER = "register-proposer"
APPROVER = "register-approver"


def operators(ledger: Ledger, *names: str) -> None:
    """Issue operator principals of these names unless active ones exist (keys not kept)."""
    governed = ServiceLedger.of(ledger)
    active = {p.name for p in list_principals(governed) if p.role is Role.OPERATOR}
    for name in names:
        if name not in active:
            add_principal(governed, name, Role.OPERATOR)


def put_in_force(ledger: Ledger, register: str | Path = SHIPPED, *,
                 proposer: str = PROPOSER, approver: str = APPROVER) -> Register:
    """Propose ``register`` (a file, or YAML text) as ``proposer``, approve it as ``approver``.

    Nothing is recorded if it is in force already; returns the register in force.
    """
    text = register.read_text(encoding="utf-8") if isinstance(register, Path) else register
    wanted = parse_register(text, str(register) if isinstance(register, Path) else "register")
    if any(p.hash == wanted.hash and p.status == "in_force"
           for p in registers(ledger)):
        return register_in_force(ledger)
    operators(ledger, proposer, approver)
    governed = ServiceLedger.of(ledger)
    proposal = propose_register(governed, text, proposer)
    approve_register(governed, proposal.hash, approver)
    return register_in_force(ledger)


def register_of(policy_text: str) -> str:
    """The register text of an old-style policy that declares its own event types."""
    return split_declarations(policy_text)[0]


def policy_of(policy_text: str) -> str:
    """The policy text of an old-style policy, its declarations moved to the register."""
    return split_declarations(policy_text)[1]



def domains_of(accredited: tuple[str, ...], register: Register | None = None) -> tuple[str, ...]:
    """The domains a source accredited for these types needs (in ``register``, default shipped)."""
    found = register or parse_register(SHIPPED.read_text(encoding="utf-8"), str(SHIPPED))
    return tuple(sorted({found.domain_of(t) for t in accredited}))
