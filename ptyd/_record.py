"""Frozen records without the ``dataclasses`` module, for the modules every command imports.

``dataclasses`` imports ``inspect`` and builds each class's methods with ``exec``: about 20 ms
of a 65 ms command-line start on a small machine, to get what a record needs. A record has its
annotated fields in order, is built from positional or keyword arguments (with defaults), is
immutable, compares and hashes by its fields, pickles, and shows them in its repr. Type
checkers see a frozen dataclass (``dataclass_transform``), which is how a record behaves.
Events (``ptyd.events``) stay dataclasses: one is made per output frame, where a generated
``__init__`` is three times faster than a record's (0.5 against 1.6 µs), and only the library,
which imports asyncio anyway, makes them.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a command 5 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from typing_extensions import dataclass_transform

    T = TypeVar("T")
else:

    def dataclass_transform(**_options):
        return lambda decorator: decorator


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], T]) -> T:
    """A default made anew for every record, as ``dataclasses.field(default_factory=...)``."""
    return _Factory(default_factory)  # type: ignore[return-value]


def fields(record_or_class: Any) -> tuple[str, ...]:
    """The field names of a record (or record class), in declaration order."""
    return record_or_class.__record_fields__


def replace(item: T, **changes: Any) -> T:
    """A copy of a record with some fields changed, as ``dataclasses.replace``."""
    values = {name: getattr(item, name) for name in fields(item)}
    values.update(changes)
    return type(item)(**values)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen record with slots (its class attributes become the defaults)."""
    names = tuple(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063 (inspect: 10 ms)
    defaults = {name: cls.__dict__[name] for name in names if name in cls.__dict__}
    title = cls.__qualname__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise TypeError(f"{title}() takes {len(names)} arguments, {len(args)} given")
        values = dict(zip(names[: len(args)], args, strict=True))
        for name, value in kwargs.items():
            if name not in names:
                raise TypeError(f"{title}() got an unexpected keyword argument {name!r}")
            if name in values:
                raise TypeError(f"{title}() got multiple values for argument {name!r}")
            values[name] = value
        for name in names:
            if name in values:
                value = values[name]
            elif name in defaults:
                value = defaults[name]
                if isinstance(value, _Factory):
                    value = value.make()
            else:
                raise TypeError(f"{title}() missing required argument {name!r}")
            object.__setattr__(self, name, value)

    def values_of(self: Any) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in names)

    def __eq__(self: Any, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return values_of(self) == values_of(other)

    def __hash__(self: Any) -> int:
        return hash(values_of(self))

    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{title}({shown})"

    def __setattr__(self: Any, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self: Any, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __reduce__(self: Any) -> tuple[Any, ...]:
        return type(self), values_of(self)

    namespace = {
        key: value
        for key, value in cls.__dict__.items()
        if key not in defaults and key not in ("__dict__", "__weakref__")
    }
    namespace.update(
        __slots__=names,
        __match_args__=names,
        __record_fields__=names,
        __init__=__init__,
        __eq__=__eq__,
        __hash__=__hash__,
        __repr__=__repr__,
        __setattr__=__setattr__,
        __delattr__=__delattr__,
        __reduce__=__reduce__,
    )
    made: Any = type(cls.__name__, cls.__bases__, namespace)
    return made
