"""Value: the base of the engine's small records (a manifest, a migration report, a counter).

Not dataclasses or NamedTuple, by measurement: importing dataclasses (with inspect) and typing, and
building some twenty classes with them, was about a fifth of the handler's cold start in a fresh
CPython 3.13 (README, figure 3), where a class with __slots__ and its own __init__ costs next to
nothing. Each record lists its fields in __slots__ and sets them in __init__; Value gives it equality,
a hash and a repr over those fields. Records are not changed after __init__.
"""

from __future__ import annotations


class Value:
    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Value)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({shown})"
