"""`pgt study`: register the command."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from pgt import options
from pgt.study.scales import SCALES

EXAMPLES = (
    "pgt study --out runs/study                        # cpu scale, 3 seeds, the embedded fortunes (~30 min, 2 cores)",
    "pgt study --out runs/study                        # rerun after an interruption: finished steps are reused",
    "pgt study --scale gpu --out runs/study-gpu        # one GPU, ~8 minutes",
    "pgt study --scale smoke --seeds 2 --out /tmp/s    # seconds: checks that everything runs",
    "pgt study --corpus en=book-en.txt --corpus ru=ru/ --corpus de=default --out runs/mine",
    "pgt study --substrate runs/substrate --out runs/study # a full substrate you built (trimmed to the text first)",
)
DESCRIPTION = """Train and evaluate the comparisons the PGT papers make, on one shared substrate
(trimmed to the training text, docs/trimming.md), with several seeds per arm: frozen glyph vs
trainable vs frozen random embeddings; grown vs monolithic (random and identity init) at
equal depth and tokens, with the FLOPs each spent; every metric per growth stage; an en+X
and an en+Y expert merged by logit averaging, and the merge's adapter trained with `pgt
tune`. Scores: exact held-out bits per byte per language (bzip2 -9 / xz -9e beside them)
and a 4-way cloze task per language from held-out text. Writes OUT/report.md: each claim's
difference with its 95 % interval and a verdict (holds, reversed, or inconclusive at this
scale). Every arm is a normal `pgt grow` run under OUT/runs/."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = options.add_command(subparsers, "study", help="measure the papers' claims in miniature, with verdicts",
                                 description=DESCRIPTION, examples=EXAMPLES, handler=run_study)
    parser.add_argument("--scale", choices=tuple(SCALES), default="cpu",
                        help="size of every arm: " + "; ".join(
                            f"{s.name}: d {s.dim}, {s.stages} blocks, {s.tokens_per_stage:,} tokens/stage"
                            for s in SCALES.values()) + " (default: cpu)")
    parser.add_argument("--seeds", type=options.positive_int, help="seeds per arm (default: the scale's, 3 for "
                        "cpu and gpu; at least 2 for an interval)")
    parser.add_argument("--corpus", action="append", metavar="LANG=SOURCE",
                        help="a language's text (repeat; any `pgt data prepare` source, or `default` for that "
                        "language's fortunes); needs en and two more languages (default: the fortunes en, ru, de)")
    options.add_substrate(parser, required=False, help="start from this substrate instead of building one: a full "
                          "one is trimmed to the training text into OUT/substrate, a trimmed one is used as is")
    options.add_device(parser)
    parser.add_argument("--threads", type=options.positive_int,
                        help="torch CPU threads (default: 1 for smoke and cpu, whose d = 64 products run faster on "
                        "one thread of shared cores; torch's default for gpu)")
    options.add_progress(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="study directory; rerun to resume")


def run_study(args: argparse.Namespace) -> int:
    from pgt.study.runner import StudyOptions, run_study as run
    from pgt.study.scales import get_scale

    scale = get_scale(args.scale)
    scale = dataclasses.replace(scale, device=args.device, threads=args.threads or scale.threads)
    results = run(StudyOptions(out=Path(args.out), scale=scale, seeds=args.seeds or scale.seeds, corpus=args.corpus,
                               substrate=Path(args.substrate) if args.substrate else None,
                               progress=options.show_progress(args)),
                  command="pgt " + shlex.join(sys.argv[1:]))
    for claim in results.claims:
        print(f"{claim.verdict:>27}  {claim.text} [{claim.metric}]")
    return 0
