"""Records (``ptyd._record``): what the answers, the settings and the attach options promise
their users, built without the dataclasses module."""

from __future__ import annotations

import copy
import pickle

import pytest

from ptyd import _record
from ptyd._record import field, record
from ptyd.config import Config
from ptyd.records import ExitStatus, SessionInfo

made: list[int] = []


def _next_number() -> int:
    made.append(len(made))
    return made[-1]


@record
class Point:
    """A record with a default and a default made per record."""

    x: int
    y: int = 0
    tag: int = field(default_factory=_next_number)

    @property
    def total(self) -> int:
        return self.x + self.y


def test_fields_positional_keyword_and_defaults() -> None:
    point = Point(1, y=2)
    assert (point.x, point.y, point.total) == (1, 2, 3)
    assert Point(x=5).y == 0
    assert _record.fields(Point) == ("x", "y", "tag") == Point.__match_args__


def test_a_factory_default_is_made_for_each_record() -> None:
    first, second = Point(1), Point(1)
    assert first.tag != second.tag
    assert Point(1, tag=99).tag == 99


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "missing required argument 'x'"),
        ((1, 2, 3, 4), {}, "takes 3 arguments, 4 given"),
        ((1,), {"x": 2}, "multiple values for argument 'x'"),
        ((1,), {"z": 2}, "unexpected keyword argument 'z'"),
    ],
)
def test_wrong_arguments_are_refused_by_name(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        Point(*args, **kwargs)


def test_a_record_is_frozen_and_has_no_dict() -> None:
    point = Point(1, 2, 3)
    with pytest.raises(AttributeError, match="cannot assign to field 'x'"):
        point.x = 5  # type: ignore[misc]
    with pytest.raises(AttributeError, match="cannot assign to field 'other'"):
        point.other = 5  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="cannot delete field 'y'"):
        del point.y
    assert not hasattr(point, "__dict__")
    assert point.x == 1


def test_equality_hash_and_repr_follow_the_fields() -> None:
    assert Point(1, 2, 3) == Point(1, 2, 3)
    assert Point(1, 2, 3) != Point(1, 2, 4)
    assert Point(1, 2, 3) != (1, 2, 3)
    assert len({Point(1, 2, 3), Point(1, 2, 3), Point(0, 2, 3)}) == 2
    assert repr(Point(1, 2, 3)) == "Point(x=1, y=2, tag=3)"
    assert repr(ExitStatus(code=None, signal=9)) == "ExitStatus(code=None, signal=9)"


def test_pickle_copy_and_replace_give_equal_records() -> None:
    point = Point(1, 2, 3)
    assert pickle.loads(pickle.dumps(point)) == point
    assert copy.copy(point) == point and copy.deepcopy(point) == point
    assert _record.replace(point, y=7) == Point(1, 7, 3)
    assert point.y == 2


def test_match_by_position() -> None:
    match Point(4, 5, 6):
        case Point(x, y):
            assert (x, y) == (4, 5)
        case _:
            pytest.fail("a record matches by its fields' positions")


def test_the_public_records_are_records() -> None:
    wire = {"id": 3, "name": "main", "argv": ["sh"], "state": "running", "extra": "ignored"}
    info = SessionInfo.from_wire(wire)
    assert (info.id, info.name, info.argv, info.cols, info.is_running) == (
        3,
        "main",
        ["sh"],
        None,
        True,
    )
    assert ExitStatus(code=None, signal=15).status == 143
    config = Config()
    assert config.replace(scrollback=10).scrollback == 10
    assert config.scrollback == Config().scrollback
    assert Config() == Config()
