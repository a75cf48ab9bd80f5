"""Generation speed with the KV cache: PGT against a transformers Llama of the same shape.

    python benchmarks/bench_generation.py [--layers 6 --width 512 --heads 8 --new-tokens 64]

Both models generate greedily (every step forced to run to --new-tokens) from the same
random prompt at batch 1 and batch 8, float32 on the CPU. Prints tokens/s of each and
the ratio PGT / Llama (target >= 1.0). Rates are per CPU second of this process.
"""

from __future__ import annotations

import argparse

import torch
from model_pair import add_shape_arguments, build_pair, median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shape_arguments(parser, layers=6, width=512, heads=8)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = build_pair(args)
    print(
        f"shape: {args.layers} layers, width {args.width}, {args.heads} heads, vocab {args.vocab:,}; "
        f"{args.prompt_tokens} prompt + {args.new_tokens} new tokens, {args.threads} thread(s), float32"
    )

    for batch in args.batches:
        prompt = torch.randint(3, args.vocab, (batch, args.prompt_tokens))
        mask = torch.ones_like(prompt)

        def generate(model: torch.nn.Module, prompt: torch.Tensor = prompt, mask: torch.Tensor = mask) -> None:
            with torch.inference_mode():
                out = model.generate(
                    prompt,
                    attention_mask=mask,
                    max_new_tokens=args.new_tokens,
                    min_new_tokens=args.new_tokens,
                    do_sample=False,
                    use_cache=True,
                    pad_token_id=0,
                )
            assert out.shape[1] == args.prompt_tokens + args.new_tokens

        seconds = median_seconds({name: (lambda m=m: generate(m)) for name, m in models.items()}, args.repeats)
        rates = {name: batch * args.new_tokens / s for name, s in seconds.items()}
        print(
            f"batch {batch}: pgt {rates['pgt']:8.1f} tok/s   llama {rates['llama']:8.1f} tok/s   "
            f"ratio pgt/llama {rates['pgt'] / rates['llama']:.3f}"
        )


if __name__ == "__main__":
    main()
