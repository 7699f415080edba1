"""FrozenMap is the dict it replaces: same items, order, equality; earlier copies unchanged."""

import itertools
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.frozen_map import FrozenMap

keys = st.sampled_from([f"k{n}" for n in range(40)])
# A change: one key set (with_item), or several at once (with_items).
changes = st.one_of(
    st.tuples(keys, st.integers()),
    st.dictionaries(keys, st.integers(), max_size=6),
)


def same_as_dict(frozen: FrozenMap, plain: dict) -> bool:
    return (
        list(frozen.items()) == list(plain.items())
        and list(frozen) == list(plain)
        and len(frozen) == len(plain)
        and frozen == plain
        and all(frozen[key] == value and key in frozen for key, value in plain.items())
        and all(frozen.get(key, "absent") == plain.get(key, "absent") for key in plain)
    )


@settings(derandomize=True, deadline=None, max_examples=300)
@given(st.dictionaries(keys, st.integers(), max_size=10), st.lists(changes, max_size=60))
def test_frozen_map_behaves_as_the_dict_copy_when_changed_in_any_order(start, steps):
    frozen: FrozenMap = FrozenMap(start)
    plain = dict(start)
    history = [(frozen, dict(plain))]
    for step in steps:
        if isinstance(step, tuple):
            key, value = step
            frozen, plain = frozen.with_item(key, value), {**plain, key: value}
        else:
            frozen, plain = frozen.with_items(step), {**plain, **step}
        assert same_as_dict(frozen, plain)
        history.append((frozen, dict(plain)))
    # Every earlier copy still holds what it held: nothing is changed in place.
    for earlier, expected in history:
        assert same_as_dict(earlier, expected)


def test_frozen_map_equals_other_mappings_with_the_same_items_when_compared_either_way():
    frozen = FrozenMap({"a": 1}).with_item("b", 2)
    expected = {"a": 1, "b": 2}
    assert frozen == expected and expected == frozen  # dict.__eq__ first, then ours
    assert frozen == MappingProxyType({"b": 2, "a": 1})
    assert MappingProxyType({"a": 1, "b": 2}) == frozen
    assert frozen != {"a": 1} and frozen != {"a": 1, "b": 3}
    assert FrozenMap() == {} and FrozenMap.of(frozen) is frozen


def test_frozen_map_keeps_few_levels_when_one_key_is_added_per_event():
    frozen: FrozenMap = FrozenMap()
    for n in range(5_000):
        frozen = frozen.with_item(f"event-{n}", n)
    # Each level at least twice the next newer one: at most log2(5,000) + 1 = 13 dicts to
    # probe, and no copy of the whole map per change.
    assert len(frozen._levels) <= 13
    levels = frozen._levels
    assert all(len(older) >= 2 * len(newer) for older, newer in itertools.pairwise(levels))
    assert len(frozen) == 5_000 and frozen["event-0"] == 0 and frozen["event-4999"] == 4_999
