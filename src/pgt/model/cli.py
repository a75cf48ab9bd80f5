"""`pgt info`, `pgt init`, `pgt generate` and `pgt push`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pgt import options
from pgt.errors import PgtError
from pgt.model.architecture import (
    ATTN_IMPLEMENTATIONS,
    DEFAULT_ATTN_IMPLEMENTATION,
    DEFAULT_HIDDEN_ACT,
    HIDDEN_ACTS,
    SAMPLING,
)
from pgt.model.hub import push_model
from pgt.model.loading import (
    init_model_dir,
    load_model,
    parameter_counts,
    read_model_config,
)
from pgt.model.presets import PRESETS


def add_attn_implementation(parser: argparse.ArgumentParser) -> None:
    """`--attn-implementation`: transformers' attention backend (grow, generate, eval)."""
    parser.add_argument(
        "--attn-implementation",
        choices=ATTN_IMPLEMENTATIONS,
        default=DEFAULT_ATTN_IMPLEMENTATION,
        help=f"attention backend (default: {DEFAULT_ATTN_IMPLEMENTATION}; flash_attention_2 "
        "needs CUDA and the flash-attn package)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the model commands to the `pgt` parser."""
    info = options.add_command(
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
    )
    info.add_argument("target", metavar="PRESET|MODEL_DIR", help="a preset name or a model directory")

    init = options.add_command(
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
    )
    options.add_substrate(init)
    size = init.add_argument_group("size (a preset, or --blocks and --heads)")
    size.add_argument("--preset", help="named size, see `pgt info PRESET`")
    size.add_argument("--blocks", type=options.positive_int, help="number of decoder blocks")
    # The old name of --blocks (docs/architecture.md, "Names"): still accepted, no longer listed.
    size.add_argument("--layers", dest="blocks", type=options.positive_int, help=argparse.SUPPRESS)
    size.add_argument("--heads", type=options.positive_int, help="attention heads per block")
    init.add_argument(
        "--hidden-act",
        choices=HIDDEN_ACTS,
        default=DEFAULT_HIDDEN_ACT,
        help=f"MLP activation (default: {DEFAULT_HIDDEN_ACT}; relu2 serves natively in vLLM/SGLang)",
    )
    options.add_out(init, "model directory to create")
    init.add_argument("--seed", type=options.seed, default=0, help="seed of the random initialisation (default: 0)")

    generate = options.add_command(
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
    )
    generate.add_argument("model", type=Path, metavar="MODEL_DIR", help="model directory")
    generate.add_argument("prompt", type=options.text, metavar="PROMPT", help="text to continue")
    generate.add_argument(
        "--max-new-tokens", type=options.positive_int, default=100, help="tokens to generate (default: 100)"
    )
    sampling = generate.add_argument_group("sampling (the model card's defaults)")
    sampling.add_argument(
        "--temperature", type=options.positive_float, default=SAMPLING["temperature"], help="temperature (%(default)s)"
    )
    sampling.add_argument(
        "--top-k",
        type=options.non_negative_int,
        default=SAMPLING["top_k"],
        help="k likeliest tokens, 0: all (%(default)s)",
    )
    sampling.add_argument(
        "--top-p", type=options.fraction, default=SAMPLING["top_p"], help="nucleus mass, 1.0: off (%(default)s)"
    )
    sampling.add_argument("--seed", type=options.seed, help="random seed, for reproducible sampling")
    sampling.add_argument("--greedy", action="store_true", help="no sampling: always the most likely token")
    options.add_dtype(generate)
    options.add_device(generate)
    add_attn_implementation(generate)
    generate.add_argument(
        "--truncate",
        action="store_true",
        help="keep only the last tokens of a prompt too long for the context (default: refuse it)",
    )

    push = options.add_command(
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
    )
    push.add_argument("model", type=Path, metavar="MODEL_DIR", help="model directory")
    push.add_argument("repo_id", metavar="REPO_ID", help="Hub repository, e.g. USER/NAME (created if missing)")
    push.add_argument("--private", action="store_true", help="create the repository as private")


def format_count(count: int) -> str:
    return f"{count:,} ({count / 1e9:.2f} B)" if count >= 1e8 else f"{count:,} ({count / 1e6:.1f} M)"


def run_info(args: argparse.Namespace) -> int:
    target = args.target
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

    hf_logging.disable_progress_bar()
    out = init_model_dir(
        args.substrate,
        args.out,
        preset=args.preset,
        layers=args.blocks,
        heads=args.heads,
        seed=args.seed,
        overwrite=args.overwrite,
        hidden_act=args.hidden_act,
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

    hf_logging.disable_progress_bar()
    device = options.resolve_device(args.device)
    model, tokenizer = load_model(
        args.model, dtype=options.torch_dtype(args.dtype), device=device, attn_implementation=args.attn_implementation
    )
    input_ids = fit_prompt(
        tokenizer(args.prompt)["input_ids"],
        args.max_new_tokens,
        model.config.max_position_embeddings,
        truncate=args.truncate,
    )
    if args.seed is not None:
        torch.manual_seed(args.seed)
    sampling = (
        GREEDY
        if args.greedy
        else {"do_sample": True, "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
    )
    print(tokenizer.decode(input_ids), end="", flush=True)
    stream_continuation(
        model,
        input_ids,
        max_new_tokens=args.max_new_tokens,
        sampling=sampling,
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
    print(f"pushed {args.model} to {push_model(args.model, args.repo_id, private=args.private)}")
    return 0
