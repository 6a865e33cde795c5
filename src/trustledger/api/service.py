"""The service's state: the ledger, what it knows of it, the access log, keys and limits.

One :class:`Service` per process, created by :func:`trustledger.api.create_app`
and stored on ``app.state``. The routers call it; it calls the ledger, the
principals and the engine. Methods are synchronous (they run in the server's
thread pool); each request begins with :meth:`Service.begin`, which brings the
:class:`~trustledger.api.view.LedgerView` up to date and re-checks the caller's
key if any principal changed meanwhile.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from starlette.concurrency import run_in_threadpool

from trustledger.api.access import AccessLog
from trustledger.api.limits import Limiter
from trustledger.api.settings import Settings
from trustledger.api.statistics import StatisticsCache
from trustledger.api.view import LedgerView
from trustledger.principals import (
    AuthenticationError,
    PermissionDeniedError,
    Principal,
    Role,
    ServiceLedger,
    authenticate,
    get_principal,
    key_hash,
    well_formed,
)


def _with_article(role: Role) -> str:
    """The role in words with its article: "an operator", "a relying party"."""
    name = role.value.replace("_", " ")
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the principal, as of principal epoch ``epoch``, and the request."""

    principal: Principal
    epoch: int
    request_id: str | None
    arrived: float

    def require(self, *roles: Role) -> None:
        """:class:`PermissionDeniedError` unless the caller has one of ``roles``."""
        if self.principal.role not in roles:
            allowed = " or ".join(_with_article(r) for r in roles)
            raise PermissionDeniedError(
                f"this endpoint is for {allowed}; the key of {self.principal.name!r} is "
                f"{_with_article(self.principal.role)}'s key")

    def require_subject(self, subject: str) -> None:
        """Only the subject themself: :class:`PermissionDeniedError` for anyone else."""
        self.require(Role.SUBJECT)
        if self.principal.subject != subject:
            raise PermissionDeniedError(
                "a subject may see and change only their own data; this key speaks for "
                "another subject")


class Service:
    """Everything a request needs, shared by all requests of one process."""

    def __init__(self, ledger: ServiceLedger, settings: Settings) -> None:
        """Wrap an open ledger (closed by :meth:`close`)."""
        self.ledger = ledger
        self.settings = settings
        self.view = LedgerView(ledger, subject_cache=settings.subject_cache)
        self.access_log = AccessLog(ledger)
        self.limiter = Limiter(settings.rate_limit, settings.burst_seconds,
                               settings.max_in_flight)
        self.statistics = StatisticsCache(ledger, self.view, settings)
        self._keys: dict[str, tuple[int, Principal]] = {}
        self._keys_lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings) -> Service:
        """Open the ledger named by the settings (migrating it) and build the service.

        The ledger takes the service's clock, so what the service records (consents,
        disputes, reviews) is recorded at the same "now" its answers are computed for.
        """
        return cls(ServiceLedger.open(settings.database_url, clock=settings.clock), settings)

    def close(self) -> None:
        """Stop the statistics computation, finish the access log's commits, close the ledger."""
        self.statistics.close()
        self.access_log.close()
        self.view.close()
        self.ledger.close()

    def now(self) -> datetime:
        """The service's clock."""
        return self.settings.clock()

    # -- authentication ----------------------------------------------------------------------

    def cached_principal(self, key: str) -> tuple[int, Principal] | None:
        """The principal of a key seen before, if no principal changed since."""
        with self._keys_lock:
            found = self._keys.get(key_hash(key))
        if found is not None and found[0] == self.view.principal_epoch:
            return found
        return None

    def authenticate(self, key: str) -> tuple[int, Principal]:
        """The principal holding ``key`` and the epoch it was read at (401 if none)."""
        if not well_formed(key):
            raise AuthenticationError("the API key is malformed: keys are 'tl_' followed by "
                                      "43 URL-safe base64 characters, as issued")
        self.view.sync()
        epoch = self.view.principal_epoch
        principal = authenticate(self.ledger, key)
        with self._keys_lock:
            if len(self._keys) > 100_000:
                self._keys.clear()
            self._keys[key_hash(key)] = (epoch, principal)
        return epoch, principal

    def begin(self, caller: Caller) -> None:
        """Bring the view up to date; refuse the caller if their key was revoked meanwhile."""
        self.view.sync(caller.arrived)
        if caller.epoch != self.view.principal_epoch:
            self._recheck(caller)

    async def begin_async(self, caller: Caller) -> None:
        """:meth:`begin` for the event loop (the database is read by other threads)."""
        await self.view.sync_async(caller.arrived)
        if caller.epoch != self.view.principal_epoch:
            await run_in_threadpool(self._recheck, caller)

    def _recheck(self, caller: Caller) -> None:
        current = get_principal(self.ledger, caller.principal.id)
        if current.revoked_at is not None:
            raise AuthenticationError(f"the API key was revoked at "
                                      f"{current.revoked_at.isoformat()}: ask the operator "
                                      "for a new key")
