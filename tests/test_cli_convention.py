"""The CLI convention (src/pgt/options.py), checked on every command of the real parser tree."""

from __future__ import annotations

import argparse
import dataclasses
import math

import pytest

from pgt import options
from pgt.cli import build_parser
from pgt.model.architecture import MERGE_MODES

FORBIDDEN_FLAGS = {"--restart", "--quiet", "--tokenizer", "--hub_split"}
# Flags whose value is a number that a nan, inf or negative must not reach.
NUMERIC_FLAGS = {
    "--workers",
    "--lr",
    "--temperature",
    "--top-p",
    "--top-k",
    "--seed",
    "--batch-size",
    "--seq-len",
    "--tokens",
    "--tokens-per-stage",
    "--stages",
    "--max-new-tokens",
    "--limit",
    "--min-lr-ratio",
}
# Commands whose --out is their own working directory: they resume into it (study, demo) and
# refuse a directory they did not write, so there is nothing of the user's to overwrite.
OUT_WITHOUT_OVERWRITE = {"study", "demo"}


def _commands() -> list[tuple[str, argparse.ArgumentParser]]:
    found = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        subs = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
        if not subs:
            found.append((" ".join(path), parser))
        for sub in subs:
            for name, child in sub.choices.items():
                walk(child, [*path, name])

    walk(build_parser(), [])
    return found


COMMANDS = _commands()


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings}


def test_command_groups_have_examples() -> None:
    groups = [
        sub.choices[name]
        for sub in build_parser()._actions
        if isinstance(sub, argparse._SubParsersAction)
        for name in sub.choices
    ]
    for group in groups:
        assert "examples:\n  pgt " in (group.epilog or ""), f"{group.prog}: no examples epilog"


def test_the_tree_has_every_documented_command() -> None:
    names = {name for name, _ in COMMANDS}
    assert {
        "substrate build",
        "substrate trim",
        "data prepare",
        "data show",
        "grow",
        "eval",
        "merge",
        "tune",
        "push",
        "study",
        "demo",
    } <= names


@pytest.mark.parametrize(("name", "parser"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_command_follows_the_convention(name: str, parser: argparse.ArgumentParser) -> None:
    epilog = parser.epilog or ""
    assert epilog.startswith("examples:\n") and f"  pgt {name}" in epilog, f"pgt {name}: no examples epilog"
    handler = parser.get_default("handler")
    assert handler.__name__.startswith("run_"), f"pgt {name}: {handler.__name__}"
    flags = _flags(parser)
    assert not FORBIDDEN_FLAGS & set(flags), f"pgt {name}: {FORBIDDEN_FLAGS & set(flags)}"
    if "--no-progress" in flags:
        assert "--progress" in flags, f"pgt {name}: --no-progress without --progress"
    if "--progress" in flags:
        assert isinstance(flags["--progress"], argparse.BooleanOptionalAction)
    if "--out" in flags and name not in OUT_WITHOUT_OVERWRITE:
        assert "--overwrite" in flags, f"pgt {name}: --out without --overwrite"
    if "--device" in flags:
        # grow's parser is generated from GrowthConfig: None there means "the config's value"
        assert flags["--device"].default in (options.DEVICE_AUTO, None)
    if "--dtype" in flags:
        assert tuple(flags["--dtype"].choices) == options.DTYPES
    if "--workers" in flags:
        assert flags["--workers"].default is None and flags["--workers"].type is options.positive_int
    if "--split" in flags:  # pgt's own split; the hub's is --hub-split
        assert "--hub-split" in flags or set(flags["--split"].choices or ()) <= {"train", "validation"}


@pytest.mark.parametrize(("name", "parser"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_numeric_flags_refuse_nan_inf_and_negatives(name: str, parser: argparse.ArgumentParser) -> None:
    for flag, action in _flags(parser).items():
        if flag not in NUMERIC_FLAGS or not action.type:
            continue
        assert action.type not in (int, float), f"pgt {name} {flag}: plain {action.type.__name__}"
        for bad in ("nan", "inf", "-3"):
            with pytest.raises((argparse.ArgumentTypeError, ValueError)):
                value = action.type(bad)
                assert math.isfinite(value) and value >= 0, value  # a parsed value must be usable


def test_grow_device_defaults_to_auto() -> None:
    from pgt.growth.config import GrowthConfig

    assert {field.name: field.default for field in dataclasses.fields(GrowthConfig)}["device"] == options.DEVICE_AUTO


def test_merge_modes_match_the_shipped_config() -> None:
    """configuration_pgt_merged.py travels into model directories without pgt, so it keeps its own tuple."""
    from pgt.model.configuration_pgt_merged import MERGE_MODES as shipped

    merge = dict(COMMANDS)["merge"]
    assert tuple(_flags(merge)["--mode"].choices) == MERGE_MODES == shipped


@pytest.mark.parametrize(("name", "parser"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_help_renders_without_leaks_or_false_required_marks(name: str, parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    assert "{'" not in text and "%(" not in text, f"pgt {name} --help leaks a format string or a dict"
    for action in parser._actions:
        if "(required)" in (action.help or ""):
            assert action.required, f"pgt {name}: {action.option_strings} is marked (required) but is optional"
