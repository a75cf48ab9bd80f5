"""`pgt info`, `pgt init`, `pgt generate` and `pgt push`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgt import options
from pgt.errors import PgtError
from pgt.model.architecture import (
    DEFAULT_HIDDEN_ACT,
    SAMPLING,
    AttnImplementation,
    HiddenAct,
    attn_implementation_setting,
)
from pgt.model.hub import push_model
from pgt.model.loading import (
    init_model_dir,
    load_model,
    parameter_counts,
    read_model_config,
)
from pgt.model.presets import PRESETS
from pgt.settings import (
    add_command,
    device_setting,
    dtype_setting,
    out_setting,
    overwrite_setting,
    setting,
    settings_from,
    substrate_setting,
)

SIZE = "size (a preset, or --blocks and --heads)"
SAMPLING_GROUP = "sampling (the model card's defaults)"


@dataclass
class InfoSettings:
    """`pgt info`."""

    target: str = setting(
        help="a preset name or a model directory", positional=True, required=True, metavar="PRESET|MODEL_DIR"
    )


@dataclass
class InitSettings:
    """`pgt init`."""

    substrate: str | None = substrate_setting()
    preset: str | None = setting(None, "named size, see `pgt info PRESET`", group=SIZE)
    # --layers: the old name of --blocks (docs/architecture.md, "Names"), still accepted, no longer listed
    blocks: int | None = setting(None, "number of decoder blocks", hidden_flags=("--layers",), group=SIZE)
    heads: int | None = setting(None, "attention heads per block", group=SIZE)
    hidden_act: HiddenAct = setting(DEFAULT_HIDDEN_ACT, "MLP activation; relu2 serves natively in vLLM/SGLang")
    out: str | None = out_setting("model directory to create")
    overwrite: bool = overwrite_setting()
    seed: int = setting(0, "seed of the random initialisation", parse=options.seed)


@dataclass
class ModelSettings:
    """A command on one saved model (generate, push)."""

    model: str = setting(help="model directory", positional=True, required=True, metavar="MODEL_DIR")


@dataclass
class GenerateSettings(ModelSettings):
    """`pgt generate`."""

    prompt: str = setting(help="text to continue", parse=options.text, positional=True, required=True, metavar="PROMPT")
    max_new_tokens: int = setting(100, "tokens to generate")
    temperature: float = setting(
        SAMPLING["temperature"], "temperature", parse=options.positive_float, group=SAMPLING_GROUP
    )
    top_k: int = setting(
        SAMPLING["top_k"], "k likeliest tokens, 0: all", parse=options.non_negative_int, group=SAMPLING_GROUP
    )
    top_p: float = setting(SAMPLING["top_p"], "nucleus mass, 1.0: off", parse=options.fraction, group=SAMPLING_GROUP)
    seed: int | None = setting(None, "random seed, for reproducible sampling", parse=options.seed, group=SAMPLING_GROUP)
    greedy: bool = setting(False, "no sampling: always the most likely token", switch=True, group=SAMPLING_GROUP)
    dtype: str = dtype_setting()
    device: str = device_setting()
    attn_implementation: AttnImplementation = attn_implementation_setting()
    truncate: bool = setting(
        False, "keep only the last tokens of a prompt too long for the context", switch=True, default_text="refuse it"
    )

    def sampling(self) -> dict[str, Any]:
        """The keyword arguments of `model.generate` that choose the next token."""
        if self.greedy:
            return GREEDY
        return {"do_sample": True, "temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}


@dataclass
class PushSettings(ModelSettings):
    """`pgt push`."""

    repo_id: str = setting(
        help="Hub repository, e.g. USER/NAME (created if missing)", positional=True, required=True, metavar="REPO_ID"
    )
    private: bool = setting(False, "create the repository as private", switch=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the model commands to the `pgt` parser."""
    add_command(
        subparsers,
        "info",
        help="sizes of a preset or a model directory",
        description="Print blocks, width, heads, vocabulary, total and trainable parameters "
        "(trainable excludes the frozen embedding) of a named preset or a model directory.",
        examples=[
            "pgt info abs-bvv-4          # a published size: blocks, width, heads, parameters",
            "pgt info runs/demo/stage-2  # a model directory",
        ],
        handler=run_info,
        settings=InfoSettings,
    )

    add_command(
        subparsers,
        "init",
        help="write an untrained model on a substrate",
        description="Write an untrained model directory (a standard transformers `arcee` checkpoint: "
        "weights, config, tokenizer, model card) on a substrate. The width and vocabulary come from the "
        "substrate; depth and heads from --preset or --blocks/--heads.",
        examples=[
            "pgt init --substrate runs/sub --preset tiny --out runs/tiny-init",
            "pgt init --substrate runs/sub --blocks 4 --heads 8 --out runs/m0 --seed 1",
            "pgt init --substrate runs/sub --blocks 2 --heads 4 --hidden-act relu2 --out runs/m-relu2",
        ],
        handler=run_init,
        settings=InitSettings,
    )

    add_command(
        subparsers,
        "generate",
        help="continue a prompt, streaming tokens as they come",
        description="Continue PROMPT with the model in MODEL_DIR, printing tokens as they are generated. "
        f"Sampling defaults are the model card's (temperature {SAMPLING['temperature']}, top-k "
        f"{SAMPLING['top_k']}, top-p {SAMPLING['top_p']}); --greedy picks the most likely token instead.",
        examples=[
            'pgt generate runs/demo/stage-2 "Hello, I am a language model "',
            'pgt generate runs/m0 "The capital of France is" --greedy --max-new-tokens 20',
            'pgt generate runs/m0 "Once upon a time" --seed 7 --temperature 1.0 --top-k 0',
        ],
        handler=run_generate,
        settings=GenerateSettings,
    )

    add_command(
        subparsers,
        "push",
        help="upload a model directory to the Hugging Face Hub",
        description="Upload MODEL_DIR (a stage, an init or a merged model: config, weights, tokenizer, "
        "model card) as the Hub model repository REPO_ID. Needs a network and a token (`hf auth login`).",
        examples=[
            "pgt push runs/grow/stage-3 me/pgt-stage-3",
            "pgt push runs/grow/merged/en-ru-zh me/pgt-merged --private",
        ],
        handler=run_push,
        settings=PushSettings,
    )


def format_count(count: int) -> str:
    return f"{count:,} ({count / 1e9:.2f} B)" if count >= 1e8 else f"{count:,} ({count / 1e6:.1f} M)"


def run_info(args: argparse.Namespace) -> int:
    target = settings_from(InfoSettings, args).target
    if target in PRESETS:
        preset = PRESETS[target]
        config = preset.config()
        lines = [f"preset:     {preset.name} (substrate family {preset.family})"]
    elif Path(target).is_dir():
        config = read_model_config(target)
        lines = [f"model:      {target} ({config.model_type})", f"substrate:  {config.substrate_fingerprint}"]
        preset = None
    else:
        raise PgtError(f"{target!r} is neither a preset ({', '.join(PRESETS)}) nor a model directory")
    total, trainable = parameter_counts(config)
    if getattr(config, "experts", None):
        lines.append(f"experts:    {len(config.experts)} (merge mode {config.mode})")
    lines.append(f"blocks:     {config.num_hidden_layers}")
    lines.append(f"d_model:    {config.hidden_size}")
    if hasattr(config, "num_attention_heads"):
        lines.append(f"heads:      {config.num_attention_heads} (head dim {config.head_dim})")
        lines.append(f"mlp:        {config.intermediate_size} ({config.hidden_act})")
    lines += [
        f"vocab:      {config.vocab_size:,}",
        f"context:    {config.max_position_embeddings}",
        f"total:      {format_count(total)}",
        f"trainable:  {format_count(trainable)}" + (" (embedding frozen)" if total > trainable else ""),
    ]
    if preset is not None and preset.published:
        lines.append(f"published:  {preset.published} B")
    print("\n".join(lines))
    return 0


def run_init(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    settings = settings_from(InitSettings, args)
    hf_logging.disable_progress_bar()
    out = init_model_dir(
        settings.substrate,
        settings.out,
        preset=settings.preset,
        layers=settings.blocks,
        heads=settings.heads,
        seed=settings.seed,
        overwrite=settings.overwrite,
        hidden_act=settings.hidden_act,
    )
    print(f"wrote {out}")
    return 0


def fit_prompt(input_ids: list[int], max_new_tokens: int, context: int, *, truncate: bool) -> list[int]:
    """The prompt ids, checked (or, with `truncate`, left-truncated) to leave room for the new tokens."""
    room = context - max_new_tokens
    if room < 1:
        raise PgtError(f"--max-new-tokens {max_new_tokens} leaves no room for a prompt in the context of {context}")
    if len(input_ids) > room:
        if not truncate:
            raise PgtError(
                f"the prompt has {len(input_ids)} tokens; with {max_new_tokens} new tokens that exceeds the "
                f"model's context of {context}: shorten it, lower --max-new-tokens, or pass --truncate"
            )
        input_ids = input_ids[-room:]
    if not input_ids:
        raise PgtError("the prompt is empty")
    return input_ids


def run_generate(args: argparse.Namespace) -> int:
    import torch
    from transformers import TextStreamer
    from transformers.utils import logging as hf_logging

    settings = settings_from(GenerateSettings, args)
    hf_logging.disable_progress_bar()
    model, tokenizer = load_model(
        settings.model,
        dtype=options.torch_dtype(settings.dtype),
        device=options.resolve_device(settings.device),
        attn_implementation=settings.attn_implementation,
    )
    input_ids = fit_prompt(
        tokenizer(settings.prompt)["input_ids"],
        settings.max_new_tokens,
        model.config.max_position_embeddings,
        truncate=settings.truncate,
    )
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    print(tokenizer.decode(input_ids), end="", flush=True)
    stream_continuation(
        model,
        input_ids,
        max_new_tokens=settings.max_new_tokens,
        sampling=settings.sampling(),
        streamer=TextStreamer(tokenizer, skip_prompt=True),
    )
    return 0


GREEDY = {"do_sample": False, "temperature": None, "top_k": None, "top_p": None}  # `pgt generate --greedy`


def stream_continuation(
    model: Any, input_ids: list[int], *, max_new_tokens: int, sampling: dict[str, Any], streamer: Any
) -> Any:
    """`pgt generate`'s one call into the model: continue one prompt, each new token handed to `streamer`
    (also timed on its own by benchmarks/gpu_check.py); returns the prompt and continuation ids."""
    import torch

    device = model.device
    with torch.inference_mode():
        return model.generate(
            torch.tensor([input_ids], device=device),
            attention_mask=torch.ones(1, len(input_ids), dtype=torch.long, device=device),
            max_new_tokens=max_new_tokens,
            streamer=streamer,
            pad_token_id=model.config.pad_token_id,
            **sampling,
        )


def run_push(args: argparse.Namespace) -> int:
    settings = settings_from(PushSettings, args)
    print(f"pushed {settings.model} to {push_model(settings.model, settings.repo_id, private=settings.private)}")
    return 0
