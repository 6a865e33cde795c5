"""Command-line options more than one area's commands take: moments and decision-time attributes.

Every command reads a date or date-time option with :func:`parse_moment`.

``trustledger score``, ``explain`` and ``whatif`` give a policy's statistical
scorecards their decision-time attributes the same way: ``--attribute NAME=VALUE``
(repeatable) and ``--attributes FILE.json``, read by :func:`parse_attributes`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from trustledger.engine.events import in_utc
from trustledger.errors import InputError

if TYPE_CHECKING:
    from trustledger.policy import CompiledPolicy

def parse_moment(value: str | None, option: str) -> datetime:
    """A command-line date or date-time as aware UTC (a date means midnight UTC); ``None``: now.

    Raises :class:`InputError` (exit 2) naming ``option`` for text that is not ISO 8601
    or whose UTC moment falls outside the years 1-9999 (``0001-01-01T00:00:00+01:00``).
    """
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{option}: {value!r} is not an ISO 8601 date or date-time") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return in_utc(moment)
    except ValueError as exc:
        raise InputError(f"{option}: {exc}") from None


AttributeOption = Annotated[list[str] | None, typer.Option(
    "--attribute", metavar="NAME=VALUE",
    help="A decision-time attribute of a statistical scorecard, NAME=VALUE "
    "(repeatable; read as the feature's type; empty VALUE: missing).")]
"""``--attribute NAME=VALUE``, repeatable; read with :func:`parse_attributes`."""
AttributesOption = Annotated[Path | None, typer.Option(
    "--attributes", metavar="FILE.json",
    help="A JSON file with one object of decision-time attributes "
    "(--attribute wins over it).")]
"""``--attributes FILE.json``; read with :func:`parse_attributes`."""


def parse_attributes(policy: CompiledPolicy, pairs: Sequence[str],
                     file: Path | None) -> dict[str, Any] | None:
    """Decision-time attributes from ``--attributes FILE.json`` and ``--attribute NAME=VALUE``.

    The file is one JSON object, its values taken as they are; each ``--attribute``
    (it wins over the file) is read by the type of the statistical feature it feeds:
    a number for a numerical feature, the text as given for a categorical one; an
    empty VALUE is missing (the model's missing bin). An attribute no statistical
    scorecard uses is passed on as text, for the engine to refuse by name. ``None``
    when neither option is given. Raises :class:`InputError` naming the option and
    the attribute.
    """
    if not pairs and file is None:
        return None
    out: dict[str, Any] = {}
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--attributes: cannot read {file}: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"--attributes: {file} is not JSON (line {exc.lineno}, column "
                             f"{exc.colno}: {exc.msg})") from exc
        if not isinstance(data, dict):
            raise InputError(f"--attributes: {file} must hold one JSON object of NAME: VALUE, "
                             f"not {type(data).__name__}")
        out.update(data)
    numerical = {f.attribute: (f.numerical, f"{card.name}.{f.name}")
                 for card in policy.scorecards.values() if card.model is not None
                 for f in card.model.features if f.attribute is not None}
    given: set[str] = set()
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InputError(f"--attribute {pair!r}: expected NAME=VALUE")
        if name in given:
            raise InputError(f"--attribute {name}: given more than once")
        given.add(name)
        kind = numerical.get(name)
        if value == "":
            out[name] = None
        elif kind is not None and kind[0]:
            out[name] = _number(name, value, kind[1])
        else:
            out[name] = value
    return out


def _number(name: str, value: str, feature: str) -> int | float:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise InputError(f"--attribute {name}: {value!r} is not a number (feature {feature} "
                         "is numerical; leave VALUE empty for missing)")
    return number
