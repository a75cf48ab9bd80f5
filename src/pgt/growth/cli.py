"""`pgt grow`: progressive layer-wise growth (or a baseline) from the command line (docs/growth.md)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from pgt.settings import add_command, overwrite_setting, setting, settings_from

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


@dataclass
class GrowOptions:
    """What `pgt grow` does with a run, beside how it trains (GrowthConfig's options)."""

    config_file: str | None = setting(None, "YAML file of config keys", positional=True, metavar="CONFIG.yaml")
    overwrite: bool = overwrite_setting()
    dry_run: bool = setting(
        False, "check every setting (the model and optimizer are built on the meta device) and exit", switch=True
    )
    allow_data_change: bool = setting(
        False,
        "resume on token data that changed since the run began (prepared again or edited); run.json and the "
        "report record the change",
        switch=True,
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    from pgt.growth.config import add_config_arguments

    parser = add_command(
        subparsers,
        "grow",
        help="grow a model block by block on a frozen substrate (or train a baseline)",
        description="Train stage 1 (one block), freeze it, add a block, train it, ... saving every stage "
        "as its own model. Options override CONFIG.yaml, which overrides the preset and the defaults.",
        examples=EXAMPLES,
        handler=run_grow,
        settings=GrowOptions,
    )
    add_config_arguments(parser)


def run_grow(args: argparse.Namespace) -> int:
    from pgt.growth.config import resolve_config
    from pgt.growth.trainer import check_settings, grow

    command = settings_from(GrowOptions, args)
    config = resolve_config(command.config_file, vars(args))
    if command.dry_run:
        run = check_settings(config)
        total, trainable = run.final_parameters
        print(
            f"settings OK: {len(run.plans)} stage(s) up to a {run.plans[-1].stage}-block, {run.substrate.dim}-wide "
            f"model with {config.heads} heads ({total:,} parameters, {trainable:,} trainable); "
            f"validation sample of {len(run.sample.documents):,} documents ({run.sample.tokens:,} tokens); "
            f"nothing was written to {config.out}"
        )
        return 0
    grow(config, overwrite=command.overwrite, allow_data_change=command.allow_data_change)
    return 0
