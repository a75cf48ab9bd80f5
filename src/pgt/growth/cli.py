"""`pgt grow`: progressive layer-wise growth (or a baseline) from the command line (docs/growth.md)."""

from __future__ import annotations

import argparse

from pgt import options

EXAMPLES = [
    "pgt grow --substrate runs/sub --data runs/data --stages 3 --tokens-per-stage 2000000 --out runs/grow",
    "pgt grow grow.yaml --init identity --lr 5e-4          # YAML values, overridden on the command line",
    "pgt grow grow.yaml --baseline monolithic --out runs/grow/baselines/monolithic",
    "pgt grow --preset abs-bvv-4 --substrate sub4096 --data data --out runs/g --dry-run  # check, train nothing",
    "torchrun --nproc_per_node 4 -m pgt grow grow.yaml      # DDP; add --fsdp for the 4,096-wide presets",
    "",
    "A stage-K model lands in RUN_DIR/stage-K (loads with `pgt generate` / AutoModelForCausalLM).",
    "Rerunning the same command resumes from RUN_DIR/checkpoints; --overwrite discards the run once",
    "every new setting has been checked. After a non-finite loss, rerun with a lower --lr (optimizer",
    "and schedule settings may then change; run.json records it). Without a terminal, a log line",
    "every --log-every steps replaces the progress bar.",
    "A baseline trains all N blocks at once for N x tokens-per-stage tokens and saves RUN_DIR/stage-N.",
]


def register(subparsers: argparse._SubParsersAction) -> None:
    from pgt.growth.config import add_config_arguments

    parser = options.add_command(
        subparsers,
        "grow",
        help="grow a model block by block on a frozen substrate (or train a baseline)",
        description="Train stage 1 (one block), freeze it, add a block, train it, ... saving every stage "
        "as its own model. Options override CONFIG.yaml, which overrides the preset and the defaults.",
        examples=EXAMPLES,
        handler=run_grow,
    )
    parser.add_argument("config_file", nargs="?", metavar="CONFIG.yaml", help="YAML file of config keys")
    options.add_out(parser, "run directory (stage-K models, checkpoints, metrics)", required=False)
    options.add_substrate(parser, required=False)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check every setting (the model and optimizer are built on the meta device) and exit",
    )
    parser.add_argument(
        "--allow-data-change",
        action="store_true",
        help="resume on token data that changed since the run began (prepared again or edited); "
        "run.json and the report record the change",
    )
    add_config_arguments(parser, skip=("out", "substrate"))


def run_grow(args: argparse.Namespace) -> int:
    from pgt.growth.config import resolve_config
    from pgt.growth.trainer import check_settings, grow

    config = resolve_config(args.config_file, vars(args))
    if args.dry_run:
        run = check_settings(config)
        total, trainable = run.final_parameters
        print(
            f"settings OK: {len(run.plans)} stage(s) up to a {run.plans[-1].stage}-block, {run.substrate.dim}-wide "
            f"model with {config.heads} heads ({total:,} parameters, {trainable:,} trainable); "
            f"validation sample of {len(run.sample.documents):,} documents ({run.sample.tokens:,} tokens); "
            f"nothing was written to {config.out}"
        )
        return 0
    grow(config, overwrite=args.overwrite, allow_data_change=args.allow_data_change)
    return 0
