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
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgt import options
from pgt.errors import PgtError
from pgt.io import atomic_file, refuse_foreign
from pgt.model.architecture import SAMPLING, check_heads
from pgt.records import Record
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
# Samples use the model card's sampling settings (SAMPLING), seeded so every run prints the same samples.
PROMPTS = ("The meaning of life is", "Жизнь — это")
SAMPLE_TOKENS = 40
SHOWCASE_TOKENS = ("A", "Ж", "the", "Α", "А", "ing", "ого", "漢")
NEIGHBOURS = 6
HEADS = 4  # attention heads of the demo's blocks (32 dims each at d = 128)
# After 100,352 tokens of stage 1 (trimmed substrate, d = 128, batch 8 x 128), validation loss was
# 4.594 at lr 4e-3, 4.562 at 8e-3 and 4.615 at 1.6e-2.
DEFAULT_LR = 8e-3
# Seconds kept back from --minutes for the glyphs and the report, and per stage for loading and
# saving beside the measured cost of its evaluation and samples.
FIXED_RESERVE_S = 20.0
STAGE_OVERHEAD_S = 5.0
# Fraction of the training time that goes into tokens (the rest: periodic evaluation, checkpoints).
TRAIN_SHARE = 0.8
PLAN_FILE = "demo.json"
SUBSTRATE_DIR, FULL_SUBSTRATE_DIR, DATA_DIR = "substrate", "full-substrate", "data"
STEP_DIRS = (SUBSTRATE_DIR, FULL_SUBSTRATE_DIR, DATA_DIR)  # written before the plan: a rerun resumes them


@dataclass
class DemoPlan(Record):
    """OUT/demo.json: the growth configuration the demo's run is made with, so a rerun resumes the same run."""

    WHAT = "demo plan"

    growth: dict[str, Any]  # GrowthConfig.to_dict() of the run
    threads: int  # torch CPU threads the run trains with
    measured_tokens_per_s: list[float] | None = None  # training tokens/s of each stage's shape, when fitted

    def growth_config(self, progress: bool):
        """The run's `GrowthConfig` (progress bars as this invocation wants them)."""
        from pgt.growth import GrowthConfig

        return GrowthConfig(**{**self.growth, "progress": progress})


def growth_config(args: argparse.Namespace, substrate: Path, data: Path, run_dir: Path, tokens_per_stage: int):
    """The `pgt grow` configuration of the demo: its options, and evaluation and checkpoint intervals per stage."""
    from pgt.growth import GrowthConfig

    steps = max(1, tokens_per_stage // (args.batch_size * args.seq_len))
    return GrowthConfig(
        substrate=str(substrate), data=str(data), out=str(run_dir), stages=args.stages, init=args.init,
        tokens_per_stage=tokens_per_stage, batch_size=args.batch_size, seq_len=args.seq_len, heads=HEADS,
        lr=args.lr, seed=args.seed, context=max(256, args.seq_len), eval_every=max(1, steps // 4),
        eval_tokens=8192, checkpoint_every=max(1, steps // 4), log_every=max(1, steps // 40),
        progress=options.show_progress(args),
    )  # fmt: skip


def _say(message: str) -> None:
    print(message, flush=True)


def _step(number: int, title: str) -> None:
    _say(f"\n== {number}. {title}")


# ---------------------------------------------------------------- steps


def _check_dim(dim: int) -> None:
    check_heads(dim, HEADS)


def _finished(path: Path) -> bool:
    from pgt.substrate.store import is_substrate

    return is_substrate(path)


def _meta(path: Path):
    from pgt.substrate.store import SUBSTRATE_FILE, SubstrateMeta

    return SubstrateMeta.load(path / SUBSTRATE_FILE)


def _dim_of(path: Path) -> int:
    return _meta(path).dim


def ensure_substrate(out: Path, given: str | None, dim: int | None, trim: bool, progress: bool) -> Path:
    """The substrate to train on: `given` (trimmed to the default corpus into OUT/substrate when it is a full one
    and `trim`), what a previous run left in OUT/substrate, or a new build trimmed to the default corpus."""
    from pgt.corpus.fortunes import default_corpus_files
    from pgt.substrate.build import build_substrate
    from pgt.substrate.trim import load_trim_record, trim_substrate

    path = out / SUBSTRATE_DIR
    if given:
        full = Path(given)
        if not _finished(full):
            raise PgtError(f"--substrate {full} is not a substrate directory (no substrate.json)")
        if dim is not None and dim != _dim_of(full):
            raise PgtError(f"--dim {dim} contradicts --substrate {full}, which has dim {_dim_of(full)}")
        if not trim or load_trim_record(full) is not None:
            _check_dim(_dim_of(full))
            _say(f"reusing the substrate {full} (dim {_dim_of(full)})")
            return full
    else:
        full = out / FULL_SUBSTRATE_DIR
    if _finished(path):
        if dim is not None and dim != _dim_of(path):
            raise PgtError(f"{path} was built with dim {_dim_of(path)}, not {dim}: rerun with --dim {_dim_of(path)} "
                           "or choose another --out")  # fmt: skip
        _say(f"reusing {path} (finished earlier)")
        return path
    if not _finished(full):
        dim = dim or DEFAULT_DIM
        _check_dim(dim)
        _say(f"building {SMALL_FAMILY} at dim {dim}: {DIM_REASON}.")
        start = time.perf_counter()
        build_substrate(full, family=SMALL_FAMILY, corpus=default_corpus_files(), dim=dim, progress=progress)
        _say(f"built {full} in {time.perf_counter() - start:.0f} s")
    _check_dim(_dim_of(full))
    if not trim:
        return full
    start = time.perf_counter()
    record = trim_substrate(full, path, corpus=["default"])
    _say(f"trimmed it to the default corpus in {time.perf_counter() - start:.0f} s: {record.vocab_size:,} of "
         f"{record.parent_vocab_size:,} ids ({record.corpus_ids:,} used by its {record.corpus_tokens:,} tokens, "
         f"{record.special_ids} named specials, {record.byte_ids} byte tokens for any other text) -> {path}")
    return path


def full_substrate_of(substrate: Path) -> Path:
    """The full substrate a trimmed one was cut from, where it still is (its glyph neighbours span every token);
    else `substrate` itself."""
    from pgt.substrate.trim import load_trim_record

    record = load_trim_record(substrate)
    parent = Path(record.parent_path) if record else None
    if parent and _finished(parent) and _meta(parent).fingerprint == record.parent_fingerprint:
        return parent
    return substrate


def ensure_data(out: Path, given: str | None, substrate: Path, progress: bool) -> Path:
    """The token data: `given`, OUT/data from a previous run, or the default corpus tokenized now."""
    from pgt.data import Manifest, prepare_token_data
    from pgt.data.manifest import MANIFEST_FILE, is_token_data

    path = Path(given) if given else out / DATA_DIR
    if is_token_data(path):
        _say(f"reusing {path}")
    elif given:
        raise PgtError(f"--data {path} is not a token data directory (no {MANIFEST_FILE}; make one with "
                       "`pgt data prepare`)")
    else:  # an interrupted preparation resumes from its work directory
        prepare_token_data(["default"], substrate, path, workers=available_threads(), progress=progress)
    splits = Manifest.read(path).splits
    _say(f"{path}: {splits['train'].tokens:,} training and {splits['validation'].tokens:,} validation tokens")
    return path


@dataclass(frozen=True)
class Speeds:
    """How fast this machine runs the demo's model: measured, not assumed."""

    train_tokens_per_s: list[float]  # per stage: AdamW steps of the new top block and head, older blocks frozen
    score_tokens_per_s: float  # forward passes without gradients (perplexity) of the deepest model
    s_per_sampled_token: float  # one step of `generate` with the reference's sampling, deepest model


def measure_speeds(
    substrate: Path, stages: int, seq_len: int, batch_size: int, heads: int,
    clock: Callable[[], float] = time.perf_counter,
) -> Speeds:
    """Time real training steps of every stage's shape, and scoring passes and sampled tokens of the last.

    `clock` is wall time for the demo's plan; a benchmark on a shared machine passes `time.process_time`.
    """
    import torch

    from pgt.growth import GrowthConfig
    from pgt.growth.expand import frozen_prefix, set_trainable
    from pgt.model import from_substrate
    from pgt.substrate.store import Substrate

    loaded = Substrate.load(substrate, verify=False)
    ids = torch.randint(0, loaded.vocab_size, (batch_size, seq_len))  # any ids cost the same

    def timed(action, repeats: int = 5) -> float:
        """The median of `repeats` timed calls after a warm-up (allocations, kernel selection): robust to a
        neighbour's burst on a shared machine."""
        action()
        seconds = []
        for _ in range(repeats):
            start = clock()
            action()
            seconds.append(clock() - start)
        return statistics.median(seconds)

    train, model = [], None
    for stage in range(1, stages + 1):
        torch.manual_seed(0)
        model = from_substrate(
            loaded, num_hidden_layers=stage, num_attention_heads=heads,
            intermediate_size=GrowthConfig.intermediate_multiple * loaded.dim,
        )  # fmt: skip
        set_trainable(model, [model.model.layers[-1], model.model.norm, model.lm_head])  # as a growth stage
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

        def train_step() -> None:
            with frozen_prefix(model.model.layers, stage - 1):
                model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        train.append(batch_size * seq_len / timed(train_step))

    def score() -> None:
        with torch.inference_mode():
            model(input_ids=ids)

    def sample(new_tokens: int = 8) -> None:
        with torch.inference_mode():
            model.generate(ids[:1, :4], max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           pad_token_id=model.config.pad_token_id, **SAMPLING)

    return Speeds(train, batch_size * seq_len / timed(score), timed(sample) / 8)


def available_threads() -> int:
    """The demo's default torch threads: 2 cores' worth, or fewer where fewer are usable."""
    return min(2, options.available_cpus())


def fastest_threads(given: int | None, substrate: Path, args: argparse.Namespace) -> tuple[int, Speeds]:
    """`given` threads, else whichever of 1 and `available_threads()` trains faster here, with its speeds.

    A model this small runs small matrix products, where a second thread can cost more than it gives
    when the cores are shared (measured: 5x slower at 2 threads on a loaded 2-core machine), and gives
    ~1.5x when they are not."""
    import torch

    choices = [given] if given else sorted({1, available_threads()})
    measured = {}
    for threads in choices:
        torch.set_num_threads(threads)
        measured[threads] = measure_speeds(substrate, args.stages, args.seq_len, args.batch_size, HEADS)
    best = min(measured, key=lambda t: sum(1 / rate for rate in measured[t].train_tokens_per_s))
    torch.set_num_threads(best)
    return best, measured[best]


def make_plan(out: Path, args: argparse.Namespace, substrate: Path, data: Path, started: float) -> DemoPlan:
    """The run's plan: OUT/demo.json when a previous run saved it (checked against these options), else a new one
    fitted to --minutes.

    Fitting: the time left after the substrate and the data, less what evaluation and sampling of
    every stage will take at the measured speeds, goes into training tokens (TRAIN_SHARE of it:
    the trainer's own validation and checkpoints take the rest), the same number in every stage.
    """
    from pgt.growth.config import config_differences

    plan_path = out / PLAN_FILE
    run_dir = out / "run"
    if plan_path.is_file():
        plan = DemoPlan.load(plan_path)
        tokens = args.tokens_per_stage or int(plan.growth["tokens_per_stage"])
        requested = growth_config(args, substrate, data, run_dir, tokens)
        changed = config_differences(plan.growth, requested)
        if changed:
            now = requested.to_dict()
            detail = ", ".join(f"{key} {plan.growth.get(key)} -> {now.get(key)}" for key in changed)
            raise PgtError(f"{out} holds a demo made with other settings ({detail}): rerun with the same options "
                           "or choose another --out")
        _say(f"resuming the plan in {plan_path}: {requested.stages} stages x {tokens:,} tokens")
        plan.growth = requested.to_dict()  # more --stages than before grows the finished run further
        plan.threads = args.threads or plan.threads
        plan.save(plan_path)
        return plan
    if args.tokens_per_stage:
        plan = DemoPlan(growth_config(args, substrate, data, run_dir, args.tokens_per_stage).to_dict(),
                        args.threads or available_threads())  # fmt: skip
        plan.save(plan_path)
        return plan
    threads, speeds = fastest_threads(args.threads, substrate, args)
    from pgt.data import Manifest

    validation = Manifest.read(data).splits["validation"]
    eval_docs = validation.documents if args.eval_docs is None else min(args.eval_docs, validation.documents)
    eval_tokens = eval_docs * validation.tokens / max(1, validation.documents)
    per_stage_s = (eval_tokens / speeds.score_tokens_per_s
                   + len(PROMPTS) * SAMPLE_TOKENS * speeds.s_per_sampled_token + STAGE_OVERHEAD_S)
    left = args.minutes * 60 - (time.perf_counter() - started) - FIXED_RESERVE_S - args.stages * per_stage_s
    if left <= 0:
        raise PgtError(f"--minutes {args.minutes} is used up before training starts; give more minutes, "
                       "fewer --eval-docs or --tokens-per-stage")
    seconds_per_token_of_each_stage = sum(1 / rate for rate in speeds.train_tokens_per_s)
    tokens = max(args.batch_size * args.seq_len, int(left * TRAIN_SHARE / seconds_per_token_of_each_stage))
    plan = DemoPlan(growth_config(args, substrate, data, run_dir, tokens).to_dict(), threads,
                    [round(rate, 1) for rate in speeds.train_tokens_per_s])
    rates = ", ".join(f"{rate:,.0f}" for rate in speeds.train_tokens_per_s)
    _say(f"measured {rates} training tokens/s (stages 1..{args.stages}) on {threads} thread(s), "
         f"{speeds.score_tokens_per_s:,.0f} scored "
         f"tokens/s, {speeds.s_per_sampled_token:.3f} s per sampled token; {left:.0f} s of {args.minutes:g} min "
         f"left for training -> {tokens:,} tokens per stage")
    plan.save(plan_path)
    return plan


def ensure_run(plan: DemoPlan, progress: bool) -> Path:
    """OUT/run grown through the plan's stages; `grow` resumes an interrupted run and skips a finished one."""
    from pgt.growth import grow

    config = plan.growth_config(progress)
    dim = _dim_of(Path(config.substrate))
    _say(f"growing {config.stages} blocks on {SMALL_FAMILY} (d = {dim}) with {config.init} init of each new block, "
         f"{config.tokens_per_stage:,} tokens per stage; older blocks stay frozen")
    return grow(config)


@dataclass(frozen=True)
class StageResult:
    """One stage's held-out score and samples."""

    stage: int
    bpb: float | None  # bits per byte on the held-out documents (None: --eval-docs 0)
    documents: int
    samples: list[tuple[str, str]]  # (prompt, continuation)


def evaluate_and_sample(out: Path, run_dir: Path, seed: int, eval_docs: int | None) -> list[StageResult]:
    """Per stage: perplexity and bits per byte on held-out fortunes (`pgt eval --task perplexity`, into
    stage-K/eval/; `eval_docs` None: every held-out document), and a seeded sample per prompt; the samples
    also go to OUT/samples.md."""
    import torch

    from pgt.eval.report import stage_dirs
    from pgt.eval.results import EvalRecord
    from pgt.growth.run_layout import stage_number
    from pgt.eval.runner import evaluate_to_file, planned_path
    from pgt.model import load_model

    results = []
    for stage_dir in stage_dirs(run_dir):
        stage = stage_number(stage_dir)
        model, tokenizer = load_model(stage_dir)
        model.eval()
        bpb, documents = None, 0
        if eval_docs != 0:
            done = planned_path(stage_dir, "perplexity")
            record = EvalRecord.load(done) if done.is_file() else None
            if record is None or record.protocol["limit"] != eval_docs:  # a finished stage never changes
                _, record = evaluate_to_file(model, tokenizer, stage_dir, "perplexity", limit=eval_docs)
            bpb, documents = record.value("bpb"), record.n_examples
            _say(f"  stage {stage}: held-out perplexity {record.value('perplexity'):.1f}, {bpb:.3f} bits/byte "
                 f"({documents} documents, {record.details['n_bytes']:,} bytes)")
        samples = []
        for index, prompt in enumerate(PROMPTS):
            input_ids = torch.tensor([tokenizer(prompt)["input_ids"]])
            torch.manual_seed(seed + index)  # the same draws for a prompt at every stage
            with torch.inference_mode():
                output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                        max_new_tokens=SAMPLE_TOKENS, pad_token_id=model.config.pad_token_id,
                                        **SAMPLING)
            samples.append((prompt, tokenizer.decode(output[0, input_ids.shape[1]:], skip_special_tokens=True)))
        results.append(StageResult(stage, bpb, documents, samples))
    lines = ["# Samples per stage", "",
             f"Seeded sampling (seed {seed} + prompt number) with the reference's settings ("
             + ", ".join(f"{k}={v}" for k, v in SAMPLING.items() if k != "do_sample")
             + f"), {SAMPLE_TOKENS} new tokens.", ""]
    for result in results:
        for prompt, text in result.samples:
            lines += [f"## stage {result.stage}: {prompt}", "", "```text", prompt + text, "```", ""]
    with atomic_file(out / "samples.md", "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    return results


def compressor_section(results: list[StageResult], eval_docs: int | None) -> list[str]:
    """Markdown lines: every stage's held-out bits per byte beside the compressors' on the same bytes."""
    from itertools import islice

    from pgt.eval.runner import held_out_texts
    from pgt.growth.validation import COMPRESSOR_NAMES, compressed_bits_per_byte

    scored = [result for result in results if result.bpb is not None]
    if not scored:
        return []
    texts = list(islice(held_out_texts(None), eval_docs))
    figures = compressed_bits_per_byte("".join(texts).encode())
    compressors = {COMPRESSOR_NAMES[key]: value for key, value in figures.items()}
    last = scored[-1]
    verdict = "below" if all(last.bpb < value for value in compressors.values()) else "not below every compressor"
    lines = ["## Held-out bits per byte against compressors", "",
             f"The {last.documents} held-out documents of the default corpus ({sum(len(t.encode()) for t in texts):,} "
             "UTF-8 bytes), scored by `pgt eval --task perplexity`; the compressors see the same bytes, "
             "concatenated.", "",
             "| | bits per byte |", "|---|---:|"]
    lines += [f"| stage {result.stage} | {result.bpb:.3f} |" for result in scored]
    lines += [f"| `{name}` | {value:.3f} |" for name, value in compressors.items()]
    lines += ["", f"The last stage ({last.bpb:.3f}) is {verdict} "
              + ", ".join(f"`{name}` ({value:.3f})" for name, value in compressors.items()) + ".", ""]
    return lines


def _printable(token: str) -> str:
    """The token for a plot title; code points where matplotlib's default font has no glyph (CJK)."""
    return repr(token) if all(ord(char) < 0x2E80 for char in token) else " ".join(f"U+{ord(c):04X}" for c in token)


def write_glyphs(out: Path, substrate: Path) -> list[str]:
    """Render the showcase tokens (OUT/glyphs.png) and list their nearest glyph neighbours (OUT/neighbours.txt)."""
    from pgt.eval.plots import save_figure
    from pgt.substrate.glyphs import nearest_tokens, render_bitmap
    from pgt.substrate.store import Substrate

    loaded = Substrate.load(substrate, verify=False)
    tokenizer, matrix = loaded.tokenizer, loaded.embeddings.numpy()
    cell = loaded.meta.cell
    vocab = tokenizer.get_vocab()
    present = [token for token in SHOWCASE_TOKENS if token in vocab]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, len(present), figsize=(1.4 * len(present), 3.2), squeeze=False)
    for column, token in enumerate(present):
        for row, augment in enumerate((None, loaded.meta.augment)):
            ax = axes[row][column]
            ax.imshow(render_bitmap(token, cell, augment=augment, layout_engine=loaded.meta.layout_engine),
                      cmap="gray_r", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][column].set_title(f"{_printable(token)}\nid {vocab[token]}", fontsize=8)
    axes[0][0].set_ylabel("plain", fontsize=8)
    axes[1][0].set_ylabel("augmented", fontsize=8)
    figure.suptitle(f"Glyphs behind the frozen embeddings ({cell}x{cell} GNU Unifont)", fontsize=9)
    save_figure(figure, out / "glyphs.png")

    lines = []
    for token in present:
        neighbours = nearest_tokens(matrix, vocab[token], NEIGHBOURS)
        names = tokenizer.convert_ids_to_tokens([index for index, _ in neighbours])
        similarities = [similarity for _, similarity in neighbours]
        listed = ", ".join(f"{name!r} {value:.2f}" for name, value in zip(names, similarities, strict=True))
        lines.append(f"{token!r} (id {vocab[token]}): {listed}")
    missing = [token for token in SHOWCASE_TOKENS if token not in vocab]
    if missing:
        lines.append(f"(not single tokens in this vocabulary: {', '.join(map(repr, missing))})")
    with atomic_file(out / "neighbours.txt", "w", encoding="utf-8") as handle:
        handle.write("Nearest tokens by cosine similarity of the frozen glyph embeddings\n" + "\n".join(lines) + "\n")
    return lines


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
        _say("  " + line)
    _say(f"rendered glyphs: {out / 'glyphs.png'}")

    _step(6, "per stage: validation loss, held-out bits per byte against compressors, and a sample")
    from pgt.eval.report import growth_steps, stage_dirs, write_report
    from pgt.growth.metrics import read_metrics

    from pgt.growth.records import STAGE_FILE, StageRecord

    stages = [StageRecord.load(d / STAGE_FILE) for d in stage_dirs(run_dir)]
    _say(f"{'stage':>5}  {'blocks':>6}  {'tokens seen':>12}  {'val loss':>8}  {'bits/byte':>9}")
    for info in stages:
        _say(f"{info.stage:>5}  {info.blocks:>6}  {info.tokens_seen:>12,}  {info.val_loss:>8.4f}  "
             f"{info.val_bpb:>9.4f}")
    for stage, before, after in growth_steps(read_metrics(run_dir)):
        _say(f"  adding block {stage}: validation loss {before:.4f} -> {after:.4f} ({after - before:+.4f}) "
             "before the new block trained")
    results = evaluate_and_sample(out, run_dir, plan.growth["seed"], args.eval_docs)
    comparison = compressor_section(results, args.eval_docs)
    for line in comparison[2:]:
        _say("  " + line)
    for result in results:
        for prompt, text in result.samples:
            _say(f"  stage {result.stage} | {prompt}{text}".replace("\n", " ⏎ ")[:160])

    _step(7, "report")
    report = write_report(run_dir, out / "report.md", overwrite=True)  # a rerun rewrites its own page
    if comparison:
        page = report.read_text(encoding="utf-8")
        with atomic_file(report, "w", encoding="utf-8") as handle:
            handle.write(page.rstrip("\n") + "\n\n" + "\n".join(comparison))
    loss_png = report.with_name(f"{report.stem}-loss-curve.png")
    _say(f"loss curve with growth steps: {loss_png}")
    _say(f"report: {report}   samples: {out / 'samples.md'}   neighbours: {out / 'neighbours.txt'}")
    _say(f"demo finished in {time.perf_counter() - started:.0f} s")
    return report


def run_demo(args: argparse.Namespace) -> int:
    """Handler of `pgt demo`."""
    demo(args)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `pgt demo` to the command line."""
    parser = options.add_command(
        subparsers, "demo", help="the whole story on the embedded corpus in ~10 minutes on 2 CPU cores",
        description=__doc__, examples=EXAMPLES, handler=run_demo,
    )  # fmt: skip
    parser.add_argument("--out", default="runs/demo", help="demo directory (default: runs/demo); rerun to resume")
    parser.add_argument("--minutes", type=options.positive_float, default=10.0,
                        help="time budget; sets the tokens per stage from measured speeds (default: 10; a resumed "
                        "demo keeps the plan it started with)")
    parser.add_argument("--stages", type=options.positive_int, default=3, help="blocks to grow (default: 3)")
    parser.add_argument("--tokens-per-stage", type=options.positive_int,
                        help="training tokens per stage (default: fitted to --minutes)")
    parser.add_argument("--dim", type=options.positive_int,
                        help=f"embedding width of the substrate built here (default: {DEFAULT_DIM})")
    parser.add_argument("--substrate", metavar="DIR",
                        help="reuse an existing substrate instead of building one (a full one is trimmed to the "
                        "default corpus first, unless --data or --no-trim is given)")
    parser.add_argument("--trim", action=argparse.BooleanOptionalAction, default=True,
                        help="train on the substrate trimmed to the default corpus (default: on; --no-trim trains "
                        "on the full vocabulary, as a comparison)")
    parser.add_argument("--data", metavar="DIR", help="reuse token data prepared with --substrate "
                        "instead of tokenizing the default corpus")
    parser.add_argument("--eval-docs", type=options.non_negative_int,
                        help="held-out documents scored per stage (0 = skip; default: all of the validation split)")
    parser.add_argument("--init", choices=("random", "identity", "copy-top"), default="random",
                        help="new-block initialisation (default: random, as the reference)")
    parser.add_argument("--seq-len", type=options.positive_int, default=128,
                        help="training sequence length (default: 128)")
    parser.add_argument("--batch-size", type=options.positive_int, default=8, help="sequences per step (default: 8)")
    parser.add_argument("--lr", type=options.positive_float, default=DEFAULT_LR,
                        help=f"peak learning rate (default: {DEFAULT_LR:g})")
    parser.add_argument("--seed", type=options.seed, default=0,
                        help="seed of training and sampling (default: 0)")
    parser.add_argument("--threads", type=options.positive_int,
                        help="torch CPU threads (default: 1 or min(2, CPUs), whichever trains faster here)")
    options.add_progress(parser)
