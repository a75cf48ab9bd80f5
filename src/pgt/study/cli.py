"""`pgt study`: register the command."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from pgt import options
from pgt.errors import PgtError
from pgt.study.arms import FAMILIES
from pgt.study.scales import SCALES

EXAMPLES = (
    "pgt study --out runs/study                        # every family, cpu scale, 3 seeds, the embedded fortunes",
    "pgt study embeddings --out runs/study             # one claim family (each under 30 min on 2 cores)",
    "pgt study --out runs/study                        # rerun after an interruption: finished steps are reused",
    "pgt study --scale gpu --out runs/study-gpu        # one GPU (~8 minutes by estimate; not run on one yet)",
    "pgt study --scale smoke --seeds 2 --out /tmp/s    # seconds: checks that everything runs",
    "pgt study --corpus en=book-en.txt --corpus ru=ru/ --corpus de=default --out runs/mine",
    "pgt study growth merging --substrate runs/substrate --out runs/study # a full substrate you built",
)
DESCRIPTION = """Train and evaluate the comparisons the PGT papers make, in three claim families that run
alone or together (FAMILY: embeddings, growth, merging; default all), on one substrate trimmed to
the training text (docs/trimming.md), with several seeds per arm. embeddings: the reference's
glyph matrix against the same rows re-centred, the rows shuffled across ids, invisible
characters drawn visibly, frozen random unit rows and trainable embeddings. growth: grown
(random and identity init) against monolithic at equal depth and tokens, and stage N against
one block at equal tokens. merging: an en+X and an en+Y expert merged by logit averaging,
judged on English (which both know), and the merge's adapter trained with `pgt tune`. Every
arm's learning rate is swept on the training data's validation split. Scores: exact held-out
bits per byte per language beside bzip2 -9 (an arm not below it is "undertrained: no verdict")
and a 4-way cloze task. Writes OUT/report.md: each comparison's difference with its 95 %
interval, p-values Holm-corrected per family, and a verdict (holds, reversed, inconclusive at
this scale). Every arm is a normal `pgt grow` run under OUT/runs/."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = options.add_command(
        subparsers,
        "study",
        help="measure the papers' claims in miniature, with verdicts",
        description=DESCRIPTION,
        examples=EXAMPLES,
        handler=run_study,
    )
    parser.add_argument(
        "families",
        nargs="*",
        metavar="FAMILY",
        help=f"claim families to run: {', '.join(FAMILIES)} (default: all; finished ones are reused)",
    )
    parser.add_argument(
        "--scale",
        choices=tuple(SCALES),
        default="cpu",
        help="sizes: "
        + "; ".join(
            f"{s.name}: d {s.dim}, embeddings {s.embedding_tokens:,} tokens, growth {s.growth_stages} "
            f"x {s.growth_tokens:,}"
            for s in SCALES.values()
        )
        + " (default: cpu)",
    )
    parser.add_argument(
        "--seeds",
        type=options.positive_int,
        help="seeds per arm (default: the scale's, 3 for cpu and gpu; at least 2 for an interval)",
    )
    parser.add_argument(
        "--corpus",
        action="append",
        metavar="LANG=SOURCE",
        help="a language's text (repeat; any `pgt data prepare` source, or `default` for that "
        "language's fortunes); needs en and two more languages (default: the fortunes en, ru, de)",
    )
    options.add_substrate(
        parser,
        required=False,
        help="start from this substrate instead of building one: a full "
        "one is trimmed to the training text into OUT/substrate, a trimmed one is used as is",
    )
    options.add_device(parser)
    parser.add_argument(
        "--threads",
        type=options.positive_int,
        help="torch CPU threads (default: 1 for smoke, torch's default otherwise)",
    )
    options.add_progress(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="study directory; rerun to resume")


def run_study(args: argparse.Namespace) -> int:
    from pgt.study.runner import StudyOptions
    from pgt.study.runner import run_study as run
    from pgt.study.scales import get_scale

    unknown = [f for f in args.families if f not in FAMILIES]
    if unknown:
        raise PgtError(f"unknown family {unknown[0]!r} (choose from {', '.join(FAMILIES)})")
    scale = get_scale(args.scale)
    scale = dataclasses.replace(scale, device=args.device, threads=args.threads or scale.threads)
    results = run(
        StudyOptions(
            out=Path(args.out),
            scale=scale,
            seeds=args.seeds or scale.seeds,
            families=tuple(args.families) or FAMILIES,
            corpus=args.corpus,
            substrate=Path(args.substrate) if args.substrate else None,
            progress=options.show_progress(args),
        ),
        command="pgt " + shlex.join(sys.argv[1:]),
    )
    for family in results.families:
        for c in family.comparisons:
            print(f"{c.verdict:>27}  {c.text} [{c.metric}, {c.scope}]")
    return 0
