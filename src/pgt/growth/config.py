"""Growth configuration: one dataclass, loadable from YAML, every field also a CLI option.

Precedence: command line > YAML file > preset (`--preset NAME`) > dataclass defaults. The
argparse options are generated from the fields, so a new key is automatically settable
both ways; numbers are parsed by `pgt.options`' finite number types (docs/growth.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from pgt import options
from pgt.data.mixture import DATA_SPEC, normalize_specs, parse_mixture
from pgt.errors import PgtError, one_line
from pgt.model.architecture import (
    DEFAULT_ATTN_IMPLEMENTATION,
    DEFAULT_HIDDEN_ACT,
    AttnImplementation,
    BlockInit,
    HiddenAct,
)

Init = BlockInit
Baseline = Literal["none", "monolithic", "trainable-embeddings"]
Autocast = Literal["auto", "off", "bf16"]

# Keys that may differ between the run that wrote a checkpoint and the one resuming it:
# they change where and how verbosely we run, never the numbers that come out.
RESUME_NEUTRAL_KEYS = frozenset({"out", "progress", "log_every", "checkpoint_every", "device", "compile",
                                 "gradient_checkpointing"})
# Optimizer and schedule settings: after a non-finite loss stopped a run they may change on resume
# (the change is recorded in run.json), since the usual remedy is a lower lr or a tighter clip.
OPTIMIZER_KEYS = frozenset({"lr", "min_lr_ratio", "warmup_steps", "weight_decay", "grad_clip", "betas"})
# Keys without a default that a run cannot do without (given as options or in CONFIG.yaml).
REQUIRED_KEYS = ("substrate", "data", "out")
# Option spellings other than `--key-name` (the key's own spelling stays accepted).
FLAG_ALIASES = {"from_model": ("--from",)}
# Keys a preset sets (pgt.model.presets): depth, attention heads and context.
PRESET_KEYS = ("stages", "heads", "context")


@dataclass
class GrowthConfig:
    """Everything `pgt grow` needs. Field comments double as the CLI help."""

    substrate: str | None = None  # substrate directory (tokenizer + frozen glyph matrix); sets d_model
    data: str | list[str] | None = None  # token data DIR from `pgt data prepare`, or NAME=DIR:WEIGHT, repeated: a weighted mixture
    out: str | None = None  # run directory (stage-K models, checkpoints, metrics)
    from_model: str | None = None  # a saved K-block single model (any run's stage-K) to grow on: stages K+1..N on top of it
    stages: int = 3  # number of blocks to grow (= stages)
    init: Init = "random"  # new-block initialisation: random (reference), identity, copy-top
    tokens_per_stage: int = 1_000_000  # training-token budget of each stage
    batch_size: int = 8  # sequences per micro-batch per process
    grad_accum: int = 1  # micro-batches per optimizer step
    seq_len: int = 256  # tokens per training sequence
    preset: str | None = None  # a named size (pgt.model.presets): sets stages, heads, context; checks the substrate's width
    lr: float = 8e-3  # peak learning rate of each stage (8e-3 trains small stages best; lower it for wide models)
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of lr
    warmup_steps: float = 0.05  # warmup steps per stage; below 1 it is a fraction of the stage's steps
    weight_decay: float = 0.1  # AdamW decoupled weight decay (matrices only, not norms/biases)
    grad_clip: float = 1.0  # clip the global gradient norm to this (0 = off)
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas
    heads: int = 4  # attention heads (must divide the substrate's dim)
    intermediate_multiple: int = 4  # MLP hidden size = multiple x d_model
    context: int = 1024  # the saved models' maximum position (>= seq_len)
    hidden_act: HiddenAct = DEFAULT_HIDDEN_ACT  # MLP activation: gelu (ours), relu2 (served natively by vLLM/SGLang)
    attn_implementation: AttnImplementation = DEFAULT_ATTN_IMPLEMENTATION  # transformers attention backend
    seed: int = 0  # seeds block initialisation and the data order
    lora_from: int = 5  # from this stage on, older blocks train through LoRA adapters (0 = never)
    lora_rank: int = 8  # LoRA rank
    lora_alpha: float = 16.0  # LoRA scaling numerator (scale = alpha / rank)
    train_head: bool = True  # the output head trains with the new block
    train_norm: bool = True  # the final norm trains with the new block
    eval_every: int = 100  # optimizer steps between validation evaluations (0 = stage ends only)
    eval_tokens: int = 32_768  # size of the fixed validation sample: whole documents spread over the split
    patience: int = 0  # end a stage after this many evaluations without improvement (0 = off)
    checkpoint_every: int = 100  # optimizer steps between resumable checkpoints (0 = stage ends only)
    log_every: int = 10  # optimizer steps between train-metric records and log lines
    baseline: Baseline = "none"  # none = progressive growth; monolithic / trainable-embeddings = one stage, all blocks
    autocast: Autocast = "auto"  # auto = bfloat16 autocast on GPU, float32 on CPU
    device: str = options.DEVICE_AUTO  # auto, cpu, cuda, cuda:1, ...
    compile: bool = False  # torch.compile the training step (its first steps compile; a process reuses it)
    fsdp: bool = False  # shard with FSDP2 (fully_shard) instead of DDP under torchrun (for the 4,096-wide presets)
    gradient_checkpointing: bool = False  # recompute block activations in the backward pass (less memory, ~30 % slower)
    progress: bool | None = None  # tqdm progress bar (rank 0) instead of log lines (default: when stderr is a terminal)

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # YAML gives lists
        self.data = normalize_specs(self.data)  # one plain DIR stays a string, as before mixtures

    @property
    def kind(self) -> str:
        """`growth`, or the baseline's name."""
        return "growth" if self.baseline == "none" else self.baseline

    def validate(self) -> None:
        """Raise PgtError on a missing or inconsistent setting."""
        for key in REQUIRED_KEYS:
            if not getattr(self, key):
                raise PgtError(f"--{key} is required (on the command line or in the config file)")
        for f in fields(self):
            value = getattr(self, f.name)
            numbers = value if isinstance(value, tuple) else (value,)
            if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
                raise PgtError(f"{f.name} must be a finite number (got {value})")
        positive = ("stages", "tokens_per_stage", "batch_size", "grad_accum", "seq_len", "heads",
                    "intermediate_multiple", "eval_tokens", "log_every", "lora_rank")
        for key in positive:
            if getattr(self, key) < 1:
                raise PgtError(f"{key} must be at least 1 (got {getattr(self, key)})")
        for key in ("eval_every", "checkpoint_every", "patience", "lora_from", "warmup_steps", "grad_clip",
                    "weight_decay"):
            if getattr(self, key) < 0:
                raise PgtError(f"{key} must not be negative (got {getattr(self, key)})")
        if not 0 <= self.seed <= options.SEED_MAX:  # a config file's seed, which no parser saw
            raise PgtError(f"seed must be within 0 … {options.SEED_MAX} (got {self.seed})")
        parse_mixture(self.data)  # names, paths and weights (checked against the substrate when the run opens)
        if not self.lr > 0:
            raise PgtError(f"lr must be positive (got {self.lr})")
        if not all(0 <= b < 1 for b in self.betas) or len(self.betas) != 2:
            raise PgtError(f"betas must be two numbers in [0, 1) (got {' '.join(map(str, self.betas))})")
        if not self.lora_alpha > 0:
            raise PgtError(f"lora_alpha must be positive (got {self.lora_alpha})")
        if not 0 <= self.min_lr_ratio <= 1:
            raise PgtError(f"min_lr_ratio must be within [0, 1] (got {self.min_lr_ratio})")
        if self.context < self.seq_len:
            raise PgtError(f"context ({self.context}) must be at least seq_len ({self.seq_len})")
        if self.from_model and self.baseline != "none":
            raise PgtError(f"--from grows stages on a saved model; a {self.baseline} baseline trains from scratch")
        if self.preset is not None:
            from pgt.model.presets import get_preset

            get_preset(self.preset)  # an unknown name lists the known ones
        for name, value in zip(("init", "baseline", "autocast"), (self.init, self.baseline, self.autocast)):
            allowed = typing.get_args(_field_types()[name])
            if value not in allowed:
                raise PgtError(f"{name} must be one of {', '.join(allowed)} (got {value!r})")

    def show_progress(self) -> bool:
        """The progress bar, or (False) plain log lines: the setting, else whether stderr is a terminal."""
        import sys

        return sys.stderr.isatty() if self.progress is None else self.progress

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-able values."""
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(GrowthConfig)


def _scalar_type(annotation: Any) -> Any:
    """`int | None` -> int; `str | list[str] | None` -> list[str]; `Literal[...]` stays; used to build argparse options."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options_ = [a for a in typing.get_args(annotation) if a is not type(None)]
        (annotation,) = [a for a in options_ if typing.get_origin(a) is list] or options_
    return annotation


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Check/convert one YAML value to the field's type, with a one-line error."""
    annotation = _scalar_type(annotation)
    if value is None:
        return None
    origin = typing.get_origin(annotation)
    try:
        if origin is Literal:
            if value not in typing.get_args(annotation):
                raise ValueError(f"expected one of {', '.join(typing.get_args(annotation))}")
            return value
        if origin is list:  # --data: one DIR or a list of NAME=DIR:WEIGHT
            if isinstance(value, str):
                return value
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"expected a directory or a list of {DATA_SPEC}")
            return list(value)
        if origin is tuple:
            items = list(value)
            if len(items) != len(typing.get_args(annotation)):
                raise ValueError(f"expected {len(typing.get_args(annotation))} numbers")
            return tuple(_coerce(name, v, float) for v in items)
        if annotation is bool:
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if annotation is int:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError("expected an integer")
            return int(float(value))
        if annotation is float:
            if isinstance(value, bool) or not math.isfinite(float(value)):
                raise ValueError("expected a finite number")
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise PgtError(f"config key {name}: bad value {value!r} ({exc})") from None


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file into checked field values (unknown keys are an error)."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise PgtError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise PgtError(f"config file {path} is not valid YAML: {one_line(exc)}") from None
    if not isinstance(raw, dict):
        raise PgtError(f"config file {path} must hold a mapping of keys to values")
    types_ = _field_types()
    unknown = sorted(set(raw) - set(types_))
    if unknown:
        raise PgtError(f"config file {path}: unknown keys {', '.join(unknown)} (see `pgt grow --help`)")
    return {name: _coerce(name, value, types_[name]) for name, value in raw.items()}


# The `pgt.options` number type of each numeric field (finite; signs as `validate` wants them).
_NUMBER_TYPES = {
    "lr": options.positive_float, "lora_alpha": options.positive_float,
    "min_lr_ratio": options.non_negative_float, "warmup_steps": options.non_negative_float,
    "weight_decay": options.non_negative_float, "grad_clip": options.non_negative_float,
    "betas": options.non_negative_float,
    **{key: options.non_negative_int for key in ("eval_every", "checkpoint_every", "patience", "lora_from")},
    "seed": options.seed,
}


def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One `--key` option per field (but `skip`); defaults are None so that only given options override."""
    help_texts = _field_help()
    for f in fields(GrowthConfig):
        if f.name in skip:
            continue
        annotation = _scalar_type(_field_types()[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.name in REQUIRED_KEYS:
            suffix = " (required: here or in CONFIG.yaml)"
        else:
            suffix = "" if default is None else f" (default: {default})"
        # argparse formats help with %: a literal one (as in "~30 %") must be doubled
        help_text = (help_texts.get(f.name, "") + suffix).replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": help_text}
        if f.name == "preset":
            from pgt.model.presets import PRESETS

            kwargs["choices"] = list(PRESETS)
        elif typing.get_origin(annotation) is Literal:
            kwargs["choices"] = typing.get_args(annotation)
        elif typing.get_origin(annotation) is list:
            kwargs.update(action="append", metavar=f"DIR|{DATA_SPEC}")
        elif typing.get_origin(annotation) is tuple:
            kwargs.update(type=_NUMBER_TYPES[f.name], nargs=len(typing.get_args(annotation)), metavar="X")
        elif annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif annotation is int:
            kwargs["type"] = _NUMBER_TYPES.get(f.name, options.positive_int)
        elif annotation is float:
            kwargs["type"] = _NUMBER_TYPES[f.name]
        parser.add_argument(*FLAG_ALIASES.get(f.name, ()), flag, **kwargs)


def _field_help() -> dict[str, str]:
    """The trailing comments of the field definitions, used as option help."""
    import inspect

    helps: dict[str, str] = {}
    for line in inspect.getsource(GrowthConfig).splitlines():
        name, sep, rest = line.strip().partition(":")
        if sep and "#" in rest and name.isidentifier():
            helps[name] = rest.split("#", 1)[1].strip()
    return helps


def resolve_config(
    yaml_path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None
) -> GrowthConfig:
    """Defaults, then the preset, then the YAML file, then non-None `overrides` (e.g. parsed CLI options)."""
    values: dict[str, Any] = load_yaml(yaml_path) if yaml_path else {}
    types_ = _field_types()
    for name, value in (overrides or {}).items():
        if name in types_ and value is not None:
            values[name] = _coerce(name, value, types_[name])
    if values.get("preset"):
        values = {**preset_values(values["preset"]), **values}
    config = GrowthConfig(**values)
    config.validate()
    return config


def preset_values(name: str) -> dict[str, Any]:
    """The config values a preset sets (PRESET_KEYS): its depth as the stage count, its heads and context."""
    from pgt.model.presets import get_preset

    preset = get_preset(name)
    return dict(zip(PRESET_KEYS, (preset.num_hidden_layers, preset.num_attention_heads,
                                  preset.max_position_embeddings), strict=True))


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


__all__ = ["GrowthConfig", "OPTIMIZER_KEYS", "add_config_arguments", "config_differences", "load_yaml",
           "preset_values", "resolve_config"]
