"""``ledger.codec.dumps`` (orjson) writes exactly the bytes the standard library writes.

The stored state's bytes decide whether a table is written at all (a changelog record per
change) and whether the decoded-books cache may serve a customer, so the faster encoder
must not change a single byte, for any value the codecs can hand it.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.codec import dumps, json_dumps

# Everything JSON can carry but floats (refused in state), with strings that need
# escaping (quotes, backslashes, control characters, non-ASCII, U+2028) and integers far
# past 64 bits (orjson refuses those; the standard library then writes them).
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | _text
    | st.sampled_from(['"', "\\", "\n", "\x00\x1f\x7f", "\u2028\u2029", "Müller €", "🙂"])
)
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(_text, children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(_values)
def test_orjson_and_the_standard_library_write_the_same_bytes(value: object) -> None:
    assert dumps(value) == json_dumps(value)


def test_what_orjson_refuses_is_written_by_the_standard_library() -> None:
    big = {"amount_minor": 2**80, "seen": {"b": 1, "a": [2**64, -(2**63) - 1]}}
    assert (
        dumps(big)
        == json_dumps(big)
        == (
            b'{"amount_minor":1208925819614629174706176,'
            b'"seen":{"a":[18446744073709551616,-9223372036854775809],"b":1}}'
        )
    )
    int_keys = {2: "b", 10: "a"}  # the standard library sorts them as numbers
    assert dumps(int_keys) == json_dumps(int_keys) == b'{"2":"b","10":"a"}'
