"""A maintained evaluation kept packed in memory: its bytes, unpacked for each read.

A :class:`~trustledger.engine.maintained.MaintainedEvaluation` is some 25-30 KB of Python
objects per subject (its history's entries, the measures' replay); kept for every cached
subject they make the garbage collector's full collections long. :class:`PackedState`
keeps only the bytes :func:`~trustledger.engine.compact.pack` makes (a few hundred bytes
for ``policies/sesame.yaml``, the same the database stores) and a few numbers; a read
unpacks them (lean: no event read, no history built, no replay) and reads at the moment
asked, exactly as the packed object would have (a property test checks it against
:func:`~trustledger.engine.evaluate`). A read that processed decision instants (an
entry stopped counting, a holding time ended since the state was packed) gives a new
:class:`PackedState` packed after it, so the next read starts from there.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from trustledger.engine.compact import moments, pack, unpack
from trustledger.engine.history import ts
from trustledger.engine.maintained import Declared, MaintainedEvaluation
from trustledger.engine.result import Evaluation
from trustledger.policy.compiled import CompiledPolicy


@dataclass(frozen=True, slots=True)
class PackedState:
    """A packed maintained evaluation (``data``) and the moments it serves from.

    ``horizon``: reads before it are not served (an event not yet occurred or known);
    ``read``: the moment of its latest read when it was packed (reads go forward).
    """

    policy: CompiledPolicy
    data: bytes
    horizon: float
    read: float

    @classmethod
    def of(cls, state: MaintainedEvaluation) -> PackedState:
        """``state`` packed (:func:`~trustledger.engine.compact.pack` raises as it does)."""
        return cls(state.policy, pack(state), state.horizon, state.last_read)

    @classmethod
    def restore(cls, policy: CompiledPolicy, data: bytes) -> PackedState:
        """Packed bytes (from the database) checked readable for ``policy``.

        Only the header is read (:func:`~trustledger.engine.compact.moments`): a
        decision reused from the database never unpacks the state. Raises
        :class:`~trustledger.errors.InputError` as
        :func:`~trustledger.engine.compact.unpack` does (another format or policy
        version, unreadable bytes).
        """
        horizon, read = moments(policy, data)
        return cls(policy, data, horizon, read)

    def serves(self, valid_at: datetime) -> bool:
        """Whether a read at ``valid_at`` equals :func:`~trustledger.engine.evaluate`'s."""
        v = ts(valid_at)
        return v >= self.horizon and v >= self.read

    def evaluation(self, valid_at: datetime, *, declared: Declared | None = None
                   ) -> tuple[Evaluation, PackedState]:
        """The evaluation at ``valid_at`` and the state to keep after it.

        The evaluation is :meth:`MaintainedEvaluation.evaluation`'s; the state to keep is
        this one, or one packed after the read when it processed decision instants. Its
        contributions and event outcomes list only the entries still
        counting (:attr:`MaintainedEvaluation.partial`).

        Raises :class:`~trustledger.errors.InputError` when the read is not
        :meth:`serves` (or names parts the policy does not have).
        """
        state = unpack(self.policy, self.data)
        before = state.position
        result = state.evaluation(valid_at, declared=declared)
        return result, (self if state.position == before else PackedState.of(state))


__all__ = ["PackedState"]
