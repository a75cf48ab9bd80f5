"""The one command-line convention every `pgt` command follows, defined once.

- A command is registered with `add_command(subparsers, name, help=..., examples=[...])`;
  its handler is `run_<command>(args) -> int` (`run_grow`, `run_data_prepare`), set by `handler`.
- The output is `--out`; replacing an existing output is `--overwrite`.
- A substrate (or tokenizer) directory is `--substrate`.
- Progress bars: `--progress/--no-progress` (default: on when stderr is a terminal).
- Weights: `--dtype` from `DTYPES`; device: `--device` (`auto` = CUDA when available).
- Parallel processes: `--workers N` (default: the CPUs this process may use).
- Numbers that must be finite and positive are parsed by `positive_float`/`positive_int`,
  so `--lr inf`, `--temperature nan` or `--workers -3` are refused at parse time; every
  `--seed` is parsed by `seed` (0 … SEED_MAX = 2^32 - 1). These are `Number`s, which also bound
  values that come another way (a config file, Python), by the same rule in the same words.
- A command with many settings declares them once, as a dataclass of `setting(...)` fields; its
  options (`add_settings`), its YAML file (`read_settings_file`) and its one check
  (`check_settings`) come from there (`pgt grow`'s GrowthConfig, `pgt tune`'s TuneConfig).

torch is imported only inside the functions that need it, so `pgt --help` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pgt.errors import PgtError, SettingError

DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_DTYPE = "float32"
DEVICE_AUTO = "auto"


def available_cpus() -> int:
    """CPUs this process may run on (the default of every `--workers`)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Number:
    """A number type of the convention: finite, at least `minimum` (above it unless `inclusive`), at most
    `maximum`. Called with command-line text it is an argparse `type`; `problem(value)` judges a value that
    came another way (a config file, Python) by the same rule, in the same words."""

    def __init__(
        self,
        kind: type,
        minimum: float,
        *,
        inclusive: bool = True,
        maximum: float | None = None,
        maximum_text: str | None = None,
    ) -> None:
        self.kind, self.minimum, self.inclusive, self.maximum = kind, minimum, inclusive, maximum
        self.maximum_text = maximum_text or (None if maximum is None else f"{maximum:g}")
        self.__name__ = kind.__name__  # argparse names the type in its messages

    def problem(self, value: float) -> str | None:
        """What is wrong with `value` ("must be …"), or None."""
        if not math.isfinite(value) or value < self.minimum or (value == self.minimum and not self.inclusive):
            return f"must be a finite number {'≥' if self.inclusive else '>'} {self.minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum_text}"
        return None

    def __call__(self, text: str) -> Any:
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {self.kind.__name__}") from None
        problem = self.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{text} {problem}")
        return value


positive_float = Number(float, 0.0, inclusive=False)
non_negative_float = Number(float, 0.0)
positive_int = Number(int, 1)
non_negative_int = Number(int, 0)
fraction = Number(float, 0.0, inclusive=False, maximum=1)  # top-p, split fractions: (0, 1]
unit_interval = Number(float, 0.0, maximum=1)  # [0, 1]

SEED_MAX = 2**32 - 1  # the largest seed every generator pgt seeds (numpy's legacy one, torch's, Python's) takes
# A random seed: an integer in 0 … SEED_MAX.
seed = Number(int, 0, maximum=SEED_MAX, maximum_text=f"{SEED_MAX} (2^32 - 1)")


def text(value: str) -> str:
    """Text for a tokenizer (a prompt, a token): valid UTF-8, so no lone surrogate."""
    from pgt.errors import PgtError, refuse_surrogates

    try:
        return refuse_surrogates(value, "the text")
    except PgtError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def finite_float(text: str) -> float:
    """A float that is neither infinite nor NaN."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a float") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number")
    return value


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    description: str | None = None,
    examples: Sequence[str] = (),
    handler: Callable[[argparse.Namespace], int | None],
) -> argparse.ArgumentParser:
    """Register `pgt NAME` with its one-line help, a description and an `examples:` epilog."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples) if examples else None
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def add_out(parser: argparse.ArgumentParser, help: str, *, required: bool = True) -> None:
    parser.add_argument("--out", required=required, metavar="DIR", help=help)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def add_substrate(parser: argparse.ArgumentParser, *, required: bool = True, help: str | None = None) -> None:
    parser.add_argument(
        "--substrate",
        required=required,
        metavar="DIR",
        help=help or "substrate directory (`pgt substrate build` / `trim`)",
    )


def add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: on when stderr is a terminal)",
    )


def add_strict(parser: argparse.ArgumentParser) -> None:
    """`--strict`: the corpus reader (pgt.corpus.sources) refuses invalid UTF-8 instead of counting replacements."""
    parser.add_argument(
        "--strict", action="store_true", help="refuse invalid UTF-8 instead of replacing it (and warning)"
    )


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw progress bars: the flag (for commands that have it), else whether stderr is a terminal."""
    progress = getattr(args, "progress", None)
    return sys.stderr.isatty() if progress is None else bool(progress)


HUB_PROGRESS_VARIABLE = "HF_HUB_DISABLE_PROGRESS_BARS"  # read by huggingface_hub, transformers and datasets


def quiet_library_progress() -> None:
    """No Hugging Face progress bars (weights written, files fetched) where pgt draws none of its own."""
    os.environ[HUB_PROGRESS_VARIABLE] = "1"
    if "huggingface_hub" in sys.modules:  # imported before: the variable was read already
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default=DEVICE_AUTO,
        metavar="DEVICE",
        help="auto (CUDA when available), cpu, cuda, cuda:1 … (default: auto)",
    )


def add_dtype(parser: argparse.ArgumentParser, default: str = DEFAULT_DTYPE) -> None:
    parser.add_argument("--dtype", choices=DTYPES, default=default, help=f"weights dtype (default: {default})")


def add_workers(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"{what} (default: all CPUs this process may use)",
    )


def workers(args: argparse.Namespace) -> int:
    return args.workers or available_cpus()


def resolve_device(name: str = DEVICE_AUTO, local_rank: int = 0) -> Any:
    """`auto` → this rank's CUDA device when available, else CPU; an unusable device is a PgtError."""
    import torch

    from pgt.errors import PgtError

    if name in (DEVICE_AUTO, "", None):
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PgtError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PgtError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PgtError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type not in ("cpu", "mps"):
        raise PgtError(f"--device {name}: pgt runs on cpu or cuda")
    return device


def torch_dtype(name: str) -> Any:
    """The torch dtype named by `--dtype`."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


# ---------------------------------------------------------------- settings: one dataclass per command
#
# A command's settings are a dataclass whose fields are declared with `setting(...)`: the default, the
# help and how the option parses sit beside the field. `add_settings` generates the argparse options,
# `read_settings_file` reads a YAML file of the same keys, and `check_settings` is the one check of a
# settings object, however it was made (pgt.records' type checker, then each number's bounds).


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


def settings_from(cls: type, args: argparse.Namespace | dict[str, Any], **values: Any) -> Any:
    """The settings of a command from its parsed options (the fields `args` has; `values` beside or over
    them), checked once (`check_settings`), a problem said with the option's flag."""
    from pgt.errors import SettingError

    given = vars(args) if isinstance(args, argparse.Namespace) else args
    names = {f.name for f in dataclasses.fields(cls)}
    settings = cls(**{name: value for name, value in given.items() if name in names}, **values)
    try:
        check_settings(settings)
    except SettingError as exc:
        raise flag_error(exc, cls) from None
    return settings


def check_settings(settings: Any) -> None:
    """The one check of a settings dataclass, made however it was (options, a config file, Python): required
    fields are given, every value has its field's type (pgt.records' checker; converted in place, so a
    list becomes the declared tuple), within its choices, and every number within its `Number`'s bounds."""
    from pgt.errors import MissingSetting, PgtError, SettingError
    from pgt.records import Mismatch, check_value

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
    from pgt.errors import MissingSetting, PgtError

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
    from pathlib import Path

    import yaml

    from pgt.errors import PgtError, one_line
    from pgt.records import Mismatch, check_value

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
