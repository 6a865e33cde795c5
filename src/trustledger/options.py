"""Command-line options more than one area's commands take, and JSON output.

Every command reads a date or date-time option with :func:`parse_moment`; every list
and report command takes ``--json`` (:data:`JsonFlag`) and writes one JSON document to
standard output with :func:`print_json` (full ids, ISO 8601 times) instead of a table.
Tables are :func:`table` with :func:`id_column` for ids a later command takes (never
cut or folded) and :func:`text_column` for text that folds: they fit 80 columns.

``trustledger score``, ``explain`` and ``whatif`` give a policy's statistical
scorecards their decision-time attributes the same way: ``--attribute NAME=VALUE``
(repeatable) and ``--attributes FILE.json``, read by :func:`parse_attributes`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from trustledger.errors import InputError
from trustledger.events import in_utc

if TYPE_CHECKING:
    from trustledger.policy import CompiledPolicy

DatabaseOption = Annotated[str | None, typer.Option(
    "--database-url", metavar="URL", show_default=False,
    help="Ledger database URL (default: $TRUSTLEDGER_DATABASE_URL, else SQLite in the "
         "data folder).")]
"""``--database-url URL``: the ledger to open (``Ledger.open(url)``)."""
AtOption = Annotated[str | None, typer.Option(
    "--at", metavar="WHEN", show_default=False,
    help="Valid time, ISO 8601 date or date-time (default: now, UTC).")]
"""``--at WHEN``: the moment asked about; read with :func:`parse_moment`."""
KnownAtOption = Annotated[str | None, typer.Option(
    "--known-at", metavar="WHEN", show_default=False,
    help="Only events recorded by then count (default: all).")]
"""``--known-at WHEN``: the knowledge limit; read with :func:`parse_moment`."""
JsonFlag = Annotated[bool, typer.Option(
    "--json", help="Print JSON (full ids, ISO 8601 times) instead of a table.")]
"""``--json``: print the command's result with :func:`print_json`."""


def table(*, title: str | None = None, **options: Any) -> Table:
    """A table that fits the terminal: a rule under the header, no outer frame."""
    return Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                 collapse_padding=True, **options)


def id_column(grid: Table, header: str, ids: Sequence[str], **options: Any) -> None:
    """Add a column of ids shown whole: never folded or cut, however narrow the terminal."""
    grid.add_column(header, no_wrap=True, overflow="ignore",
                    min_width=max((len(i) for i in ids), default=len(header)), **options)


def text_column(grid: Table, header: str, **options: Any) -> None:
    """Add a column of text that folds onto more lines rather than being cut."""
    grid.add_column(header, overflow="fold", **options)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: dataclasses, mappings, sequences, times and enums."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def print_json(value: Any) -> None:
    """Write ``value`` (see :func:`jsonable`) to standard output as indented JSON."""
    sys.stdout.write(json.dumps(jsonable(value), indent=2, ensure_ascii=False) + "\n")

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
