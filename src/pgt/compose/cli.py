"""`pgt merge`: combine experts trained on one substrate into a single model."""

from __future__ import annotations

import argparse

MERGE_EXAMPLES = """examples:
  # the paper's zero-training mixture: average two experts' logits
  pgt merge runs/en-ru/stage-4 runs/en-zh/stage-4 --out runs/merged/en-ru-zh

  # trust the first expert more (weights are normalised to sum to 1)
  pgt merge A B --weights 0.7,0.3 --out merged/weighted

  # a trainable adapter over the concatenated logits, initialised to the average
  pgt merge A B C --mode adapter --out merged/adapter

The merged directory loads like any model (`pgt generate DIR "prompt"`,
AutoModelForCausalLM with or without pgt installed). Experts must share the substrate:
different substrates or vocabularies are refused.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    merge = subparsers.add_parser(
        "merge",
        help="merge experts on one substrate into one model (logit averaging or adapter)",
        description="Merge model directories that share a substrate into one model whose logits are\n"
        "the weighted mean of the experts' logits (--mode mean) or a trainable adapter of them\n"
        "(--mode adapter, initialised to that mean). The output appears atomically.",
        epilog=MERGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    merge.add_argument("experts", nargs="+", metavar="EXPERT_DIR", help="model directories to merge (two or more)")
    merge.add_argument("--out", required=True, metavar="DIR", help="merged model directory to create")
    merge.add_argument("--weights", type=_weight_list, metavar="W1,W2,…",
                       help="one positive weight per expert, comma-separated (default: equal)")  # fmt: skip
    merge.add_argument("--mode", choices=["mean", "adapter"], default="mean", help="how logits combine (default: mean)")
    merge.add_argument("--adapter-hidden-size", type=int, default=64, metavar="N",
                       help="width of the adapter's bottleneck (--mode adapter; default: 64)")  # fmt: skip
    merge.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    merge.set_defaults(handler=_merge)


def _weight_list(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.5,0.5, not {text!r}") from None


def _merge(args: argparse.Namespace) -> int:
    from pgt.compose.merge import merge_experts

    out = merge_experts(
        args.experts,
        args.out,
        weights=args.weights,
        mode=args.mode,
        adapter_hidden_size=args.adapter_hidden_size,
        overwrite=args.overwrite,
    )
    print(f"merged {len(args.experts)} experts ({args.mode}) into {out}")
    return 0
