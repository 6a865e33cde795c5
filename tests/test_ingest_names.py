"""Issue 17, ingest: byte-wise column tests of names and JSON escaping agree with the kernels.

``_names_ok`` reads a whole string column's buffers with NumPy instead of running
``_SAFE_NAME`` (a regular expression) and ``utf8_length`` over every row; it must keep
exactly the rows the regular expression keeps, for any text, with nulls and for a
slice of a longer column. ``json_text`` must escape exactly as orjson does.
"""

from __future__ import annotations

import orjson
import pyarrow as pa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.clock import examples
from trustledger.ledger.columnar import _names_ok, _names_ok_regex, json_text

CHARACTERS = st.one_of(
    st.sampled_from([" ", "\t", "\n", "\x00", "\x1f", "\x7f", "\x80", "\x9f", "\xa0", "é",
                     "\u2028", "\U0001f600", '"', "\\", "a", "~", "!"]),
    st.characters(codec="utf-8"),
)
TEXTS = st.one_of(st.none(), st.text(CHARACTERS, max_size=8),
                  st.text(st.sampled_from(["a", "é", "\U0001f600", " "]), min_size=60,
                          max_size=300))


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(TEXTS, max_size=12), st.integers(0, 3), st.integers(0, 3), st.booleans())
def test_the_byte_wise_name_test_keeps_exactly_the_rows_the_regex_keeps(
    texts: list[str | None], before: int, after: int, optional: bool
) -> None:
    padded = ["x\x01"] * before + texts + ["\x00 y"] * after
    column = pa.array(padded, pa.string()).slice(before, len(texts))
    assert _names_ok(column, optional=optional).tolist() == \
        _names_ok_regex(column, optional=optional).tolist()


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.text(CHARACTERS, max_size=8), max_size=10), st.integers(0, 2))
@example(['a"'], 0)
@example(["x", "y\\"], 1)
def test_json_text_escapes_as_orjson_does(texts: list[str], before: int) -> None:
    names = [text for text in texts if all(c >= " " and c != "\x7f" for c in text)]
    column = pa.array(['"\\'] * before + names, pa.string()).slice(before, len(names))
    assert json_text(column).to_pylist() == [orjson.dumps(name).decode()[1:-1]
                                             for name in names]
