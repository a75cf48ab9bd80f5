"""`pgt grow`: progressive layer-wise growth (or a baseline) from the command line."""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  pgt grow --substrate runs/sub --data runs/data --stages 3 --tokens-per-stage 2000000 --out runs/grow
  pgt grow grow.yaml --init identity --lr 5e-4          # YAML values, overridden on the command line
  pgt grow grow.yaml --baseline monolithic --out runs/grow/baselines/monolithic
  torchrun --nproc_per_node 4 -m pgt.cli grow grow.yaml  # DDP; add --fsdp for the 4,096-wide presets

A stage-K model lands in RUN_DIR/stage-K (loads with `pgt generate` / AutoModelForCausalLM).
Rerunning the same command resumes from RUN_DIR/checkpoints; --restart discards the run.
A baseline trains all N blocks at once for N x tokens-per-stage tokens and saves RUN_DIR/stage-N.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from pgt.growth.config import add_config_arguments

    parser = subparsers.add_parser(
        "grow",
        help="grow a model block by block on a frozen substrate (or train a baseline)",
        description="Train stage 1 (one block), freeze it, add a block, train it, ... saving every stage "
        "as its own model. Options override CONFIG.yaml, which overrides the defaults.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config_file", nargs="?", metavar="CONFIG.yaml", help="YAML file of config keys")
    parser.add_argument("--restart", "--overwrite", action="store_true",
                        help="discard an existing run in --out (its config or checkpoints) and start over")
    add_config_arguments(parser)
    parser.set_defaults(handler=run_grow)


def run_grow(args: argparse.Namespace) -> int:
    from pgt.growth.config import resolve_config
    from pgt.growth.trainer import grow

    config = resolve_config(args.config_file, vars(args))
    grow(config, restart=args.restart)
    return 0
