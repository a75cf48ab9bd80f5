"""The shared CLI convention: numeric flags refuse non-finite and out-of-range values at parse time."""

from __future__ import annotations

import argparse

import pytest

from pgt.errors import PgtError
from pgt.options import (
    fraction,
    non_negative_float,
    positive_float,
    positive_int,
    resolve_device,
)


@pytest.mark.parametrize("text", ["inf", "nan", "-1", "0", "abc"])
def test_positive_float_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        positive_float(text)


def test_numbers_accept_valid_values() -> None:
    assert positive_float("8e-3") == 0.008
    assert non_negative_float("0") == 0.0
    assert positive_int("3") == 3
    assert fraction("0.95") == 0.95
    with pytest.raises(argparse.ArgumentTypeError):
        fraction("1.5")
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int("-3")


def test_cuda_without_cuda_is_one_line() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(PgtError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(PgtError, match="unknown device"):
        resolve_device("tpu9")


def test_one_settings_dataclass_gives_options_yaml_and_one_check(tmp_path) -> None:
    """A `setting` field's parser refuses at parse time what `check_settings` refuses from Python or YAML."""
    import dataclasses

    from pgt.errors import MissingSetting
    from pgt.settings import add_settings, check_settings, read_settings_file, setting

    @dataclasses.dataclass
    class Settings:
        name: str | None = setting(None, "a name", required=True)
        steps: int = setting(3, "how many")
        rate: float = setting(0.5, "how fast", parse=fraction)
        betas: tuple[float, float] = setting((0.1, 0.2), "two numbers", parse=non_negative_float)

    parser = argparse.ArgumentParser()
    add_settings(parser, Settings, required_text="required")
    assert "how many (default: 3)" in " ".join(parser.format_help().split())
    args = parser.parse_args(["--name", "x", "--betas", "0.3", "0.4"])
    assert (args.name, args.steps, args.betas) == ("x", 3, [0.3, 0.4])
    with pytest.raises(SystemExit):
        parser.parse_args(["--name", "x", "--rate", "1.5"])
    with pytest.raises(MissingSetting, match="name is required"):
        check_settings(Settings())
    for bad, message in (
        ({"rate": 1.5}, "rate must be at most 1"),
        ({"steps": 0}, "steps must be a finite number ≥ 1"),
        ({"steps": "3"}, "steps must be int"),
        ({"betas": (0.1, -1.0)}, "betas must be a finite"),
    ):
        with pytest.raises(PgtError, match=message):
            check_settings(Settings(name="x", **bad))
    settings = Settings(name="x", betas=[0.3, 0.4])
    check_settings(settings)
    assert settings.betas == (0.3, 0.4)
    path = tmp_path / "s.yaml"
    path.write_text("steps: 1e1\nrate: 25e-2\n")
    assert read_settings_file(Settings, path, "pgt x") == {"steps": 10, "rate": 0.25}  # YAML 1.1 spells them as text
    path.write_text("steps: ten\n")
    with pytest.raises(PgtError, match=r"config key steps: bad value 'ten' \(expected int\)"):
        read_settings_file(Settings, path, "pgt x")


def test_a_library_names_a_setting_by_its_keyword_and_the_command_line_by_its_flag(tmp_path, capsys) -> None:
    from pgt.cli import main
    from pgt.data.prepare import prepare_token_data

    with pytest.raises(PgtError, match=r"^val_fraction must be in \[0, 1\)"):
        prepare_token_data(["default"], tmp_path / "sub", tmp_path / "data", val_fraction=1.5)
    argv = [
        "data",
        "prepare",
        "default",
        "--substrate",
        str(tmp_path / "sub"),
        "--out",
        str(tmp_path / "data"),
        "--val-fraction",
        "1.5",
    ]
    assert main(argv) == 2
    assert capsys.readouterr().err == "error: --val-fraction must be in [0, 1), got 1.5\n"


def test_settings_declare_arguments_groups_aliases_and_exclusive_choices() -> None:
    """Positional arguments, several words at once, help sections, old spellings and one-of groups all come
    from `setting` fields, and `settings_from` checks the result once, naming flags."""
    import dataclasses

    from pgt.settings import add_settings, out_setting, setting, settings_from

    @dataclasses.dataclass
    class Settings:
        source: str = setting(help="where from", positional=True, required=True, metavar="SRC")
        files: list[str] | None = setting(None, "files", nargs="+")
        blocks: int | None = setting(None, "depth", hidden_flags=("--layers",), group="size")
        data: str | None = setting(None, "token data", one_of="text", required=True)
        corpus: list[str] | None = setting(None, "text", one_of="text", required=True, nargs="+")
        out: str | None = out_setting("output")

    parser = argparse.ArgumentParser()
    add_settings(parser, Settings, required_text="required")
    text = parser.format_help()
    assert "size:" in text and "--layers" not in text and "SRC" in text
    args = parser.parse_args(["s", "--files", "a", "b", "--layers", "4", "--corpus", "x", "y", "--out", "o"])
    assert (args.source, args.files, args.blocks, args.corpus) == ("s", ["a", "b"], 4, ["x", "y"])
    with pytest.raises(SystemExit):  # one of --data / --corpus, not both
        parser.parse_args(["s", "--data", "d", "--corpus", "x", "--out", "o"])
    settings = settings_from(Settings, args)
    assert isinstance(settings, Settings) and settings.blocks == 4
    with pytest.raises(PgtError, match="--corpus cannot be combined with --data"):
        settings_from(Settings, {**vars(args), "data": "d"})
    with pytest.raises(PgtError, match="--data or --corpus is required"):
        settings_from(Settings, {**vars(args), "corpus": None})
    with pytest.raises(PgtError, match="--out is required"):
        settings_from(Settings, {**vars(args), "out": None})
