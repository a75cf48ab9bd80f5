"""`pgt info`, `pgt init` and `pgt generate`."""

from __future__ import annotations

import argparse
from pathlib import Path

from pgt.errors import PgtError

INFO_EXAMPLES = """examples:
  pgt info abs-bvv-4          # a published size: blocks, width, heads, parameters
  pgt info runs/demo/stage-2  # a model directory
"""

INIT_EXAMPLES = """examples:
  pgt init --substrate runs/sub --preset tiny --out runs/tiny-init
  pgt init --substrate runs/sub --layers 4 --heads 8 --out runs/m0 --seed 1
"""

GENERATE_EXAMPLES = """examples:
  pgt generate runs/demo/stage-2 "Hello, I am a language model "
  pgt generate runs/m0 "The capital of France is" --greedy --max-new-tokens 20
  pgt generate runs/m0 "Once upon a time" --seed 7 --temperature 1.0 --top-k 0
"""

# The model card's sampling settings.
CARD_TEMPERATURE, CARD_TOP_K, CARD_TOP_P = 0.8, 50, 0.95
DTYPES = ("float32", "bfloat16", "float16")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the model commands to the `pgt` parser."""
    formatter = argparse.RawDescriptionHelpFormatter

    info = subparsers.add_parser(
        "info",
        help="sizes of a preset or a model directory",
        description="Print blocks, width, heads, vocabulary, total and trainable parameters "
        "(trainable excludes the frozen embedding) of a named preset or a model directory.",
        epilog=INFO_EXAMPLES,
        formatter_class=formatter,
    )
    info.add_argument("target", metavar="PRESET|MODEL_DIR", help="a preset name or a model directory")
    info.set_defaults(handler=run_info)

    init = subparsers.add_parser(
        "init",
        help="write an untrained model on a substrate",
        description="Write an untrained model directory (weights, code, tokenizer) on a substrate. "
        "The width and vocabulary come from the substrate; depth and heads from --preset or --layers/--heads.",
        epilog=INIT_EXAMPLES,
        formatter_class=formatter,
    )
    init.add_argument("--substrate", required=True, type=Path, help="substrate directory")
    size = init.add_argument_group("size (a preset, or --layers and --heads)")
    size.add_argument("--preset", help="named size, see `pgt info PRESET`")
    size.add_argument("--layers", type=int, help="number of decoder blocks")
    size.add_argument("--heads", type=int, help="attention heads per block")
    init.add_argument("--out", required=True, type=Path, help="model directory to create")
    init.add_argument("--seed", type=int, default=0, help="seed of the random initialisation (default: 0)")
    init.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    init.set_defaults(handler=run_init)

    generate = subparsers.add_parser(
        "generate",
        help="continue a prompt, streaming tokens as they come",
        description="Continue PROMPT with the model in MODEL_DIR, printing tokens as they are generated. "
        f"Sampling defaults are the model card's (temperature {CARD_TEMPERATURE}, top-k {CARD_TOP_K}, "
        f"top-p {CARD_TOP_P}); --greedy picks the most likely token instead.",
        epilog=GENERATE_EXAMPLES,
        formatter_class=formatter,
    )
    generate.add_argument("model", type=Path, metavar="MODEL_DIR", help="model directory")
    generate.add_argument("prompt", metavar="PROMPT", help="text to continue")
    generate.add_argument("--max-new-tokens", type=int, default=100, help="tokens to generate (default: 100)")
    sampling = generate.add_argument_group("sampling (the model card's defaults)")
    sampling.add_argument("--temperature", type=float, default=CARD_TEMPERATURE, help="temperature (%(default)s)")
    sampling.add_argument("--top-k", type=int, default=CARD_TOP_K, help="k likeliest tokens, 0: all (%(default)s)")
    sampling.add_argument("--top-p", type=float, default=CARD_TOP_P, help="nucleus mass, 1.0: off (%(default)s)")
    sampling.add_argument("--seed", type=int, help="random seed, for reproducible sampling")
    sampling.add_argument("--greedy", action="store_true", help="no sampling: always the most likely token")
    generate.add_argument("--dtype", choices=DTYPES, default="float32", help="weights dtype (default: float32)")
    generate.add_argument(
        "--truncate",
        action="store_true",
        help="keep only the last tokens of a prompt too long for the context (default: refuse it)",
    )
    generate.set_defaults(handler=run_generate)


def format_count(count: int) -> str:
    return f"{count:,} ({count / 1e9:.2f} B)" if count >= 1e8 else f"{count:,} ({count / 1e6:.1f} M)"


def run_info(args: argparse.Namespace) -> int:
    from pgt.model.presets import PRESETS, parameter_counts

    target = args.target
    if target in PRESETS:
        preset = PRESETS[target]
        config = preset.config()
        lines = [f"preset:     {preset.name} (substrate family {preset.family})"]
    elif Path(target).is_dir():
        from transformers import AutoConfig

        from pgt.model import register_auto_classes

        register_auto_classes()
        try:
            config = AutoConfig.from_pretrained(target, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise PgtError(f"{target} is not a model directory: {str(exc).splitlines()[0]}") from None
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
        lines.append(f"mlp:        {config.intermediate_size}")
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

    from pgt.model.loading import init_model_dir

    hf_logging.disable_progress_bar()
    out = init_model_dir(
        args.substrate,
        args.out,
        preset=args.preset,
        layers=args.layers,
        heads=args.heads,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(f"wrote {out}")
    return 0


def fit_prompt(input_ids: list[int], max_new_tokens: int, context: int, *, truncate: bool) -> list[int]:
    """The prompt ids, checked (or, with `truncate`, left-truncated) to leave room for the new tokens."""
    if max_new_tokens < 1:
        raise PgtError("--max-new-tokens must be at least 1")
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

    from pgt.model.loading import load_model

    if not args.greedy and (args.temperature <= 0 or not 0 < args.top_p <= 1 or args.top_k < 0):
        raise PgtError("sampling needs --temperature > 0, 0 < --top-p <= 1 and --top-k >= 0 (or pass --greedy)")
    hf_logging.disable_progress_bar()
    model, tokenizer = load_model(args.model, dtype=getattr(torch, args.dtype))
    input_ids = fit_prompt(
        tokenizer(args.prompt)["input_ids"],
        args.max_new_tokens,
        model.config.max_position_embeddings,
        truncate=args.truncate,
    )
    if args.seed is not None:
        torch.manual_seed(args.seed)
    sampling = (
        {"do_sample": False}
        if args.greedy
        else {"do_sample": True, "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
    )
    print(tokenizer.decode(input_ids), end="", flush=True)
    with torch.inference_mode():
        model.generate(
            torch.tensor([input_ids]),
            attention_mask=torch.ones(1, len(input_ids), dtype=torch.long),
            max_new_tokens=args.max_new_tokens,
            streamer=TextStreamer(tokenizer, skip_prompt=True),
            pad_token_id=model.config.pad_token_id,
            **sampling,
        )
    return 0
