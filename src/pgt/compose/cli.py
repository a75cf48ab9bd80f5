"""`pgt merge`: combine experts trained on one substrate into a single model; `pgt tune`: train the merge."""

from __future__ import annotations

import argparse

from pgt import options
from pgt.compose.merge import DEFAULT_ADAPTER_HIDDEN, merge_experts
from pgt.compose.tune import TuneConfig, tune_merged
from pgt.data.mixture import DATA_SPEC
from pgt.io import refuse_overlap
from pgt.model.architecture import MERGE_MODES

MERGE_EXAMPLES = (
    "pgt merge runs/en-ru/stage-4 runs/en-zh/stage-4 --out runs/merged/en-ru-zh   # average two experts' logits",
    "pgt merge A B --weights 0.7,0.3 --out merged/weighted   # trust A more (weights are normalised)",
    "pgt merge A B C --mode adapter --out merged/adapter     # a trainable adapter, starting as the average",
)
MERGE_DESCRIPTION = """Merge model directories that share a substrate into one model whose logits are
the weighted mean of the experts' logits (--mode mean) or a trainable adapter of them
(--mode adapter, initialised to that mean; train it with `pgt tune`). The output appears
atomically and may not equal, contain or lie inside an expert directory. The merged directory
loads like any model (`pgt generate DIR "prompt"`, AutoModelForCausalLM with or without pgt
installed). Experts must share the substrate: different substrates or vocabularies are refused."""
TUNE_EXAMPLES = (
    "pgt tune runs/merged/adapter --data runs/data --tokens 200000 --out runs/merged/adapter-tuned",
    "pgt tune runs/merged/mean --data runs/data --tokens 200000 --full --lr 1e-4 --out runs/merged/mean-tuned",
    "pgt tune runs/merged/adapter --data wiki=runs/wiki:0.9 --data sft=runs/sft:0.1 --tokens 200000 --out runs/t",
)
TUNE_DESCRIPTION = """Train a merged model (`pgt merge`) on token data (`pgt data prepare` with the experts'
substrate): its adapter (a `--mode adapter` merge), or with --full the whole model except the
frozen embedding. The validation loss is measured before the first step (the merge's starting
loss) and during training; the tuned model and its loss curve (tune.json) go to --out."""


TUNE_OPTIONS = ("tokens", "full", "batch_size", "seq_len", "lr", "seed")  # the TuneConfig fields `pgt tune` sets


def register(subparsers: argparse._SubParsersAction) -> None:
    merge = options.add_command(
        subparsers,
        "merge",
        help="merge experts on one substrate into one model (logit averaging or adapter)",
        description=MERGE_DESCRIPTION,
        examples=MERGE_EXAMPLES,
        handler=run_merge,
    )
    merge.add_argument("experts", nargs="+", metavar="EXPERT_DIR", help="model directories to merge (two or more)")
    options.add_out(merge, "merged model directory to create")
    merge.add_argument(
        "--weights",
        type=_weight_list,
        metavar="W1,W2,…",
        help="one positive weight per expert, comma-separated (default: equal)",
    )
    merge.add_argument("--mode", choices=MERGE_MODES, default="mean", help="how logits combine (default: mean)")
    merge.add_argument(
        "--adapter-hidden-size",
        type=options.positive_int,
        default=DEFAULT_ADAPTER_HIDDEN,
        metavar="N",
        help=f"width of the adapter's bottleneck (--mode adapter; default: {DEFAULT_ADAPTER_HIDDEN})",
    )

    tune = options.add_command(
        subparsers,
        "tune",
        help="train a merged model's adapter (or all of it) on token data",
        description=TUNE_DESCRIPTION,
        examples=TUNE_EXAMPLES,
        handler=run_tune,
    )
    tune.add_argument("merged", metavar="MERGED_DIR", help="a `pgt merge` output")
    tune.add_argument(
        "--data",
        required=True,
        action="append",
        metavar=f"DIR|{DATA_SPEC}",
        help="token data directory (`pgt data prepare`), or NAME=DIR:WEIGHT, repeated: a weighted "
        "mixture drawn as `pgt grow` draws it",
    )
    options.add_settings(tune, TuneConfig, TUNE_OPTIONS)
    options.add_device(tune)
    options.add_progress(tune)
    options.add_out(tune, "tuned model directory to create (with tune.json, its loss curve)")


def _weight_list(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.5,0.5, not {text!r}") from None


def run_merge(args: argparse.Namespace) -> int:
    refuse_overlap(args.out, args.experts)
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


def run_tune(args: argparse.Namespace) -> int:
    config = TuneConfig(
        **{name: getattr(args, name) for name in TUNE_OPTIONS}, device=args.device, progress=options.show_progress(args)
    )
    record = tune_merged(args.merged, args.data, args.out, config, overwrite=args.overwrite)
    print(
        f"tuned the {record.trains} of {args.merged} ({record.trainable_parameters:,} parameters) for "
        f"{record.tokens:,} tokens: validation loss {record.start_val_loss:.4f} -> {record.end_val_loss:.4f}; "
        f"saved to {args.out}"
    )
    return 0
