"""`pgt merge`: combine experts trained on one substrate into a single model; `pgt tune`: train the merge."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from pgt import options
from pgt.compose.merge import DEFAULT_ADAPTER_HIDDEN, merge_experts
from pgt.compose.tune import TuneConfig, tune_merged
from pgt.data.mixture import DATA_SPEC
from pgt.io import refuse_overlap
from pgt.model.architecture import MERGE_MODES
from pgt.settings import (
    add_command,
    add_settings,
    out_setting,
    overwrite_setting,
    progress_setting,
    setting,
    settings_from,
)

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


def _weight_list(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.5,0.5, not {text!r}") from None


@dataclass
class MergeSettings:
    """`pgt merge`."""

    experts: list[str] = setting(
        help="model directories to merge (two or more)", positional=True, nargs="+", required=True, metavar="EXPERT_DIR"
    )
    out: str | None = out_setting("merged model directory to create")
    overwrite: bool = overwrite_setting()
    # a bare `list`: one option gives them all (a `list[float]` field would repeat its option)
    weights: list | None = setting(
        None,
        "one positive weight per expert, comma-separated",
        parse=_weight_list,
        metavar="W1,W2,…",
        default_text="equal",
    )
    mode: str = setting("mean", "how logits combine", choices=MERGE_MODES)
    adapter_hidden_size: int = setting(
        DEFAULT_ADAPTER_HIDDEN, "width of the adapter's bottleneck, with --mode adapter", metavar="N"
    )
    seed: int = setting(0, "seed of the adapter's random initialisation, with --mode adapter", parse=options.seed)


@dataclass
class TuneSettings(TuneConfig):
    """`pgt tune`: TuneConfig, the merged model, its data and its output."""

    merged: str | None = setting(None, "a `pgt merge` output", positional=True, required=True, metavar="MERGED_DIR")
    data: list[str] | None = setting(
        None,
        "token data directory (`pgt data prepare`), or NAME=DIR:WEIGHT, repeated: a weighted "
        "mixture drawn as `pgt grow` draws it",
        required=True,
        metavar=f"DIR|{DATA_SPEC}",
    )
    progress: bool | None = progress_setting()  # the command's default: on when stderr is a terminal
    out: str | None = out_setting("tuned model directory to create (with tune.json, its loss curve)")
    overwrite: bool = overwrite_setting()


# The options of `pgt tune`, in the order its help lists them (TuneConfig's others keep their defaults).
TUNE_OPTIONS = (
    "merged",
    "data",
    "tokens",
    "full",
    "batch_size",
    "seq_len",
    "lr",
    "seed",
    "device",
    "progress",
    "out",
    "overwrite",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    add_command(
        subparsers,
        "merge",
        help="merge experts on one substrate into one model (logit averaging or adapter)",
        description=MERGE_DESCRIPTION,
        examples=MERGE_EXAMPLES,
        handler=run_merge,
        settings=MergeSettings,
    )

    tune = add_command(
        subparsers,
        "tune",
        help="train a merged model's adapter (or all of it) on token data",
        description=TUNE_DESCRIPTION,
        examples=TUNE_EXAMPLES,
        handler=run_tune,
    )
    add_settings(tune, TuneSettings, TUNE_OPTIONS)


def run_merge(args: argparse.Namespace) -> int:
    settings = settings_from(MergeSettings, args)
    refuse_overlap(settings.out, settings.experts)
    out = merge_experts(
        settings.experts,
        settings.out,
        weights=settings.weights,
        mode=settings.mode,
        adapter_hidden_size=settings.adapter_hidden_size,
        seed=settings.seed,
        overwrite=settings.overwrite,
    )
    print(f"merged {len(settings.experts)} experts ({settings.mode}) into {out}")
    return 0


def run_tune(args: argparse.Namespace) -> int:
    settings = settings_from(TuneSettings, args)
    settings.progress = options.show_progress(settings)
    record = tune_merged(settings.merged, settings.data, settings.out, settings, overwrite=settings.overwrite)
    print(
        f"tuned the {record.trains} of {settings.merged} ({record.trainable_parameters:,} parameters) for "
        f"{record.tokens:,} tokens: validation loss {record.start_val_loss:.4f} -> {record.end_val_loss:.4f}; "
        f"saved to {settings.out}"
    )
    return 0
