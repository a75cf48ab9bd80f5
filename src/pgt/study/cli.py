"""`pgt study`: its settings and the command."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from pgt import options
from pgt.settings import (
    add_command,
    device_setting,
    flag_error,
    out_setting,
    progress_setting,
    setting,
    settings_from,
    substrate_setting,
)
from pgt.study.arms import FAMILIES
from pgt.study.scales import SCALES

EXAMPLES = (
    "pgt study --out runs/study                        # every family, cpu scale, 3 seeds, the embedded fortunes",
    "pgt study embeddings --out runs/study             # one claim family (each under 30 min on 2 cores)",
    "pgt study --out runs/study                        # rerun after an interruption: finished steps are reused",
    "pgt study --scale gpu --out runs/study-gpu        # one GPU (~8 minutes by estimate; not run on one yet)",
    "pgt study --scale smoke --seeds 2 --out /tmp/s    # seconds: checks that everything runs",
    "pgt study --jobs 8 --out runs/study               # eight runs at once (the CPUs shared among them)",
    "pgt study --corpus en=book-en.txt --corpus ru=ru/ --corpus de=default --out runs/mine",
    "pgt study growth merging --substrate runs/substrate --out runs/study # a full substrate you built",
    "pgt study --substrate runs/sub --visible-substrate runs/sub-visible --out runs/study  # its twin, built too",
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

SCALE_HELP = "sizes: " + "; ".join(
    f"{s.name}: d {s.dim}, embeddings {s.embedding_tokens:,} tokens, growth {s.growth_stages} x {s.growth_tokens:,}"
    for s in SCALES.values()
)


@dataclass
class StudySettings:
    """`pgt study`'s options; each field's help is its option's help (pgt.settings.setting)."""

    families: list[str] | None = setting(
        None,
        f"claim families to run: {', '.join(FAMILIES)} (default: all; finished ones are reused)",
        positional=True,
        nargs="*",
        metavar="FAMILY",
        choices=FAMILIES,
    )
    scale: str = setting("cpu", SCALE_HELP, choices=tuple(SCALES))
    seeds: int | None = setting(
        None, "seeds per arm (default: the scale's, 3 for cpu and gpu; at least 2 for an interval)"
    )
    corpus: list[str] | None = setting(
        None,
        "a language's text (repeat; any `pgt data prepare` source, or `default` for that language's fortunes); "
        "needs en and two more languages (default: the fortunes en, ru, de)",
        metavar="LANG=SOURCE",
    )
    substrate: str | None = substrate_setting(
        "start from this substrate instead of building one: a full one is trimmed to the training text into "
        "OUT/substrate, a trimmed one is used as is",
        required=False,
    )
    visible_substrate: str | None = setting(
        None,
        "the visible-blanks twin of --substrate (`pgt substrate build` with its inputs and --visible-blanks), "
        "checked and used instead of rendering it again into OUT",
        metavar="DIR",
    )
    device: str = device_setting()
    threads: int | None = setting(
        None,
        "torch CPU threads per training run (default: 1 for smoke; otherwise torch's default, or with --jobs "
        "the CPUs divided among the jobs)",
    )
    jobs: int = setting(
        1,
        "training runs at once, each in its own process: faster on a CPU with many cores (1.10x for the "
        "embeddings family on 2 cores); a run's numbers depend on its --threads, not on this",
        metavar="N",
    )
    progress: bool | None = progress_setting()
    out: str | None = out_setting("study directory; rerun to resume")


def register(subparsers: argparse._SubParsersAction) -> None:
    add_command(
        subparsers,
        "study",
        help="measure the papers' claims in miniature, with verdicts",
        description=DESCRIPTION,
        examples=EXAMPLES,
        handler=run_study,
        settings=StudySettings,
    )


def run_study(args: argparse.Namespace) -> int:
    from pgt.errors import SettingError
    from pgt.study.runner import StudyOptions
    from pgt.study.runner import run_study as run

    settings = settings_from(StudySettings, args)
    if settings.visible_substrate and not settings.substrate:
        raise flag_error(SettingError("visible_substrate", "needs --substrate (the substrate it twins)"))
    scale = SCALES[settings.scale]
    scale = dataclasses.replace(
        scale, device=settings.device, threads=settings.threads or scale.threads, jobs=settings.jobs
    )
    results = run(
        StudyOptions(
            out=Path(settings.out),
            scale=scale,
            seeds=settings.seeds or scale.seeds,
            families=tuple(settings.families or FAMILIES),
            corpus=settings.corpus,
            substrate=Path(settings.substrate) if settings.substrate else None,
            visible_substrate=Path(settings.visible_substrate) if settings.visible_substrate else None,
            progress=options.show_progress(settings),
        ),
        command="pgt " + shlex.join(sys.argv[1:]),
    )
    for family in results.families:
        for c in family.comparisons:
            print(f"{c.verdict:>27}  {c.text} [{c.metric}, {c.scope}]")
    return 0
