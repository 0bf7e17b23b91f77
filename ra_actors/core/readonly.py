"""Read-only views of a machine's state, for queries.

A query runs on the live machine state of a replica, outside Raft: a query
that changed it (``dict.clear``, a list ``append``) would fork that replica
from the others.  So a query sees the state through a view.

Rules:

* :func:`view` wraps a ``dict`` as a read-only ``Mapping``, a ``list`` as a
  read-only ``Sequence``, a ``set`` as a ``frozenset``-like ``Set`` and a
  ``bytearray`` as ``bytes``; their elements are wrapped when they are read,
  so the cost is proportional to what the query touches, not to the size
  of the state.  Immutable values (numbers, strings, bytes, ``None``,
  tuples, frozensets, frozen dataclasses, ``ServerId``...) pass through;
  a tuple's elements are wrapped when it holds mutable ones, and a frozen
  dataclass passes through when its fields are immutable values.
* Any other object (an instance of a machine's own mutable class) is given
  as a deep copy: correct, but O(size of that object) per query.  Machines
  that keep such objects and query them often should keep immutable state.
* :func:`unwrap` turns views in a query's result back into plain values
  (copies), so the reply can be encoded.
* Views compare equal to what they wrap; writing through one raises
  ``TypeError``.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence, Set
from typing import Any, Iterator

_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), frozenset, range)


def view(value: Any) -> Any:
    """``value`` as a query may see it (see the module rules)."""
    if isinstance(value, _IMMUTABLE):
        return value
    kind = type(value)
    if kind is dict:
        return DictView(value)
    if kind is list:
        return ListView(value)
    if kind is set:
        return SetView(value)
    if kind is bytearray:
        return bytes(value)
    if isinstance(value, tuple):
        if all(isinstance(v, _IMMUTABLE) for v in value):
            return value
        if hasattr(value, "_fields"):      # a NamedTuple: keep its type
            return kind(*(view(v) for v in value))
        return tuple(view(v) for v in value)
    if isinstance(value, _View):
        return value
    if (dataclasses.is_dataclass(value) and type(value).__dataclass_params__.frozen
            and all(isinstance(getattr(value, f.name), _IMMUTABLE) for f in dataclasses.fields(value))):
        return value
    return copy.deepcopy(value)


def unwrap(value: Any) -> Any:
    """A plain value for ``value``, which may hold views."""
    if isinstance(value, _View):
        return value.plain()
    if type(value) is tuple:
        return tuple(unwrap(v) for v in value)
    if type(value) is list:
        return [unwrap(v) for v in value]
    if type(value) is dict:
        return {unwrap(k): unwrap(v) for k, v in value.items()}
    return value


class _View:
    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("the machine state is read-only in a query")

    def __eq__(self, other: Any) -> bool:
        return self._target == (other._target if isinstance(other, _View) else other)

    __hash__ = None

    def __repr__(self) -> str:
        return repr(self._target)

    def plain(self) -> Any:
        raise NotImplementedError


class DictView(_View, Mapping):
    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        return view(self._target[key])

    def __iter__(self) -> Iterator:
        return iter(self._target)

    def __len__(self) -> int:
        return len(self._target)

    def __contains__(self, key: Any) -> bool:
        return key in self._target

    def plain(self) -> dict:
        return {unwrap(k): unwrap(v) for k, v in self._target.items()}


class ListView(_View, Sequence):
    __slots__ = ()

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(view(v) for v in self._target[index])
        return view(self._target[index])

    def __len__(self) -> int:
        return len(self._target)

    def plain(self) -> list:
        return [unwrap(v) for v in self._target]


class SetView(_View, Set):
    __slots__ = ()

    def __contains__(self, item: Any) -> bool:
        return item in self._target

    def __iter__(self) -> Iterator:
        return iter(self._target)

    def __len__(self) -> int:
        return len(self._target)

    def plain(self) -> set:
        return set(self._target)
