"""ISO 8601 durations (``P5Y``, ``P6M``, ``P30D``, ``PT12H``) with calendar arithmetic.

A duration keeps calendar months (years count as 12 months) apart from exact
days and seconds, because "five years after 29 February 2024" is a calendar
question: months are added first, clamping the day to the end of the month
(2024-02-29 + P1Y = 2025-02-28), then days and seconds. This is what SQL's
``timestamp + INTERVAL`` does too, so columnar evaluation can agree exactly.

A half-life needs an exact length, so it must not use years or months
(:attr:`Duration.exact_seconds` is ``None`` for those).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_PATTERN = re.compile(
    r"^P(?!$)(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)
DURATION_REGEX = _PATTERN.pattern
"""The accepted syntax, for the JSON Schema: whole numbers of Y, M, W, D, H, M, S."""

LONGEST_YEARS = 200
"""The longest duration a policy may state. Expiry, overhang and retention are added to event
dates, so an unbounded one (``P7000Y``) would run past the calendar's year 9999."""

_DAYS_PER_MONTH = 365.2425 / 12


@dataclass(frozen=True, slots=True)
class Duration:
    """A non-negative length of time: calendar months, then exact days and seconds."""

    months: int = 0
    days: int = 0
    seconds: int = 0

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Parse an ISO 8601 duration such as ``P5Y``, ``P1Y6M``, ``P30D``, ``PT12H``.

        Raises :class:`ValueError` naming the accepted syntax.
        """
        match = _PATTERN.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ValueError(
                f"{text!r} is not an ISO 8601 duration (e.g. P5Y, P6M, P2W, P30D, PT12H)"
            )
        part = {k: int(v) if v else 0 for k, v in match.groupdict().items()}
        duration = cls(
            months=part["y"] * 12 + part["mo"],
            days=part["w"] * 7 + part["d"],
            seconds=part["h"] * 3600 + part["mi"] * 60 + part["s"],
        )
        if duration.is_zero:
            raise ValueError(f"{text!r} is a zero duration; a duration must be positive")
        length_days = duration.months * _DAYS_PER_MONTH + duration.days + duration.seconds / 86400
        if length_days > LONGEST_YEARS * 365.2425:
            raise ValueError(f"{text!r} is longer than {LONGEST_YEARS} years, the longest "
                             "duration a policy may state")
        return duration

    @property
    def is_zero(self) -> bool:
        """True for a zero-length duration."""
        return self.months == 0 and self.days == 0 and self.seconds == 0

    @property
    def exact_seconds(self) -> float | None:
        """The length in seconds, or ``None`` when it has calendar years or months."""
        if self.months:
            return None
        return float(self.days * 86400 + self.seconds)

    def after(self, moment: datetime) -> datetime:
        """``moment`` plus this duration (months first, day clamped to the month's end)."""
        return _add_months(moment, self.months) + timedelta(days=self.days, seconds=self.seconds)

    def before(self, moment: datetime) -> datetime:
        """``moment`` minus this duration (days and seconds first, then months)."""
        return _add_months(moment - timedelta(days=self.days, seconds=self.seconds), -self.months)

    def __str__(self) -> str:
        years, months = divmod(self.months, 12)
        hours, rest = divmod(self.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        date = "".join(f"{n}{u}" for n, u in ((years, "Y"), (months, "M"), (self.days, "D")) if n)
        time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
        return "P" + date + (f"T{time}" if time else "") if (date or time) else "PT0S"

    def describe(self) -> str:
        """Plain words for reasons and messages: ``5 years``, ``30 days``, ``1 year 6 months``."""
        years, months = divmod(self.months, 12)
        hours, rest = divmod(self.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        parts = [
            f"{n} {unit}{'' if n == 1 else 's'}"
            for n, unit in (
                (years, "year"),
                (months, "month"),
                (self.days, "day"),
                (hours, "hour"),
                (minutes, "minute"),
                (seconds, "second"),
            )
            if n
        ]
        return " ".join(parts) if parts else "0 seconds"


def _add_months(moment: datetime, months: int) -> datetime:
    if not months:
        return moment
    index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)
