"""The one settings path: every command's settings are a dataclass whose fields are declared with
`setting(...)`, the default, the help and how the option parses beside each field.

- `add_settings` generates the command's argparse options (and arguments, sections, one-of groups);
- `read_settings_file` reads a YAML file of the same keys (`pgt grow CONFIG.yaml`);
- `settings_from` / `check_settings` is the one check of a settings object, however it was made
  (pgt.records' type checker, then choices and each `Number`'s bounds, pgt.options);
- the settings most commands share (`--out`, `--overwrite`, `--substrate`, `--progress`, `--device`,
  `--dtype`, `--workers`, `--strict`) are declared once, as the field factories below.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from pgt.errors import MissingSetting, PgtError, SettingError, one_line
from pgt.options import DEFAULT_DTYPE, DEVICE_AUTO, DTYPES, Number, positive_int
from pgt.records import Mismatch, check_value


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    description: str | None = None,
    examples: Sequence[str] = (),
    handler: Callable[[argparse.Namespace], int | None],
    settings: type | None = None,
) -> argparse.ArgumentParser:
    """Register `pgt NAME` with its one-line help, a description, an `examples:` epilog and the options of
    its `settings` dataclass (more may follow with `add_settings`)."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples) if examples else None
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    if settings is not None:
        add_settings(parser, settings)
    return parser


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    parse: Callable[[str], Any] | None = None,
    flags: Sequence[str] = (),
    hidden_flags: Sequence[str] = (),
    required: bool = False,
    metavar: str | None = None,
    choices: Sequence[str] | None = None,
    expects: str | None = None,
    switch: bool = False,
    positional: bool = False,
    nargs: str | None = None,
    group: str | None = None,
    one_of: str | None = None,
    default_text: str | None = None,
) -> Any:
    """A settings field. `parse` reads the option's text (a `Number` also bounds values from elsewhere; an
    int field without one is a `positive_int`); `flags` are spellings besides `--field-name` and
    `hidden_flags` old ones still accepted but not listed; `required` fields must be given (no default, or
    None until a config file or an option gives one); `expects` describes the value in a config file's type
    errors; a `switch` is a bool option that only turns on. A `positional` field is an argument, not an
    option; `nargs` ("+", "*", "?") takes several words at once (a list field without it repeats its
    option); `group` titles the help section the option is listed in; the fields of one `one_of` group
    exclude each other (with `required`, one of them must be given); `default_text` is the default as the
    help shows it."""
    metadata = {
        "help": help,
        "parse": parse,
        "flags": tuple(flags),
        "hidden_flags": tuple(hidden_flags),
        "required": required,
        "metavar": metavar,
        "choices": choices,
        "expects": expects,
        "switch": switch,
        "positional": positional,
        "nargs": nargs,
        "group": group,
        "one_of": one_of,
        "default_text": default_text,
    }
    return dataclasses.field(default=default, metadata=metadata)


# The settings most commands share, declared once (the convention at the top of this module).


def out_setting(help: str, *, required: bool = True) -> Any:
    """`--out DIR`: the command's output (beside it, `overwrite_setting`)."""
    return setting(None, help, required=required, metavar="DIR")


def overwrite_setting() -> Any:
    return setting(False, "replace an existing --out", switch=True)


def substrate_setting(help: str = "substrate directory (`pgt substrate build` / `trim`)", **kwargs: Any) -> Any:
    return setting(None, help, metavar="DIR", **{"required": True, **kwargs})


def progress_setting() -> Any:
    return setting(None, "progress bars (default: on when stderr is a terminal)")


def device_setting() -> Any:
    return setting(DEVICE_AUTO, "auto (CUDA when available), cpu, cuda, cuda:1 …", metavar="DEVICE")


def dtype_setting(default: str = DEFAULT_DTYPE) -> Any:
    return setting(default, "weights dtype", choices=DTYPES)


def workers_setting(what: str) -> Any:
    return setting(None, what, parse=positive_int, metavar="N", default_text="all CPUs this process may use")


def strict_setting() -> Any:
    """`--strict`: the corpus reader (pgt.corpus.sources) refuses invalid UTF-8 instead of counting replacements."""
    return setting(False, "refuse invalid UTF-8 instead of replacing it (and warning)", switch=True)


def _scalar_type(annotation: Any) -> Any:
    """`int | None` -> int; `str | list[str] | None` -> list[str]; other annotations stay."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        (annotation,) = [a for a in kinds if typing.get_origin(a) is list] or kinds
    return annotation


def _parser(field: dataclasses.Field, annotation: Any) -> Callable[[str], Any] | None:
    parse = field.metadata.get("parse")
    return positive_int if parse is None and annotation is int else parse


def flag(field: dataclasses.Field) -> str:
    """How the command line names the field: an argument by its metavar (MODEL_DIR), an option by its first
    spelling: an alias (`--from`) or `--field-name`."""
    if field.metadata.get("positional"):
        return field.metadata.get("metavar") or field.name.upper()
    return (*field.metadata.get("flags", ()), "--" + field.name.replace("_", "-"))[0]


def add_settings(
    parser: argparse.ArgumentParser,
    cls: type,
    names: Sequence[str] | None = None,
    *,
    skip: Sequence[str] = (),
    defaults: dict[str, Any] | None = None,
    layered: bool = False,
    default_texts: dict[str, str] | None = None,
    helps: dict[str, str] | None = None,
    required_text: str = "",
) -> None:
    """One option (or argument) per field of `cls` (`names`, else all but `skip`), in field order.

    `defaults` replace fields' defaults for this command (the demo's shorter sequences); `layered`
    options default to None, so that only given ones override a config file; `default_texts` and
    `helps` replace the shown default and the help of a field; `required_text` marks required ones.
    """
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    defaults, default_texts, helps = defaults or {}, default_texts or {}, helps or {}
    sections: dict[str, Any] = {}  # argument groups and mutually exclusive groups, by title

    def section(meta: Any) -> Any:
        if meta["one_of"] is not None:
            key = "one of: " + meta["one_of"]
            if key not in sections:
                sections[key] = parser.add_mutually_exclusive_group(required=meta["required"] and not layered)
            return sections[key]
        if meta["group"] is not None:
            if meta["group"] not in sections:
                sections[meta["group"]] = parser.add_argument_group(meta["group"])
            return sections[meta["group"]]
        return parser

    for name in names or [name for name in by_name if name not in skip]:
        field, annotation = by_name[name], _scalar_type(hints[name])
        meta = field.metadata
        default = defaults.get(name, None if field.default is dataclasses.MISSING else field.default)
        shown = default_texts.get(name, meta.get("default_text"))
        if meta["required"] and not meta["positional"]:
            suffix = f" ({required_text})" if required_text and meta["one_of"] is None else ""
        elif shown is not None or (default is not None and default != [] and not meta["switch"]):
            suffix = f" (default: {default if shown is None else shown})"
        else:
            suffix = ""
        # argparse formats help with %: a literal one (as in "~30 %") must be doubled
        help_text = (helps.get(name, meta["help"]) + suffix).replace("%", "%%")
        kwargs: dict[str, Any] = {"default": None if layered else default, "help": help_text}
        parse = _parser(field, annotation)
        if meta["choices"] is not None and meta["nargs"] != "*":  # argparse < 3.12 refuses an empty "*" list
            kwargs["choices"] = meta["choices"]
        elif typing.get_origin(annotation) is Literal:
            kwargs["choices"] = typing.get_args(annotation)
        if meta["nargs"] is not None:
            kwargs["nargs"] = meta["nargs"]
            if typing.get_origin(annotation) is list and not meta["positional"]:
                kwargs["action"] = "extend"
        elif typing.get_origin(annotation) is list:
            kwargs["action"] = "append"
        elif typing.get_origin(annotation) is tuple:
            kwargs.update(nargs=len(typing.get_args(annotation)), metavar="X")
        elif annotation is bool:
            kwargs["action"] = "store_true" if meta["switch"] else argparse.BooleanOptionalAction
        if parse is not None:
            kwargs["type"] = parse
        if meta["metavar"]:
            kwargs["metavar"] = meta["metavar"]
        target = section(meta)
        if meta["positional"]:
            if meta["nargs"] is None and not meta["required"]:
                kwargs["nargs"] = "?"
            target.add_argument(name, **kwargs)
            continue
        if meta["required"] and meta["one_of"] is None and not layered:
            kwargs["required"] = True
        spellings = [*meta["flags"], *([] if len(name) == 1 else ["--" + name.replace("_", "-")])]  # -k, not --k
        target.add_argument(*spellings, dest=name, **kwargs)
        for hidden in meta["hidden_flags"]:  # an old spelling: parsed the same way, not listed
            target.add_argument(hidden, **{**kwargs, "dest": name, "help": argparse.SUPPRESS, "required": False})


def settings_from(cls: type, args: argparse.Namespace | dict[str, Any]) -> Any:
    """The settings of a command from its parsed options (the fields `args` has), checked once
    (`check_settings`), a problem said with the option's flag."""
    given = vars(args) if isinstance(args, argparse.Namespace) else args
    names = {f.name for f in dataclasses.fields(cls)}
    settings = cls(**{name: value for name, value in given.items() if name in names})
    try:
        check_settings(settings)
    except SettingError as exc:
        raise flag_error(exc, cls) from None
    return settings


def check_settings(settings: Any) -> None:
    """The one check of a settings dataclass, made however it was (options, a config file, Python): required
    fields are given, every value has its field's type (pgt.records' checker; converted in place, so a
    list becomes the declared tuple), within its choices, and every number within its `Number`'s bounds."""
    hints = typing.get_type_hints(type(settings))
    groups: dict[str, list[str]] = {}  # one_of group -> the fields of it given
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        missing = value is None or (isinstance(value, str | list) and not value)
        if field.metadata.get("one_of") is not None:
            groups.setdefault(field.metadata["one_of"], [])
            if not missing:
                groups[field.metadata["one_of"]].append(field.name)
        elif field.metadata.get("required") and missing:
            raise MissingSetting(field.name)
        try:
            value = check_value(value, hints[field.name], field.name)
        except Mismatch as exc:
            raise PgtError(f"{field.name} must be {exc.expected} (got {value})") from None
        setattr(settings, field.name, value)
        choices, parse = field.metadata.get("choices"), _parser(field, _scalar_type(hints[field.name]))
        for item in value if isinstance(value, list | tuple) else (value,):  # a list's every item
            if choices is not None and item is not None and item not in choices:
                if field.metadata.get("positional"):  # named by what it is (its metavar), as argparse does
                    raise PgtError(
                        f"unknown {field.metadata['metavar'].lower()} {item!r} (choose from {', '.join(choices)})"
                    )
                raise PgtError(f"{field.name} must be one of {', '.join(choices)} (got {item!r})")
        if isinstance(parse, Number) and value is not None:
            for number in value if isinstance(value, tuple) else (value,):
                if problem := parse.problem(number):
                    raise PgtError(f"{field.name} {problem} (got {value})")
    for title, given in groups.items():
        members = [f for f in dataclasses.fields(settings) if f.metadata.get("one_of") == title]
        if len(given) > 1:
            raise SettingError(given[1], f"cannot be combined with {flag(_field(members, given[0]))}")
        if not given and any(f.metadata.get("required") for f in members):
            raise SettingError(members[0].name, f"or {' or '.join(flag(f) for f in members[1:])} is required")


def _field(fields: Sequence[dataclasses.Field], name: str) -> dataclasses.Field:
    return next(f for f in fields if f.name == name)


def flag_error(exc: SettingError, cls: type | None = None, where: str = "") -> PgtError:
    """A SettingError as the command line says it: the option's flag (from `cls`'s fields, else `--key-name`)
    instead of the keyword, and `where` (" (on the command line or in the config file)") after a missing one."""
    field = {f.name: f for f in dataclasses.fields(cls)}.get(exc.key) if cls else None
    name = flag(field) if field else "--" + exc.key.replace("_", "-")
    return PgtError(f"{name} {exc.detail}{where if isinstance(exc, MissingSetting) else ''}")


def _yaml_number(value: Any, annotation: Any) -> Any:
    """YAML 1.1 reads `8e-3` and `1e6` as strings: a number field takes them (and `3.0` for an int)."""
    annotation = _scalar_type(annotation)
    if typing.get_origin(annotation) is tuple and isinstance(value, list):
        items = typing.get_args(annotation)
        return [_yaml_number(v, items[i]) if i < len(items) else v for i, v in enumerate(value)]
    if annotation in (int, float) and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if annotation is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def read_settings_file(cls: type, path: str | os.PathLike, command: str) -> dict[str, Any]:
    """A YAML file of `cls`'s keys, each value type-checked (unknown keys are an error; `command` names
    the command whose --help lists them)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise PgtError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise PgtError(f"config file {path} is not valid YAML: {one_line(exc)}") from None
    if not isinstance(raw, dict):
        raise PgtError(f"config file {path} must hold a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(by_name), key=str)
    if unknown:
        raise PgtError(f"config file {path}: unknown keys {', '.join(map(str, unknown))} (see `{command} --help`)")
    values = {}
    for name, value in raw.items():
        try:
            values[name] = check_value(_yaml_number(value, hints[name]), hints[name], f"config key {name}")
        except Mismatch as exc:
            expected = by_name[name].metadata.get("expects") or exc.expected
            raise PgtError(f"config key {name}: bad value {exc.value!r} (expected {expected})") from None
    return values
