"""`pgt demo`: the whole PGT story on the embedded default corpus, in about ten minutes on 2 CPU cores.

Steps, each kept in OUT and reused when a rerun finds it finished (so an interrupted demo
continues where it stopped):
  1. substrate  OUT/full-substrate  bvv241-2-3 tokenizer with n-grams mined from the default corpus,
                                     and its frozen glyph embeddings at a small width (--dim)
                OUT/substrate       that substrate trimmed to the tokens the corpus uses (docs/trimming.md):
                                     the same encodings and embedding rows, an output head ~50x smaller
  2. data       OUT/data        the default corpus (Debian fortunes: en, ru, de) as token shards
  3. plan       OUT/demo.json   the run's growth configuration: tokens per stage that fit --minutes,
                                 from measured speeds of every stage's shape
  4. growth     OUT/run         a model grown block by block (--stages), each stage saved as a model
  5. glyphs     OUT/glyphs.png, OUT/neighbours.txt: rendered tokens and their nearest embeddings
  6. stages     validation loss, held-out bits per byte beside bzip2 -9 and xz -9e on the same bytes
                 (OUT/run/stage-K/eval/) and OUT/samples.md
  7. report     OUT/report.md   `pgt report` of the run, with its PNG plots and the compressor comparison
No network and no reference files are needed.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from pgt import options
from pgt.demo.plan import (
    GROWTH_DEFAULTS,
    GROWTH_OPTIONS,
    HEADS,
    PLAN_FILE,
    DemoPlan,
    available_threads,
    make_plan,
    measure_speeds,
)
from pgt.demo.showcase import (
    PROMPTS,
    compressor_section,
    evaluate_and_sample,
    say,
    write_glyphs,
)
from pgt.errors import PgtError
from pgt.io import atomic_file, refuse_foreign
from pgt.model.architecture import check_heads
from pgt.settings import add_command, add_settings, progress_setting, setting, settings_from, substrate_setting
from pgt.substrate.layout import SMALL_FAMILY

EXAMPLES = [
    "pgt demo                                   # the full story into runs/demo (about 10 minutes on 2 cores)",
    "pgt demo --out runs/demo                   # rerun after an interruption: finished steps are reused",
    "pgt demo --out /tmp/tiny --stages 2 --tokens-per-stage 20000 --dim 64",
    "pgt demo --out /tmp/d --substrate runs/demo/substrate --data runs/demo/data --minutes 3",
    "pgt demo --out /tmp/full --no-trim       # the full 65,792-id vocabulary, to compare",
]

DEFAULT_DIM = 128
DIM_REASON = (
    "trimmed to the corpus's tokens, the output head is small and the blocks take the compute; at 2 CPU cores "
    "128 wide trains about 3x the tokens of 256 in the same minutes (measured), which a 10-minute run needs more than "
    "width, and the first 128 PCA components of the glyph bitmaps still tell glyphs apart (see the neighbours)"
)
SUBSTRATE_DIR, FULL_SUBSTRATE_DIR, DATA_DIR = "substrate", "full-substrate", "data"
STEP_DIRS = (SUBSTRATE_DIR, FULL_SUBSTRATE_DIR, DATA_DIR)  # written before the plan: a rerun resumes them

__all__ = [
    "DEFAULT_DIM",
    "HEADS",
    "DemoSettings",
    "PROMPTS",
    "demo",
    "ensure_data",
    "ensure_substrate",
    "full_substrate_of",
    "measure_speeds",
    "register",
]


def _step(number: int, title: str) -> None:
    say(f"\n== {number}. {title}")


# ---------------------------------------------------------------- steps


def _check_dim(dim: int) -> None:
    check_heads(dim, HEADS)


def _meta(path: Path):
    from pgt.substrate.store import SUBSTRATE_FILE, SubstrateMeta

    return SubstrateMeta.load(path / SUBSTRATE_FILE)


def _dim_of(path: Path) -> int:
    return _meta(path).dim


def ensure_substrate(out: Path, given: str | None, dim: int | None, trim: bool, progress: bool) -> Path:
    """The substrate to train on: `given` (trimmed to the default corpus into OUT/substrate when it is a full one
    and `trim`), what a previous run left in OUT/substrate, or a new build trimmed to the default corpus."""
    from pgt.corpus.fortunes import default_corpus_files
    from pgt.substrate.prepared import ensure_trimmed
    from pgt.substrate.store import is_substrate
    from pgt.substrate.trim import load_trim_record

    path = out / SUBSTRATE_DIR
    if given:
        full = Path(given)
        if not is_substrate(full):
            raise PgtError(f"--substrate {full} is not a substrate directory (no substrate.json)")
        if dim is not None and dim != _dim_of(full):
            raise PgtError(f"--dim {dim} contradicts --substrate {full}, which has dim {_dim_of(full)}")
        if not trim or load_trim_record(full) is not None:
            _check_dim(_dim_of(full))
            say(f"reusing the substrate {full} (dim {_dim_of(full)})")
            return full
    else:
        full = out / FULL_SUBSTRATE_DIR
    if is_substrate(path):
        if dim is not None and dim != _dim_of(path):
            raise PgtError(
                f"{path} was built with dim {_dim_of(path)}, not {dim}: rerun with --dim {_dim_of(path)} "
                "or choose another --out"
            )
        say(f"reusing {path} (finished earlier)")
        return path
    if not is_substrate(full):
        dim = dim or DEFAULT_DIM
        _check_dim(dim)
        say(f"building {SMALL_FAMILY} at dim {dim}: {DIM_REASON}.")
    else:
        _check_dim(_dim_of(full))
    return ensure_trimmed(
        path,
        full,
        ngram_corpus=default_corpus_files(),
        train_corpus=["default"],
        dim=dim or DEFAULT_DIM,
        progress=progress,
        trim=trim,
        log=say,
        corpus_name="the default corpus",
    )


def full_substrate_of(substrate: Path) -> Path:
    """The full substrate a trimmed one was cut from, where it still is (its glyph neighbours span every token);
    else `substrate` itself."""
    from pgt.substrate.store import is_substrate
    from pgt.substrate.trim import load_trim_record

    record = load_trim_record(substrate)
    parent = Path(record.parent_path) if record else None
    if parent and is_substrate(parent) and _meta(parent).fingerprint == record.parent_fingerprint:
        return parent
    return substrate


def ensure_data(out: Path, given: str | None, substrate: Path, progress: bool) -> Path:
    """The token data: `given`, OUT/data from a previous run, or the default corpus tokenized now."""
    from pgt.data import Manifest, prepare_token_data
    from pgt.data.manifest import MANIFEST_FILE, is_token_data

    path = Path(given) if given else out / DATA_DIR
    if is_token_data(path):
        say(f"reusing {path}")
    elif given:
        raise PgtError(
            f"--data {path} is not a token data directory (no {MANIFEST_FILE}; make one with `pgt data prepare`)"
        )
    else:  # an interrupted preparation resumes from its work directory
        prepare_token_data(["default"], substrate, path, workers=available_threads(), progress=progress)
    splits = Manifest.read(path).splits
    say(f"{path}: {splits['train'].tokens:,} training and {splits['validation'].tokens:,} validation tokens")
    return path


def ensure_run(plan: DemoPlan, progress: bool) -> Path:
    """OUT/run grown through the plan's stages; `grow` resumes an interrupted run and skips a finished one."""
    from pgt.growth import grow

    config = plan.growth_config(progress)
    dim = _dim_of(Path(config.substrate))
    say(
        f"growing {config.stages} blocks on {SMALL_FAMILY} (d = {dim}) with {config.init} init of each new block, "
        f"{config.tokens_per_stage:,} tokens per stage; older blocks stay frozen"
    )
    return grow(config)


# ---------------------------------------------------------------- the command


def demo(args: argparse.Namespace) -> Path:
    """Run every step of the demo (see the module docstring), print what it shows; return the report's path."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the demo prints its own account of each step
    if args.dim is not None:
        _check_dim(args.dim)
    started = time.perf_counter()
    out = Path(args.out)  # each step creates what it writes
    refuse_foreign(out, PLAN_FILE, what="demo directory", ignore=STEP_DIRS)
    torch.set_num_threads(args.threads or available_threads())
    progress = options.show_progress(args)

    _step(1, "substrate: tokenizer, frozen glyph embeddings, trimmed to the corpus")
    substrate = ensure_substrate(out, args.substrate, args.dim, args.trim and not args.data, progress)
    _step(2, "data: the embedded default corpus (fortunes en/ru/de)")
    data = ensure_data(out, args.data, substrate, progress)
    _step(3, "plan")
    plan = make_plan(out, args, substrate, data, started)
    _step(4, "growth: one block at a time")
    torch.set_num_threads(plan.threads)
    run_dir = ensure_run(plan, progress)

    _step(5, "glyphs and their nearest neighbours")
    for line in write_glyphs(out, full_substrate_of(substrate)):
        say("  " + line)
    say(f"rendered glyphs: {out / 'glyphs.png'}")

    _step(6, "per stage: validation loss, held-out bits per byte against compressors, and a sample")
    from pgt.eval.report import growth_steps, stage_dirs, write_report
    from pgt.growth.metrics import read_metrics
    from pgt.growth.records import STAGE_FILE, StageRecord

    stages = [StageRecord.load(d / STAGE_FILE) for d in stage_dirs(run_dir)]
    say(f"{'stage':>5}  {'blocks':>6}  {'tokens seen':>12}  {'val loss':>8}  {'bits/byte':>9}")
    for info in stages:
        say(f"{info.stage:>5}  {info.blocks:>6}  {info.tokens_seen:>12,}  {info.val_loss:>8.4f}  {info.val_bpb:>9.4f}")
    for stage, before, after in growth_steps(read_metrics(run_dir)):
        say(
            f"  adding block {stage}: validation loss {before:.4f} -> {after:.4f} ({after - before:+.4f}) "
            "before the new block trained"
        )
    results = evaluate_and_sample(out, run_dir, plan.growth["seed"], args.eval_docs)
    comparison = compressor_section(results, args.eval_docs)
    for line in comparison[2:]:
        say("  " + line)
    for result in results:
        for prompt, text in result.samples:
            say(f"  stage {result.stage} | {prompt}{text}".replace("\n", " ⏎ ")[:160])

    _step(7, "report")
    report = write_report(run_dir, out / "report.md", overwrite=True)  # a rerun rewrites its own page
    if comparison:
        page = report.read_text(encoding="utf-8")
        with atomic_file(report, "w", encoding="utf-8") as handle:
            handle.write(page.rstrip("\n") + "\n\n" + "\n".join(comparison))
    loss_png = report.with_name(f"{report.stem}-loss-curve.png")
    say(f"loss curve with growth steps: {loss_png}")
    say(f"report: {report}   samples: {out / 'samples.md'}   neighbours: {out / 'neighbours.txt'}")
    say(f"demo finished in {time.perf_counter() - started:.0f} s")
    return report


@dataclass
class DemoSettings:
    """`pgt demo`'s own options (beside `pgt grow`'s `GROWTH_OPTIONS`, with the demo's defaults)."""

    out: str = setting("runs/demo", "demo directory; rerun to resume", metavar="DIR")
    minutes: float = setting(
        10.0,
        "time budget; sets the tokens per stage from measured speeds (a resumed demo keeps the plan it started with)",
        parse=options.positive_float,
    )
    dim: int | None = setting(None, "embedding width of the substrate built here", default_text=str(DEFAULT_DIM))
    substrate: str | None = substrate_setting(
        "reuse an existing substrate instead of building one (a full one is trimmed to the default corpus first, "
        "unless --data or --no-trim is given)",
        required=False,
    )
    trim: bool = setting(
        True,
        "train on the substrate trimmed to the default corpus (--no-trim trains on the full vocabulary, as a "
        "comparison)",
        default_text="on",
    )
    data: str | None = setting(
        None, "reuse token data prepared with --substrate instead of tokenizing the default corpus", metavar="DIR"
    )
    eval_docs: int | None = setting(
        None,
        "held-out documents scored per stage (0 = skip)",
        parse=options.non_negative_int,
        default_text="all of the validation split",
    )
    threads: int | None = setting(
        None, "torch CPU threads", default_text="1 or min(2, CPUs), whichever trains faster here"
    )
    progress: bool | None = progress_setting()


def run_demo(args: argparse.Namespace) -> int:
    """Handler of `pgt demo`: its own settings checked here, `pgt grow`'s when the plan builds its config."""
    settings_from(DemoSettings, args)
    demo(args)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `pgt demo` to the command line: its own options, then `pgt grow`'s with the demo's defaults."""
    from pgt.growth.config import GrowthConfig

    parser = add_command(
        subparsers,
        "demo",
        help="the whole story on the embedded corpus in ~10 minutes on 2 CPU cores",
        description=__doc__,
        examples=EXAMPLES,
        handler=run_demo,
        settings=DemoSettings,
    )
    add_settings(
        parser,
        GrowthConfig,
        GROWTH_OPTIONS,
        defaults=GROWTH_DEFAULTS,
        default_texts={"tokens_per_stage": "fitted to --minutes"},
        helps={"seed": "seed of training and sampling"},
    )
