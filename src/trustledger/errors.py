"""The one exception tree of trustledger.

Every error a user can reach is a :class:`TrustLedgerError`; it names the field,
rule or entry at fault so the message alone tells what to fix::

    TrustLedgerError
    ├── ConfigError            bad settings (database URL, data folder)
    ├── InputError             bad input; nothing was changed
    │   ├── BatchError         one or more items of a batch are bad (index, field, reason)
    │   └── PolicyError        a policy document is invalid (file, line, column, key path)
    │       └── LintError      a policy breaks a safeguard (rule, element, why)
    ├── ConflictError          same idempotency key, different content; nothing was written
    ├── NotFoundError          a named subject, event, policy or entry does not exist
    │   └── ErasedError        the subject's data was erased on request: there is no data
    └── IntegrityError         the ledger's hash chain does not verify (first broken entry)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class TrustLedgerError(Exception):
    """Root of every error trustledger raises on purpose."""


class ConfigError(TrustLedgerError):
    """A setting (environment variable, option, data folder) is unusable."""


class InputError(TrustLedgerError):
    """Input was refused; nothing was changed."""


@dataclass(frozen=True)
class ItemProblem:
    """One problem with one item of a batch: where it is, which field, and why."""

    index: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"item {self.index}: {self.field}: {self.reason}"


class BatchError(InputError):
    """One or more items of a batch are invalid; the whole batch was refused."""

    def __init__(self, problems: Sequence[ItemProblem]) -> None:
        self.problems = list(problems)
        shown = "; ".join(str(p) for p in self.problems[:20])
        more = f" (and {len(self.problems) - 20} more)" if len(self.problems) > 20 else ""
        super().__init__(f"{len(self.problems)} invalid item(s), nothing written: {shown}{more}")


@dataclass(frozen=True)
class SourceLocation:
    """A place in a policy document: file, 1-based line and column, key path."""

    file: str
    line: int | None
    column: int | None
    path: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.path}" if self.path else where


@dataclass(frozen=True)
class PolicyProblem:
    """One problem found in a policy: where, which rule, and the message."""

    location: SourceLocation
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: [{self.rule}] {self.message}"


class PolicyError(InputError):
    """A policy document is invalid; each problem names file, line, column and key path."""

    def __init__(self, problems: Sequence[PolicyProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class LintError(PolicyError):
    """A policy breaks one or more safeguards; each problem names the rule and element."""


class ConflictError(TrustLedgerError):
    """An idempotency key was reused with different content; nothing was written."""


class NotFoundError(TrustLedgerError):
    """A named thing does not exist."""


class ErasedError(NotFoundError):
    """The subject's data was erased on request: no score and "no data" for relying parties."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        super().__init__(f"subject {subject!r}: no data (erased on request)")


class IntegrityError(TrustLedgerError):
    """The ledger's hash chain does not verify; names the first broken entry."""

    def __init__(self, seq: int, reason: str) -> None:
        self.seq = seq
        self.reason = reason
        super().__init__(f"ledger entry seq={seq}: {reason}")
