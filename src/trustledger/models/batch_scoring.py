"""Scoring a file of rows: ``trustledger model score``, streamed in Arrow batches.

The input (CSV or Parquet) is read a batch at a time — Parquet with
``ParquetFile.iter_batches``, CSV with ``pyarrow.csv.open_csv`` — and only the model's
feature columns and the id column are read. Each batch is scored by
:meth:`CompiledScorecard.score_batch` (points and reason codes, no per-row Python)
and written at once, so memory is bounded by the batch size, not the file's.

Output: one row per input row, in input order — the id (``--id COLUMN``; else a
column named ``id``; else ``row``, the row number from 1), ``score``, ``reason_1`` …
``reason_4`` (the reason in words; empty or null where there are fewer reasons). A
``.csv`` output is quoted only where a value needs it (RFC 4180); a ``.parquet``
output keeps the id's type, stores the reasons dictionary-encoded and names the model
in its metadata (``trustledger.model``).

Values (the policy of :mod:`trustledger.models.compiled`): an empty cell, ``NaN``,
``NA``, ``null`` or a Parquet null is *missing*; ``inf``/``-inf`` and a text in a
numerical feature are refused, naming the file, the column, the row (data rows from
1: in a CSV, row ``r`` is on line ``r + 1``) and the id when there is one.

Nothing is half-written: the output is checked before any row is read (its type, its
folder, that the folder can be written), written to a temporary file beside it and
renamed at the end; on any error the temporary file is removed. On standard output
the rows of the batches before a bad row have been printed when the error comes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from trustledger.errors import InputError, NotFoundError
from trustledger.models.compiled import (
    MAX_REASONS,
    NOT_A_NUMBER,
    CompiledScorecard,
    FeatureValueError,
    Floats,
    ReasonCodes,
)

BATCH_ROWS = 65_536
"""Rows scored and written at a time (Parquet batches; CSV blocks are cut to it)."""

CSV_BLOCK_BYTES = 16 << 20
"""Bytes of CSV parsed at a time."""

ROW_COLUMN = "row"
"""The output's first column when the input has no id: the row number, from 1."""

MODEL_METADATA_KEY = b"trustledger.model"
"""Parquet output metadata: the content hash of the model that scored the rows."""

FileFormat = Literal["csv", "parquet"]
"""The two file formats read and written."""

_FORMATS: dict[str, FileFormat] = {".csv": "csv", ".txt": "csv", ".parquet": "parquet"}
_NEEDS_QUOTES = r'[",\r\n]'


@dataclass(frozen=True)
class ScoredFile:
    """What :func:`score_file` did: rows scored, by which model, written where."""

    rows: int
    model: str
    id_column: str
    """The output's first column: the input's id column, or ``row``."""
    output: Path | None
    """The file written, or ``None`` for standard output."""


def file_format(path: Path, what: str) -> FileFormat:
    """The format a file name says (``.csv``, ``.txt``, ``.parquet``), or an InputError."""
    found = _FORMATS.get(path.suffix.lower())
    if found is None:
        raise InputError(f"{what} {path}: unknown file type {path.suffix or '(none)'!r}: "
                         "give a .csv or .parquet file")
    return found


def check_output(output: Path, data: Path) -> FileFormat:
    """Check an output path before any work: its type, its folder, not the input itself.

    Whether the folder can be written is checked when the temporary file is made,
    still before the first row is read.
    """
    fmt = file_format(output, "--output")
    folder = output.parent
    if not folder.exists():
        raise InputError(f"--output {output}: folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"--output {output}: {folder} is not a folder")
    if output.is_dir():
        raise InputError(f"--output {output}: is a folder; give a file name")
    if output.exists() and data.exists() and output.samefile(data):
        raise InputError(f"--output {output}: is the data file itself")
    if output.exists() and not os.access(output, os.W_OK):
        raise InputError(f"--output {output}: the file exists and cannot be written")
    return fmt


def score_file(scorecard: CompiledScorecard, data: Path, output: Path | None, *,
               id_column: str | None = None, batch_rows: int = BATCH_ROWS,
               stdout: BinaryIO | None = None) -> ScoredFile:
    """Score every row of ``data`` into ``output`` (CSV or Parquet; ``None``: CSV on stdout).

    ``id_column`` names the input column copied as the output's first column (default:
    ``id`` if there is one, else the row number). Every problem is an
    :class:`InputError` (or :class:`NotFoundError` for a missing data file) naming the
    option, file, column and row; with an ``output`` file nothing is left behind.
    """
    if batch_rows < 1:
        raise InputError(f"batch rows: {batch_rows} is not a positive number")
    fmt = check_output(output, data) if output is not None else "csv"
    source = _Source.open(scorecard, data, id_column, batch_rows)
    sink = _Sink.open(output, fmt, scorecard, source, stdout)
    rows = 0
    try:
        for batch in source.batches():
            codes, points = _score(scorecard, source, batch, rows)
            sink.write(_ids(source, batch, rows), points, codes)
            rows += batch.num_rows
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    return ScoredFile(rows=rows, model=scorecard.hash, id_column=source.id_output_name,
                      output=output)


def _score(scorecard: CompiledScorecard, source: _Source, batch: pa.RecordBatch,
           first_row: int) -> tuple[ReasonCodes, Floats]:
    columns: dict[str, object] = {}
    for f in scorecard.artifact.features:
        arr = batch.column(f.name)
        if f.kind == "numerical":
            columns[f.name] = _numbers(source, f.name, arr, batch, first_row)
        else:
            columns[f.name] = _texts(arr)
    try:
        result = scorecard.score_batch(columns, explain=True, per_feature=False)
    except FeatureValueError as exc:
        assert exc.row is not None
        raise InputError(f"{source.where(exc.feature, first_row + exc.row, batch, exc.row)}: "
                         f"{exc.value} {exc.reason}") from None
    assert result.reason_codes is not None
    return result.reason_codes, result.points


def _numbers(source: _Source, name: str, arr: pa.Array, batch: pa.RecordBatch,
             first_row: int) -> object:
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    t = arr.type
    if pa.types.is_floating(t) or pa.types.is_null(t):
        return arr
    if pa.types.is_integer(t) or pa.types.is_decimal(t):
        return pc.cast(arr, pa.float64())
    if _is_text(t):
        try:
            return pc.cast(arr, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            bad = _first_unparsable(arr)
            if bad is None:
                raise InputError(f"{source.path}: column {name}: {exc}") from exc
            raise InputError(f"{source.where(name, first_row + bad, batch, bad)}: "
                             f"{str(arr[bad].as_py())[:40]!r} {NOT_A_NUMBER}") from None
    raise InputError(f"{source.path}: column {name}: numbers are expected (a numerical "
                     f"feature), the column holds {t}")


def _texts(arr: pa.Array) -> object:
    t = arr.type
    if pa.types.is_dictionary(t) and pa.types.is_integer(t.value_type):
        arr = arr.cast(t.value_type)
        t = arr.type
    if pa.types.is_integer(t):
        # Training reads a numeric-coded category as the text of its integer.
        return pc.cast(arr, pa.string())
    return arr


def _is_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t)
                or pa.types.is_string_view(t))


def _first_unparsable(arr: pa.Array) -> int | None:
    """The position of the first value a cast to float64 refuses (the error path only)."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)

    def fails(stop: int) -> bool:
        try:
            pc.cast(arr.slice(0, stop), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return True
        return False

    if not fails(len(arr)):
        return None
    low, high = 0, len(arr)  # fails(high); not fails(low)
    while high - low > 1:
        mid = (low + high) // 2
        if fails(mid):
            high = mid
        else:
            low = mid
    return low


def _ids(source: _Source, batch: pa.RecordBatch, first_row: int) -> pa.Array:
    if source.id_name is None:
        return pa.array(np.arange(first_row + 1, first_row + 1 + batch.num_rows,
                                  dtype=np.int64))
    return batch.column(source.id_name)


class _Source:
    """The input file: its format, the columns read, the batches."""

    def __init__(self, path: Path, fmt: FileFormat, names: Sequence[str],
                 scorecard: CompiledScorecard, id_name: str | None, batch_rows: int) -> None:
        self.path = path
        self.fmt = fmt
        self.names = list(names)
        self.scorecard = scorecard
        self.id_name = id_name
        self.id_output_name = id_name or ROW_COLUMN
        self.batch_rows = batch_rows
        self.read = list(dict.fromkeys([*scorecard.features, *([id_name] if id_name else [])]))
        self.id_type: pa.DataType = pa.int64() if id_name is None else pa.string()

    @classmethod
    def open(cls, scorecard: CompiledScorecard, path: Path, id_column: str | None,
             batch_rows: int) -> _Source:
        if not path.exists():
            raise NotFoundError(f"data file not found: {path}")
        if not path.is_file():
            raise InputError(f"{path}: not a file")
        fmt = file_format(path, "data file")
        names = _parquet_schema(path).names if fmt == "parquet" else _csv_names(path)
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise InputError(f"{path}: duplicate column(s) {', '.join(duplicated)}")
        missing = [f for f in scorecard.features if f not in names]
        if missing:
            raise InputError(f"{path}: missing feature column(s): {', '.join(missing)}")
        if id_column is not None and id_column not in names:
            raise InputError(f"--id: {path} has no column {id_column!r} (columns: "
                             f"{', '.join(names)})")
        id_name = id_column or ("id" if "id" in names else None)
        source = cls(path, fmt, names, scorecard, id_name, batch_rows)
        if fmt == "parquet":
            source.check_parquet_types()
        return source

    def check_parquet_types(self) -> None:
        """Refuse, before any row is read, a column whose type cannot hold its feature."""
        schema = _parquet_schema(self.path)
        for f in self.scorecard.artifact.features:
            t = schema.field(f.name).type
            if pa.types.is_dictionary(t):
                t = t.value_type
            if f.kind == "numerical":
                ok = (pa.types.is_floating(t) or pa.types.is_integer(t)
                      or pa.types.is_decimal(t) or pa.types.is_null(t) or _is_text(t))
                wanted = "numbers are expected (a numerical feature)"
            else:
                ok = _is_text(t) or pa.types.is_integer(t) or pa.types.is_null(t)
                wanted = "texts are expected (a categorical feature)"
            if not ok:
                raise InputError(f"{self.path}: column {f.name}: {wanted}, the column "
                                 f"holds {t}")
        if self.id_name is not None:
            self.id_type = schema.field(self.id_name).type
            try:
                pc.cast(pa.array([], type=self.id_type), pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InputError(f"--id {self.id_name}: a {self.id_type} column cannot be "
                                 f"written as text ({exc})") from None

    def where(self, column: str, row: int, batch: pa.RecordBatch, position: int) -> str:
        """``FILE: column C, row R (id I)`` for a row (from 0) of the file."""
        text = f"{self.path}: column {column}, row {row + 1}"
        if self.id_name is not None:
            value = batch.column(self.id_name)[position].as_py()
            text += f" ({self.id_name} {value!s:.40})"
        return text

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The rows, a batch of at most ``batch_rows`` at a time, feature columns typed."""
        raw = self._parquet_batches() if self.fmt == "parquet" else self._csv_batches()
        for batch in _read_ahead(raw):
            for start in range(0, batch.num_rows, self.batch_rows):
                yield batch.slice(start, self.batch_rows)

    def _parquet_batches(self) -> Iterator[pa.RecordBatch]:
        schema = _parquet_schema(self.path)
        texts = [f.name for f in self.scorecard.artifact.features
                 if f.kind == "categorical" and _is_text(schema.field(f.name).type)]
        try:
            reader = pq.ParquetFile(self.path, read_dictionary=texts)
            yield from reader.iter_batches(batch_size=self.batch_rows, columns=self.read)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{self.path}: cannot read Parquet: {exc}") from exc

    def _csv_options(self, numbers_as_text: bool) -> pacsv.ConvertOptions:
        types: dict[str, pa.DataType] = {}
        if self.id_name is not None:
            types[self.id_name] = pa.string()
        for f in self.scorecard.artifact.features:
            if f.kind == "categorical":
                types[f.name] = pa.dictionary(pa.int32(), pa.string())
            else:
                types[f.name] = pa.string() if numbers_as_text else pa.float64()
        return pacsv.ConvertOptions(column_types=types, include_columns=self.read)

    def _csv_reader(self, numbers_as_text: bool) -> pacsv.CSVStreamingReader:
        try:
            return pacsv.open_csv(
                self.path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=self._csv_options(numbers_as_text))
        except (pa.ArrowInvalid, OSError) as exc:
            raise self._csv_error(exc) from exc

    def _csv_batches(self) -> Iterator[pa.RecordBatch]:
        reader = self._csv_reader(numbers_as_text=False)
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowInvalid, OSError) as exc:
                raise self._csv_error(exc) from exc
            yield batch

    def _csv_error(self, exc: Exception) -> InputError:
        """The first text in a numerical column, by column and row; else Arrow's words."""
        if "conversion error" not in str(exc):
            return InputError(f"{self.path}: cannot read CSV: {exc}")
        numerical = [f.name for f in self.scorecard.artifact.features if f.kind == "numerical"]
        first_row = 0
        for batch in _csv_text_batches(self._csv_reader(numbers_as_text=True)):
            found = [(bad, name) for name in numerical
                     if (bad := _first_unparsable(batch.column(name))) is not None]
            if found:
                bad, name = min(found)
                value = batch.column(name)[bad].as_py()
                return InputError(f"{self.where(name, first_row + bad, batch, bad)}: "
                                  f"{str(value)[:40]!r} {NOT_A_NUMBER}")
            first_row += batch.num_rows
        return InputError(f"{self.path}: cannot read CSV: {exc}")


def _read_ahead(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The same batches, the next one read by a second thread while this one is scored.

    Arrow decodes without the GIL, so reading and scoring overlap; one batch ahead
    keeps memory bounded.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-score-read") as pool:
        future = pool.submit(next, batches, None)
        while (batch := future.result()) is not None:
            future = pool.submit(next, batches, None)
            yield batch


def _csv_text_batches(reader: pacsv.CSVStreamingReader) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return


def _parquet_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: cannot read Parquet: {exc}") from exc


def _csv_names(path: Path) -> list[str]:
    try:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20),
                                parse_options=pacsv.ParseOptions(newlines_in_values=True))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: cannot read CSV: {exc}") from exc
    names: list[str] = reader.schema.names
    reader.close()
    return names


def _csv_field(text: str) -> str:
    if any(c in text for c in '",\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_column(arr: pa.Array) -> pa.Array:
    """Texts quoted where they need it (RFC 4180), nulls as empty."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if arr.type != pa.string():
        arr = pc.cast(arr, pa.string())
    arr = arr.fill_null("")
    needs = pc.match_substring_regex(arr, _NEEDS_QUOTES)
    if not pc.any(needs).as_py():
        return arr
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(arr, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, arr)


class _Sink:
    """Where scores go: CSV or Parquet, into a temporary file renamed at the end."""

    def __init__(self, output: Path | None, fmt: FileFormat, texts: Sequence[str],
                 id_name: str, id_type: pa.DataType, model: str,
                 stream: BinaryIO | None, temporary: Path | None) -> None:
        self.output = output
        self.fmt = fmt
        self.temporary = temporary
        self.stream = stream
        self.no_reason = len(texts)
        self.writer: pq.ParquetWriter | None = None
        if fmt == "parquet":
            assert temporary is not None
            self.dictionary = pa.array(texts, type=pa.string())
            fields = [pa.field(id_name, id_type), pa.field("score", pa.float64())]
            fields += [pa.field(f"reason_{k + 1}", pa.dictionary(pa.int32(), pa.string()))
                       for k in range(MAX_REASONS)]
            self.schema = pa.schema(fields, metadata={MODEL_METADATA_KEY: model.encode()})
            reasons = [f"reason_{k + 1}" for k in range(MAX_REASONS)]
            # Dictionaries only where values repeat, statistics only on the score: a
            # column of distinct ids costs 3 times as much to write with either.
            self.writer = pq.ParquetWriter(temporary, self.schema, use_dictionary=reasons,
                                           write_statistics=["score"])
        else:
            assert stream is not None
            escaped = [_csv_field(t) for t in texts] + [""]
            self.reason_text = pa.array(escaped, type=pa.string())
            self.last_reason_text = pa.array([t + "\n" for t in escaped], type=pa.string())
            header = [id_name, "score", *(f"reason_{k + 1}" for k in range(MAX_REASONS))]
            stream.write((",".join(_csv_field(h) for h in header) + "\n").encode())

    @classmethod
    def open(cls, output: Path | None, fmt: FileFormat, scorecard: CompiledScorecard,
             source: _Source, stdout: BinaryIO | None) -> _Sink:
        texts = [r.text for r in scorecard.reason_table]
        if output is None:
            if stdout is None:
                sys.stdout.flush()
                stdout = getattr(sys.stdout, "buffer", None)
                if stdout is None:
                    raise InputError("standard output cannot take bytes here: give --output "
                                     "FILE")
            return cls(None, "csv", texts, source.id_output_name, source.id_type,
                       scorecard.hash, stdout, None)
        temporary = output.with_name(f".{output.name}.{secrets.token_hex(4)}.part")
        try:
            os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except OSError as exc:
            raise InputError(f"--output {output}: cannot write in {output.parent}: "
                             f"{exc.strerror}") from None
        try:
            stream = None if fmt == "parquet" else open(temporary, "wb")  # noqa: SIM115
            return cls(output, fmt, texts, source.id_output_name, source.id_type,
                       scorecard.hash, stream, temporary)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def write(self, ids: pa.Array, points: Floats, codes: ReasonCodes) -> None:
        """Write one batch: ids, scores and reason codes (rows x 4)."""
        try:
            if self.writer is not None:
                self._write_parquet(ids, points, codes)
            else:
                self._write_csv(ids, points, codes)
        except OSError as exc:
            raise InputError(f"--output {self.output or 'standard output'}: cannot write: "
                             f"{exc.strerror or exc}") from exc

    def _write_parquet(self, ids: pa.Array, points: Floats, codes: ReasonCodes) -> None:
        assert self.writer is not None
        columns: list[pa.Array] = [ids.cast(self.schema.field(0).type), pa.array(points)]
        for k in range(MAX_REASONS):
            code = codes[:, k].astype(np.int32)
            indices = pa.array(code, mask=code == self.no_reason)
            columns.append(pa.DictionaryArray.from_arrays(indices, self.dictionary))
        self.writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=self.schema))

    def _write_csv(self, ids: pa.Array, points: Floats, codes: ReasonCodes) -> None:
        assert self.stream is not None
        parts = [_csv_column(ids), pc.cast(pa.array(points), pa.string())]
        for k in range(MAX_REASONS):
            table = self.last_reason_text if k == MAX_REASONS - 1 else self.reason_text
            parts.append(table.take(pa.array(codes[:, k])))
        lines = pc.binary_join_element_wise(*parts, ",")
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32,
                                count=len(lines) + 1, offset=lines.offset * 4)
        data = memoryview(lines.buffers()[2])
        self.stream.write(data[int(offsets[0]):int(offsets[-1])])

    def commit(self) -> None:
        """Finish the output: close it and rename the temporary file onto the output."""
        try:
            if self.writer is not None:
                self.writer.close()
            elif self.stream is not None:
                self.stream.flush()
                if self.temporary is not None:
                    self.stream.close()
            if self.temporary is not None:
                assert self.output is not None
                os.replace(self.temporary, self.output)
        except OSError as exc:
            raise InputError(f"--output {self.output or 'standard output'}: cannot write: "
                             f"{exc.strerror or exc}") from exc

    def abort(self) -> None:
        """Remove the temporary file: nothing is left behind."""
        if self.temporary is None:
            return
        if self.writer is not None:
            with contextlib.suppress(OSError, pa.ArrowException):
                self.writer.close()  # the file is deleted just below
        elif self.stream is not None:
            self.stream.close()
        self.temporary.unlink(missing_ok=True)

