"""Growth configuration: one dataclass, loadable from YAML, every field also a CLI option.

Precedence: command line > YAML file > preset (`--preset NAME`) > dataclass defaults. Each field
is a `pgt.settings.setting` (its default, help and number type beside it); the argparse options and
the YAML keys are generated from the fields, and `validate` checks a config once, however it was
made (docs/growth.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Any, Literal

from pgt import options
from pgt.data.mixture import DATA_SPEC, normalize_specs, parse_mixture
from pgt.errors import PgtError, SettingError
from pgt.model.architecture import (
    DEFAULT_HIDDEN_ACT,
    AttnImplementation,
    BlockInit,
    HiddenAct,
    attn_implementation_setting,
)
from pgt.model.presets import PRESETS
from pgt.settings import (
    add_settings,
    check_settings,
    flag_error,
    out_setting,
    read_settings_file,
    setting,
    substrate_setting,
)

Init = BlockInit
Baseline = Literal["none", "monolithic", "trainable-embeddings"]
Autocast = Literal["auto", "off", "bf16"]

# Keys that may differ between the run that wrote a checkpoint and the one resuming it:
# they change where and how verbosely we run, never the numbers that come out.
RESUME_NEUTRAL_KEYS = frozenset(
    {"out", "progress", "plot", "log_every", "checkpoint_every", "device", "compile", "gradient_checkpointing"}
)
# Optimizer and schedule settings: after a non-finite loss stopped a run they may change on resume
# (the change is recorded in run.json), since the usual remedy is a lower lr or a tighter clip.
OPTIMIZER_KEYS = frozenset({"lr", "min_lr_ratio", "warmup_steps", "weight_decay", "grad_clip", "betas"})
# Keys a preset sets (pgt.model.presets): depth, attention heads and context.
PRESET_KEYS = ("stages", "heads", "context")


@dataclass
class GrowthConfig:
    """Everything `pgt grow` needs; each field's help is its option's help (`pgt grow --help`)."""

    substrate: str | None = substrate_setting("substrate directory (tokenizer + frozen glyph matrix); sets d_model")
    data: str | list[str] | None = setting(
        None,
        "token data DIR from `pgt data prepare`, or NAME=DIR:WEIGHT, repeated: a weighted mixture",
        required=True,
        metavar=f"DIR|{DATA_SPEC}",
        expects=f"a directory or a list of {DATA_SPEC}",
    )
    out: str | None = out_setting("run directory (stage-K models, checkpoints, metrics)")
    from_model: str | None = setting(
        None,
        "a saved K-block single model (any run's stage-K) to grow on: stages K+1..N on top of it",
        flags=("--from",),
    )
    stages: int = setting(3, "number of blocks to grow (= stages)")
    init: Init = setting("random", "new-block initialisation: random (reference), identity, copy-top")
    tokens_per_stage: int = setting(1_000_000, "training-token budget of each stage")
    batch_size: int = setting(8, "sequences per micro-batch per process")
    grad_accum: int = setting(1, "micro-batches per optimizer step")
    seq_len: int = setting(256, "tokens per training sequence")
    preset: str | None = setting(
        None,
        "a named size (pgt.model.presets): sets stages, heads, context; checks the substrate's width",
        choices=tuple(PRESETS),
    )
    lr: float = setting(
        8e-3,
        "peak learning rate of each stage (8e-3 trains small stages best; lower it for wide models)",
        parse=options.positive_float,
    )
    min_lr_ratio: float = setting(0.1, "cosine floor as a fraction of lr", parse=options.unit_interval)
    warmup_steps: float = setting(
        0.05, "warmup steps per stage; below 1 it is a fraction of the stage's steps", parse=options.non_negative_float
    )
    weight_decay: float = setting(
        0.1, "AdamW decoupled weight decay (matrices only, not norms/biases)", parse=options.non_negative_float
    )
    grad_clip: float = setting(1.0, "clip the global gradient norm to this (0 = off)", parse=options.non_negative_float)
    betas: tuple[float, float] = setting((0.9, 0.95), "AdamW betas", parse=options.non_negative_float)
    heads: int = setting(4, "attention heads (must divide the substrate's dim)")
    intermediate_multiple: int = setting(4, "MLP hidden size = multiple x d_model")
    context: int = setting(1024, "the saved models' maximum position (>= seq_len)")
    hidden_act: HiddenAct = setting(
        DEFAULT_HIDDEN_ACT, "MLP activation: gelu (ours), relu2 (served natively by vLLM/SGLang)"
    )
    attn_implementation: AttnImplementation = attn_implementation_setting()
    seed: int = setting(0, "seeds block initialisation and the data order", parse=options.seed)
    lora_from: int = setting(
        5, "from this stage on, older blocks train through LoRA adapters (0 = never)", parse=options.non_negative_int
    )
    lora_rank: int = setting(8, "LoRA rank")
    lora_alpha: float = setting(16.0, "LoRA scaling numerator (scale = alpha / rank)", parse=options.positive_float)
    train_head: bool = setting(True, "the output head trains with the new block")
    train_norm: bool = setting(True, "the final norm trains with the new block")
    eval_every: int = setting(
        100, "optimizer steps between validation evaluations (0 = stage ends only)", parse=options.non_negative_int
    )
    eval_tokens: int = setting(32_768, "size of the fixed validation sample: whole documents spread over the split")
    patience: int = setting(
        0, "end a stage after this many evaluations without improvement (0 = off)", parse=options.non_negative_int
    )
    checkpoint_every: int = setting(
        100, "optimizer steps between resumable checkpoints (0 = stage ends only)", parse=options.non_negative_int
    )
    log_every: int = setting(10, "optimizer steps between train-metric records and log lines")
    baseline: Baseline = setting(
        "none", "none = progressive growth; monolithic / trainable-embeddings = one stage, all blocks"
    )
    autocast: Autocast = setting("auto", "auto = bfloat16 autocast on GPU, float32 on CPU")
    device: str = setting(options.DEVICE_AUTO, "auto, cpu, cuda, cuda:1, ...")
    compile: bool = setting(False, "torch.compile the training step (its first steps compile; a process reuses it)")
    fsdp: bool = setting(
        False, "shard with FSDP2 (fully_shard) instead of DDP under torchrun (for the 4,096-wide presets)"
    )
    gradient_checkpointing: bool = setting(
        False, "recompute block activations in the backward pass (less memory, ~30 % slower)"
    )
    plot: bool = setting(True, "draw RUN_DIR/loss.png at the end of every stage")
    progress: bool | None = setting(
        None, "tqdm progress bar (rank 0) instead of log lines (default: when stderr is a terminal)"
    )

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # YAML gives lists
        self.data = normalize_specs(self.data)  # one plain DIR stays a string, as before mixtures

    @property
    def kind(self) -> str:
        """`growth`, or the baseline's name."""
        return "growth" if self.baseline == "none" else self.baseline

    def validate(self) -> None:
        """Raise PgtError on a missing or inconsistent setting (a SettingError where an option names it)."""
        check_settings(self)  # required keys, types, each number's bounds
        parse_mixture(self.data)  # names, paths and weights (checked against the substrate when the run opens)
        if not all(0 <= b < 1 for b in self.betas):
            raise PgtError(f"betas must be two numbers in [0, 1) (got {' '.join(map(str, self.betas))})")
        if self.context < self.seq_len:
            raise PgtError(f"context ({self.context}) must be at least seq_len ({self.seq_len})")
        if self.from_model and self.baseline != "none":
            raise SettingError(
                "from_model", f"grows stages on a saved model; a {self.baseline} baseline trains from scratch"
            )

    def show_progress(self) -> bool:
        """The progress bar, or (False) plain log lines: the setting, else whether stderr is a terminal."""
        import sys

        return sys.stderr.isatty() if self.progress is None else self.progress

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-able values."""
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file into checked field values (unknown keys are an error)."""
    return read_settings_file(GrowthConfig, path, "pgt grow")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--key` option per field; defaults are None so that only given options override."""
    add_settings(parser, GrowthConfig, layered=True, required_text="required: here or in CONFIG.yaml")


def resolve_config(yaml_path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> GrowthConfig:
    """Defaults, then the preset, then the YAML file, then non-None `overrides` (e.g. parsed CLI options).

    These are the command's settings, so a missing one is named by its option (`--substrate`)."""
    values: dict[str, Any] = load_yaml(yaml_path) if yaml_path else {}
    keys = {f.name for f in fields(GrowthConfig)}
    values.update({name: value for name, value in (overrides or {}).items() if name in keys and value is not None})
    if values.get("preset"):
        values = {**preset_values(values["preset"]), **values}
    config = GrowthConfig(**values)
    try:
        config.validate()
    except SettingError as exc:
        raise flag_error(exc, GrowthConfig, " (on the command line or in the config file)") from None
    return config


def preset_values(name: str) -> dict[str, Any]:
    """The config values a preset sets (PRESET_KEYS): its depth as the stage count, its heads and context."""
    from pgt.model.presets import get_preset

    preset = get_preset(name)
    return dict(
        zip(
            PRESET_KEYS,
            (preset.num_hidden_layers, preset.num_attention_heads, preset.max_position_embeddings),
            strict=True,
        )
    )


def config_differences(saved: dict[str, Any], current: GrowthConfig) -> list[str]:
    """Keys whose values differ in a way that would change the training result.

    More growth stages than before is no difference: stages 1..N do not depend on how many
    follow, so a finished N-stage growth run can be extended to N + M stages.
    """
    now = current.to_dict()
    keys = (set(saved) | set(now)) - RESUME_NEUTRAL_KEYS
    if current.baseline == "none" and isinstance(saved.get("stages"), int) and saved["stages"] <= current.stages:
        keys.discard("stages")
    return sorted(k for k in keys if saved.get(k) != now.get(k))


__all__ = [
    "GrowthConfig",
    "OPTIMIZER_KEYS",
    "add_config_arguments",
    "config_differences",
    "load_yaml",
    "preset_values",
    "resolve_config",
]
