"""Growth config: defaults < YAML < command line, every field an option, clear errors; the LR schedule."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from pgt.cli import build_parser
from pgt.errors import PgtError
from pgt.growth.config import GrowthConfig, config_differences, resolve_config
from pgt.growth.schedule import lr_at, plan_stages

REQUIRED = ["--substrate", "S", "--data", "D", "--out", "O"]


def parse(argv: list[str]) -> GrowthConfig:
    args = build_parser().parse_args(["grow", *argv])
    return resolve_config(args.config_file, vars(args))


def test_command_line_overrides_yaml_overrides_defaults(tmp_path):
    yaml_file = tmp_path / "grow.yaml"
    yaml_file.write_text("stages: 6\nlr: 0.0005\ninit: copy-top\nbetas: [0.8, 0.9]\ntrain_head: false\n")
    config = parse([str(yaml_file), *REQUIRED, "--lr", "2e-4", "--no-train-norm", "--betas", "0.85", "0.99"])
    assert (config.stages, config.init, config.train_head) == (6, "copy-top", False)  # from YAML
    assert (config.lr, config.train_norm, config.betas) == (2e-4, False, (0.85, 0.99))  # command line wins
    assert config.seq_len == GrowthConfig().seq_len  # default


def test_every_field_is_a_command_line_option():
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["grow"].format_help().split())
    for field in dataclasses.fields(GrowthConfig):
        assert "--" + field.name.replace("_", "-") in help_text, field.name


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("stagez: 3\n", "unknown keys stagez"),
        ("stages: three\n", "config key stages: bad value 'three'"),
        ("init: zero\n", "config key init: bad value 'zero'"),
        ("- a\n- b\n", "must hold a mapping"),
        ("stages: [\n", "not valid YAML"),
        ("lr: .inf\n", "config key lr: bad value inf .*expected a finite number"),
        ("betas: [0.9, .nan]\n", "config key betas: bad value nan"),
    ],
)
def test_bad_yaml_is_a_one_line_error(tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(PgtError, match=message) as error:
        parse([str(path), *REQUIRED])
    assert "\n" not in str(error.value)


def test_missing_and_inconsistent_settings_are_refused(tmp_path):
    with pytest.raises(PgtError, match="--substrate is required"):
        parse(["--data", "D", "--out", "O"])
    with pytest.raises(PgtError, match=r"context \(64\) must be at least seq_len \(128\)"):
        parse([*REQUIRED, "--seq-len", "128", "--context", "64"])
    with pytest.raises(PgtError, match="config file not found"):
        parse([str(tmp_path / "absent.yaml"), *REQUIRED])


def test_resume_compares_only_settings_that_change_results():
    saved = GrowthConfig(substrate="S", data="D", out="O").to_dict()
    assert (
        config_differences(
            saved,
            GrowthConfig(substrate="S", data="D", out="elsewhere", log_every=1, checkpoint_every=7, progress=False),
        )
        == []
    )
    assert config_differences(saved, GrowthConfig(substrate="S", data="D", out="O", lr=1.0, seed=3)) == ["lr", "seed"]


def test_schedule_warms_up_then_decays_to_the_floor():
    config = GrowthConfig(lr=1.0, min_lr_ratio=0.1, warmup_steps=0.1)
    lrs = [lr_at(step, 100, config) for step in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))
    assert lrs[-1] == pytest.approx(0.1)


def test_stage_plans():
    growth = plan_stages(GrowthConfig(stages=6, lora_from=5, tokens_per_stage=100))
    assert [p.frozen_blocks for p in growth] == [0, 1, 2, 3, 0, 0]
    assert [list(p.lora_blocks) for p in growth][4:] == [[0, 1, 2, 3], [0, 1, 2, 3, 4]]
    (monolithic,) = plan_stages(GrowthConfig(stages=4, tokens_per_stage=100, baseline="monolithic"))
    assert (monolithic.stage, monolithic.tokens, monolithic.fresh, monolithic.train_embeddings) == (4, 400, True, False)
    (embeddings,) = plan_stages(GrowthConfig(stages=4, tokens_per_stage=100, baseline="trainable-embeddings"))
    assert embeddings.train_embeddings


def test_a_preset_sets_depth_heads_and_context_below_yaml_and_command_line(tmp_path):
    from pgt.model.presets import get_preset

    preset = get_preset("abs-bvv-4")
    config = parse([*REQUIRED, "--preset", "abs-bvv-4"])
    assert (config.stages, config.heads, config.context) == (4, preset.num_attention_heads, 1024)
    yaml_file = tmp_path / "grow.yaml"
    yaml_file.write_text("preset: small\nstages: 2\n")
    config = parse([str(yaml_file), *REQUIRED, "--heads", "2"])
    assert (config.preset, config.stages, config.heads) == ("small", 2, 2)  # YAML and command line win
    with pytest.raises(SystemExit):
        parse([*REQUIRED, "--preset", "huge"])


def test_numbers_are_checked_in_the_python_api_too():
    for bad in ({"lr": float("inf")}, {"grad_clip": float("nan")}, {"betas": (0.9, 1.0)}, {"lora_alpha": 0.0}):
        with pytest.raises(PgtError, match="must be"):
            GrowthConfig(substrate="S", data="D", out="O", **bad).validate()


def test_progress_defaults_to_whether_stderr_is_a_terminal(monkeypatch):
    import sys

    config = GrowthConfig()
    for tty in (True, False):
        monkeypatch.setattr(sys.stderr, "isatty", lambda tty=tty: tty)
        assert config.show_progress() is tty
    assert GrowthConfig(progress=False).show_progress() is False
