"""The typed-record base: round trips, and one-line errors for missing or ill-typed fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from pgt.errors import PgtError
from pgt.records import Record


@dataclass
class Inner(Record):
    WHAT = "inner record"
    name: str
    weight: float = 1.0


@dataclass
class Outer(Record):
    WHAT = "outer record"
    count: int
    kind: Literal["a", "b"]
    inner: Inner
    items: list[Inner] = field(default_factory=list)
    table: dict[str, int] = field(default_factory=dict)
    loss: float | None = None


def test_round_trip(tmp_path: Path) -> None:
    record = Outer(count=3, kind="b", inner=Inner("x", 2), items=[Inner("y")], table={"k": 1}, loss=0.5)
    record.save(tmp_path / "r.json")
    assert Outer.load(tmp_path / "r.json") == record


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "a", "inner": {"name": "x"}}, "lacks the field 'count'"),
        ({"count": "3", "kind": "a", "inner": {"name": "x"}}, "field 'count' is '3', expected int"),
        ({"count": True, "kind": "a", "inner": {"name": "x"}}, "expected int"),
        ({"count": 1, "kind": "c", "inner": {"name": "x"}}, "expected one of"),
        ({"count": 1, "kind": "a", "inner": {"weight": 1}}, "lacks the field 'name'"),
        ({"count": 1, "kind": "a", "inner": {"name": "x"}, "table": {"k": 1.5}}, "expected int"),
        ({"count": 1, "kind": "a", "inner": {"name": "x"}, "loss": "nan"}, "expected float or NoneType"),
    ],
)
def test_bad_fields_are_one_line_errors(tmp_path: Path, data: dict, message: str) -> None:
    import json

    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PgtError, match=message) as info:
        Outer.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_non_finite_floats_are_written_as_null() -> None:
    assert Outer(count=1, kind="a", inner=Inner("x"), loss=float("inf")).to_json()["loss"] is None
