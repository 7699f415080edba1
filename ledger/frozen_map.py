"""An immutable mapping whose "copy with one more item" costs O(log n), not O(n) (issue 7).

Customer state is immutable: each event builds a new :class:`ledger.state.CustomerLedger`
(and :class:`revenue.state.RevenueBook`), and callers keep the old one to compare or to
roll back to. Built as ``MappingProxyType({**old, key: value})``, every such copy copied
the whole dict; the seen event ids, invoices, payments and contracts of a customer grow
with its history, so applying n events of one customer cost O(n²).

A :class:`FrozenMap` keeps its items in a few dicts ("levels", oldest first), none ever
changed once built. :meth:`FrozenMap.with_item` puts the change in a new level and merges
it into the newer levels while the level before it is less than twice its size (a binary
counter): an item is copied O(log n) times over the map's life, a lookup probes at most
log2(n) + 1 dicts, and iterating builds (once per map) the plain dict it stands for.

It behaves exactly like the dict ``{**old, key: value}``: same items, same iteration order
(first insertion; a key set again keeps its place), equal to any mapping with the same
items. Replacing the dict copies by it changes no decision, entry or encoded byte.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_MISSING: Any = object()


class FrozenMap(Mapping[K, V]):
    """An immutable mapping with cheap copies that differ in a few items (module docstring)."""

    __slots__ = ("_flat", "_levels", "_size")

    _levels: tuple[dict[K, V], ...]
    _size: int
    _flat: dict[K, V] | None

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        flat = dict(items)
        self._levels = (flat,) if flat else ()
        self._size = len(flat)
        self._flat = flat

    @classmethod
    def of(cls, values: Mapping[K, V]) -> FrozenMap[K, V]:
        """``values`` itself when it is a FrozenMap, else a FrozenMap of its items."""
        return values if isinstance(values, FrozenMap) else cls(values)

    @classmethod
    def _from_levels(cls, levels: tuple[dict[K, V], ...], size: int) -> FrozenMap[K, V]:
        made = cls.__new__(cls)
        made._levels = levels
        made._size = size
        made._flat = levels[0] if len(levels) == 1 else ({} if not levels else None)
        return made

    # --- reading -------------------------------------------------------------------------

    def __getitem__(self, key: K) -> V:
        for level in reversed(self._levels):  # newest first: the latest value wins
            value = level.get(key, _MISSING)
            if value is not _MISSING:
                return value
        raise KeyError(key)

    def get(self, key: K, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        for level in reversed(self._levels):
            value = level.get(key, _MISSING)
            if value is not _MISSING:
                return value
        return default

    def __contains__(self, key: object) -> bool:
        return any(key in level for level in self._levels)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[K]:
        return iter(self._flattened())

    def keys(self) -> KeysView[K]:
        """Keys in first-insertion order."""
        return self._flattened().keys()

    def values(self) -> ValuesView[V]:
        """Values in key order."""
        return self._flattened().values()

    def items(self) -> ItemsView[K, V]:
        """(key, value) pairs in key order."""
        return self._flattened().items()

    def _flattened(self) -> dict[K, V]:
        # The plain dict this map stands for, built once (the map never changes) and never
        # handed out mutable: callers get views of it or copies.
        flat = self._flat
        if flat is None:
            flat = {}
            for level in self._levels:
                flat.update(level)
            self._flat = flat
        return flat

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenMap):
            return self._size == other._size and self._flattened() == other._flattened()
        if isinstance(other, Mapping):
            return self._flattened() == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # like dict: equal maps may differ later

    def __repr__(self) -> str:
        return f"FrozenMap({self._flattened()!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMap, (self._flattened(),))

    # --- copies with changes -------------------------------------------------------------

    def with_item(self, key: K, value: V) -> FrozenMap[K, V]:
        """A copy in which ``key`` maps to ``value`` (as ``{**self, key: value}``)."""
        return self._with_level({key: value}, 0 if key in self else 1)

    def with_items(self, values: Mapping[K, V]) -> FrozenMap[K, V]:
        """A copy with every item of ``values`` set (as ``{**self, **values}``)."""
        if not values:
            return self
        level = dict(values)
        added = sum(1 for key in level if key not in self)
        return self._with_level(level, added)

    def _with_level(self, level: dict[K, V], added: int) -> FrozenMap[K, V]:
        levels = list(self._levels)
        if self._flat is not None and len(levels) > 1:
            levels = [self._flat]  # already built: one level instead of several
        # Merge while the newest level is less than twice the new one: each level is then
        # at least twice the next newer one, so there are at most log2(n) + 1 of them.
        while levels and len(levels[-1]) < 2 * len(level):
            level = {**levels.pop(), **level}  # older first: keys keep their first place
        levels.append(level)
        return FrozenMap._from_levels(tuple(levels), self._size + added)
