"""Typed records: every JSON file pgt writes has one dataclass that all writers and readers use.

A record subclasses `Record` and declares its fields with type hints; `from_json` checks
every field against its hint (and then the record's own `check`), so a file with a missing,
wrong-typed or impossible field is a one-line `PgtError` naming the file and the field, never
a `KeyError` three modules later. Unknown keys are ignored, so files written by a newer pgt
with extra fields still load.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from typing import Any, ClassVar, Literal, Self, Union

from pgt.errors import PgtError
from pgt.io import read_json, write_json


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


class Mismatch(PgtError):
    """A value that is not of its declared type: `value` (the offending item) and what was `expected`, so a
    reader other than a record's (a YAML config file) can phrase the same finding its own way."""

    def __init__(self, where: str, value: Any, expected: str) -> None:
        super().__init__(f"{where} is {value!r}, expected {expected}")
        self.value, self.expected = value, expected


def check_value(value: Any, hint: Any, where: str) -> Any:
    """Return `value` converted to the type `hint` (nested records built), or raise a one-line PgtError
    (a `Mismatch` when the value is of another type) naming `where`: the one type checker of records
    and of settings (pgt.settings)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            try:
                return check_value(value, option, where)
            except PgtError as exc:
                errors.append(exc)
        raise Mismatch(where, value, " or ".join(_type_name(a) for a in typing.get_args(hint)))
    if hint is type(None):
        if value is None:
            return None
    elif origin is Literal:
        if value in typing.get_args(hint):
            return value
        raise Mismatch(where, value, f"one of {', '.join(map(repr, typing.get_args(hint)))}")
    elif isinstance(hint, type) and issubclass(hint, Record):
        if isinstance(value, dict):
            return hint.build(value, where)
    elif origin is list or origin is tuple:
        if isinstance(value, list | tuple):
            args = typing.get_args(hint)
            if origin is tuple and args and args[-1] is not Ellipsis:
                if len(args) != len(value):
                    raise PgtError(f"{where} has {len(value)} items, expected {len(args)}")
                return tuple(
                    check_value(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
                )
            item = args[0] if args else Any
            items = [check_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
    elif origin is dict:
        if isinstance(value, dict):
            key_hint, value_hint = typing.get_args(hint) or (Any, Any)
            return {
                check_value(k, key_hint, f"{where} key"): check_value(v, value_hint, f"{where}[{k!r}]")
                for k, v in value.items()
            }
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                return float(value)
            raise Mismatch(where, value, "a finite number")
    elif hint is str:
        if isinstance(value, str):
            return value
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise Mismatch(where, value, _type_name(hint))


def _to_plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no Infinity/NaN; readers see a missing measurement
    return value


@dataclasses.dataclass
class Record:
    """Base of the typed records. Subclasses are dataclasses and may set `WHAT` for error messages."""

    WHAT: ClassVar[str] = "record"

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON data (nested records included; non-finite floats become null)."""
        return {f.name: _to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: Any, source: str | os.PathLike = "") -> Self:
        """Build the record from JSON data, checking every field; `source` names the file in errors."""
        return cls.build(data, f"{cls.WHAT} {source}".strip())

    @classmethod
    def build(cls, data: Any, where: str) -> Self:
        """`from_json` with the errors' prefix given whole: a nested record is named by its path in the file."""
        if not isinstance(data, dict):
            raise PgtError(f"{where} is not a JSON object")
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise PgtError(f"{where} lacks the field {f.name!r}")
                continue
            values[f.name] = check_value(data[f.name], hints[f.name], f"{where}: field {f.name!r}")
        record = cls(**values)
        record.check(where)
        return record

    def check(self, where: str) -> None:
        """Refuse, with a PgtError naming `where`, values of the right type that are still wrong (a
        negative counter, a path outside its directory); records that have such rules override it."""

    def save(self, path: str | os.PathLike) -> None:
        """Write the record atomically as indented JSON."""
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Self:
        """Read and check the record at `path` (one-line PgtError if missing, corrupt or ill-typed)."""
        return cls.from_json(read_json(path, cls.WHAT), path)
