"""`pgt demo`: the whole PGT story on the embedded default corpus, in about ten minutes on 2 CPU cores.

Steps, each kept in OUT and reused when a rerun finds it finished (so an interrupted demo
continues where it stopped):
  1. substrate  OUT/substrate   bvv241-2-3 tokenizer with n-grams mined from the default corpus,
                                 and its frozen glyph embeddings at a small width (--dim)
  2. data       OUT/data        the default corpus (Debian fortunes: en, ru, de) as token shards
  3. plan       OUT/demo.json   tokens per stage that fit --minutes, from measured speeds
  4. growth     OUT/run         a model grown block by block (--stages), each stage saved as a model
  5. glyphs     OUT/glyphs.png, OUT/neighbours.txt: rendered tokens and their nearest embeddings
  6. stages     validation loss, held-out perplexity (OUT/run/stage-K/eval/) and OUT/samples.md
  7. report     OUT/report.md   `pgt report` of the run, with its PNG plots
No network and no reference files are needed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pgt.errors import PgtError
from pgt.io import atomic_file, read_json, write_json

EXAMPLES = """examples:
  pgt demo                                   # the full story into runs/demo (about 10 minutes on 2 cores)
  pgt demo --out runs/demo                   # rerun after an interruption: finished steps are reused
  pgt demo --out /tmp/tiny --stages 2 --tokens-per-stage 20000 --dim 64
  pgt demo --out /tmp/d --substrate runs/demo/substrate --data runs/demo/data --minutes 3
"""

FAMILY = "bvv241-2-3"
DEFAULT_DIM = 128
DIM_REASON = (
    "the output head (65,536 x d) trains in every stage and dominates a CPU training step, and its cost "
    "grows linearly with d: 128 trains 8x more tokens per minute than the published 1,024, and the "
    "first 128 PCA components of the glyph bitmaps still tell glyphs apart (see the neighbours below)"
)
# The reference's sampling settings (DESIGN.md §4), seeded so every run prints the same samples.
SAMPLING = {"do_sample": True, "temperature": 0.8, "top_k": 50, "top_p": 0.95}
PROMPTS = ("The meaning of life is", "Жизнь — это")
SAMPLE_TOKENS = 40
SHOWCASE_TOKENS = ("A", "Ж", "the", "Α", "А", "ing", "ого", "漢")
NEIGHBOURS = 6
HEADS = 4  # attention heads of the demo's blocks (32 dims each at d = 128)
# A demo stage sees few tokens, so a high peak rate pays: after 8,192 tokens of stage 1 at d = 128,
# validation loss was 9.13 at lr 2e-3, 6.59 at 6e-3, 5.53 at 1.2e-2 and 6.04 at 2.4e-2.
DEFAULT_LR = 8e-3
# Seconds kept back from --minutes for the glyphs and the report, and per stage for loading and
# saving beside the measured cost of its evaluation and samples.
FIXED_RESERVE_S = 20.0
STAGE_OVERHEAD_S = 5.0
# Fraction of the training time that goes into tokens (the rest: periodic evaluation, checkpoints).
TRAIN_SHARE = 0.8


@dataclass
class DemoPlan:
    """The settings the demo's run is made with; saved as OUT/demo.json so a rerun resumes the same run."""

    dim: int
    stages: int
    tokens_per_stage: int
    init: str
    seq_len: int
    batch_size: int
    heads: int
    lr: float
    seed: int
    substrate: str
    measured_tokens_per_s: float | None = None

    def growth_config(self, data: Path, out: Path, progress: bool):
        """The `pgt grow` configuration of this plan."""
        from pgt.growth import GrowthConfig

        steps = max(1, self.tokens_per_stage // (self.batch_size * self.seq_len))
        return GrowthConfig(
            substrate=self.substrate, data=str(data), out=str(out), stages=self.stages, init=self.init,
            tokens_per_stage=self.tokens_per_stage, batch_size=self.batch_size, seq_len=self.seq_len,
            heads=self.heads, lr=self.lr, seed=self.seed, context=max(256, self.seq_len),
            eval_every=max(1, steps // 4), eval_batches=4, checkpoint_every=max(1, steps // 4),
            log_every=max(1, steps // 40), progress=progress,
        )


def _say(message: str) -> None:
    print(message, flush=True)


def _step(number: int, title: str) -> None:
    _say(f"\n== {number}. {title}")


# ---------------------------------------------------------------- steps


def _check_dim(dim: int) -> None:
    if dim % (2 * HEADS):  # rotary embeddings need an even width per head
        raise PgtError(f"the demo's {HEADS} attention heads need a dim divisible by {2 * HEADS} (got {dim})")


def ensure_substrate(out: Path, given: str | None, dim: int | None, progress: bool) -> Path:
    """The substrate to use: `given`, the one a previous run left in OUT/substrate, or a new build."""
    from pgt.data.corpus import default_corpus_files
    from pgt.substrate.build import build_substrate
    from pgt.substrate.store import SUBSTRATE_FILE, SubstrateMeta

    if given:
        path = Path(given)
        if not (path / SUBSTRATE_FILE).is_file():
            raise PgtError(f"--substrate {path} is not a substrate directory (no {SUBSTRATE_FILE})")
        given_dim = SubstrateMeta.load(path / SUBSTRATE_FILE).dim
        if dim is not None and dim != given_dim:
            raise PgtError(f"--dim {dim} contradicts --substrate {path}, which has dim {given_dim}")
        _check_dim(given_dim)
        _say(f"reusing the substrate {path} (dim {given_dim})")
        return path
    dim = dim or DEFAULT_DIM
    _check_dim(dim)
    path = out / "substrate"
    if (path / SUBSTRATE_FILE).is_file():  # written atomically, so present means complete
        built_dim = SubstrateMeta.load(path / SUBSTRATE_FILE).dim
        if built_dim != dim:
            raise PgtError(f"{path} was built with dim {built_dim}, not {dim}: rerun with --dim {built_dim} "
                           "or choose another --out")
        _say(f"reusing {path} (finished earlier)")
        return path
    _say(f"building {FAMILY} at dim {dim}: {DIM_REASON}.")
    start = time.perf_counter()
    build_substrate(path, family=FAMILY, corpus=default_corpus_files(), dim=dim, progress=progress)
    _say(f"built {path} in {time.perf_counter() - start:.0f} s")
    return path


def ensure_data(out: Path, given: str | None, substrate: Path, progress: bool) -> Path:
    """The token data: `given`, OUT/data from a previous run, or the default corpus tokenized now."""
    from pgt.data.manifest import MANIFEST_FILE, Manifest
    from pgt.data.prepare import prepare_token_data

    path = Path(given) if given else out / "data"
    if (path / MANIFEST_FILE).is_file():  # written atomically, so present means complete
        _say(f"reusing {path}")
    elif given:
        raise PgtError(f"--data {path} is not a token data directory (no {MANIFEST_FILE}; make one with "
                       "`pgt data prepare`)")
    else:  # an interrupted preparation resumes from its work directory
        prepare_token_data(["default"], substrate, path, workers=min(2, os.cpu_count() or 1), progress=progress)
    splits = Manifest.read(path).splits
    _say(f"{path}: {splits['train'].tokens:,} training and {splits['validation'].tokens:,} validation tokens")
    return path


@dataclass(frozen=True)
class Speeds:
    """How fast this machine runs the demo's model: measured, not assumed."""

    train_tokens_per_s: float  # AdamW steps of a one-block model (the head dominates deeper stages too)
    score_tokens_per_s: float  # forward passes without gradients (perplexity)
    s_per_sampled_token: float  # one step of `generate` with the reference's sampling


def measure_speeds(substrate: Path, seq_len: int, batch_size: int, heads: int) -> Speeds:
    """Time a few real training steps, scoring passes and sampled tokens of a one-block model."""
    import torch

    from pgt.model import PgtForCausalLM
    from pgt.substrate.store import Substrate

    torch.manual_seed(0)
    model = PgtForCausalLM.from_substrate(Substrate.load(substrate, verify=False), num_hidden_layers=1,
                                          num_attention_heads=heads)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    ids = torch.randint(0, 128, (batch_size, seq_len))  # any ids cost the same; these are ASCII characters

    def timed(action, repeats: int = 3) -> float:
        action()  # warm-up: allocations and kernel selection
        start = time.perf_counter()
        for _ in range(repeats):
            action()
        return (time.perf_counter() - start) / repeats

    def train_step() -> None:
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def score() -> None:
        with torch.inference_mode():
            model(input_ids=ids)

    def sample(new_tokens: int = 8) -> None:
        with torch.inference_mode():
            model.generate(ids[:1, :4], max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           pad_token_id=model.config.pad_token_id, **SAMPLING)

    tokens = batch_size * seq_len
    return Speeds(tokens / timed(train_step), tokens / timed(score), timed(sample) / 8)


def make_plan(out: Path, args: argparse.Namespace, substrate: Path, data: Path, started: float) -> DemoPlan:
    """The run's settings: OUT/demo.json when a previous run saved them, else new ones fitted to --minutes.

    Fitting: the time left after the substrate and the data, less what evaluation and sampling of
    every stage will take at the measured speeds, goes into training tokens (TRAIN_SHARE of it:
    the trainer's own validation and checkpoints take the rest).
    """
    from pgt.substrate.store import SUBSTRATE_FILE, SubstrateMeta

    plan_path = out / "demo.json"
    requested = {"stages": args.stages, "init": args.init, "seed": args.seed, "substrate": str(substrate),
                 "seq_len": args.seq_len, "batch_size": args.batch_size, "lr": args.lr}
    if args.tokens_per_stage:
        requested["tokens_per_stage"] = args.tokens_per_stage
    if plan_path.is_file():
        plan = DemoPlan(**read_json(plan_path, "demo plan"))
        changed = {key: (getattr(plan, key), value) for key, value in requested.items() if getattr(plan, key) != value}
        if changed:
            detail = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in changed.items())
            raise PgtError(f"{out} holds a demo made with other settings ({detail}): rerun with the same options "
                           "or choose another --out")
        _say(f"resuming the plan in {plan_path}: {plan.stages} stages x {plan.tokens_per_stage:,} tokens")
        return plan
    dim = SubstrateMeta.load(substrate / SUBSTRATE_FILE).dim
    plan = DemoPlan(dim=dim, stages=args.stages, tokens_per_stage=args.tokens_per_stage or 0, init=args.init,
                    seq_len=args.seq_len, batch_size=args.batch_size, heads=HEADS, lr=args.lr,
                    seed=args.seed, substrate=str(substrate))
    if not plan.tokens_per_stage:
        speeds = measure_speeds(substrate, plan.seq_len, plan.batch_size, plan.heads)
        from pgt.data.manifest import Manifest

        validation = Manifest.read(data).splits["validation"]
        eval_tokens = args.eval_docs * validation.tokens / max(1, validation.documents)
        per_stage_s = (eval_tokens / speeds.score_tokens_per_s
                       + len(PROMPTS) * SAMPLE_TOKENS * speeds.s_per_sampled_token + STAGE_OVERHEAD_S)
        left = args.minutes * 60 - (time.perf_counter() - started) - FIXED_RESERVE_S - plan.stages * per_stage_s
        if left <= 0:
            raise PgtError(f"--minutes {args.minutes} is used up before training starts; give more minutes, "
                           "fewer --eval-docs or --tokens-per-stage")
        plan.measured_tokens_per_s = round(speeds.train_tokens_per_s, 1)
        per_stage = int(left * TRAIN_SHARE * speeds.train_tokens_per_s / plan.stages)
        plan.tokens_per_stage = max(plan.batch_size * plan.seq_len, per_stage)
        _say(f"measured {speeds.train_tokens_per_s:,.0f} training tokens/s, {speeds.score_tokens_per_s:,.0f} scored "
             f"tokens/s, {speeds.s_per_sampled_token:.3f} s per sampled token; {left:.0f} s of {args.minutes:g} min "
             f"left for training -> {plan.tokens_per_stage:,} tokens per stage")
    write_json(plan_path, dataclasses.asdict(plan))
    return plan


def ensure_run(out: Path, plan: DemoPlan, data: Path, progress: bool) -> Path:
    """OUT/run grown through the plan's stages; `grow` resumes an interrupted run and skips a finished one."""
    from pgt.growth import grow

    run_dir = out / "run"
    _say(f"growing {plan.stages} blocks on {FAMILY} (d = {plan.dim}) with {plan.init} init of each new block, "
         f"{plan.tokens_per_stage:,} tokens per stage; older blocks stay frozen")
    return grow(plan.growth_config(data, run_dir, progress))


def evaluate_and_sample(out: Path, run_dir: Path, seed: int, eval_docs: int) -> list[tuple[int, str, str]]:
    """Per stage: perplexity and bits per byte on held-out fortunes (`pgt eval --task perplexity`, into
    stage-K/eval/), and a seeded sample per prompt; the samples also go to OUT/samples.md."""
    import torch

    from pgt.eval.report import stage_dirs
    from pgt.eval.results import EvalRecord
    from pgt.eval.runner import evaluate_to_file, planned_path
    from pgt.model import load_model

    samples = []
    for stage_dir in stage_dirs(run_dir):
        stage = int(stage_dir.name.removeprefix("stage-"))
        model, tokenizer = load_model(stage_dir)
        model.eval()
        if eval_docs:
            done = planned_path(stage_dir, "perplexity")
            record = EvalRecord.load(done) if done.is_file() else None
            if record is None or record.protocol["limit"] != eval_docs:  # a finished stage never changes
                _, record = evaluate_to_file(model, tokenizer, stage_dir, "perplexity", limit=eval_docs)
            _say(f"  stage {stage}: held-out perplexity {record.value('perplexity'):.1f}, "
                 f"{record.value('bpb'):.3f} bits/byte ({record.n_examples} documents)")
        for index, prompt in enumerate(PROMPTS):
            input_ids = torch.tensor([tokenizer(prompt)["input_ids"]])
            torch.manual_seed(seed + index)  # the same draws for a prompt at every stage
            with torch.inference_mode():
                output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                        max_new_tokens=SAMPLE_TOKENS, pad_token_id=model.config.pad_token_id,
                                        **SAMPLING)
            samples.append((stage, prompt, tokenizer.decode(output[0, input_ids.shape[1]:], skip_special_tokens=True)))
    lines = ["# Samples per stage", "",
             f"Seeded sampling (seed {seed} + prompt number) with the reference's settings ("
             + ", ".join(f"{k}={v}" for k, v in SAMPLING.items() if k != "do_sample")
             + f"), {SAMPLE_TOKENS} new tokens.", ""]
    for stage, prompt, text in samples:
        lines += [f"## stage {stage}: {prompt}", "", "```text", prompt + text, "```", ""]
    with atomic_file(out / "samples.md", "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    return samples


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


def run_demo(args: argparse.Namespace) -> Path:
    """Run every step of the demo (see the module docstring), print what it shows; return the report's path."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the demo prints its own account of each step
    if args.eval_docs < 0:
        raise PgtError(f"--eval-docs must not be negative (got {args.eval_docs})")
    if args.dim is not None:
        _check_dim(args.dim)
    started = time.perf_counter()
    out = Path(args.out)  # each step creates what it writes
    torch.set_num_threads(args.threads or min(2, os.cpu_count() or 1))
    progress = not args.quiet and sys.stderr.isatty()

    _step(1, "substrate: tokenizer and frozen glyph embeddings")
    substrate = ensure_substrate(out, args.substrate, args.dim, progress)
    _step(2, "data: the embedded default corpus (fortunes en/ru/de)")
    data = ensure_data(out, args.data, substrate, progress)
    _step(3, "plan")
    plan = make_plan(out, args, substrate, data, started)
    _step(4, "growth: one block at a time")
    run_dir = ensure_run(out, plan, data, progress)

    _step(5, "glyphs and their nearest neighbours")
    for line in write_glyphs(out, substrate):
        _say("  " + line)
    _say(f"rendered glyphs: {out / 'glyphs.png'}")

    _step(6, "per stage: validation loss, held-out perplexity and a sample")
    from pgt.eval.report import growth_steps, stage_dirs, write_report
    from pgt.growth.metrics import read_metrics

    stages = [read_json(d / "stage.json", "stage description") for d in stage_dirs(run_dir)]
    _say(f"{'stage':>5}  {'blocks':>6}  {'tokens seen':>12}  {'val loss':>8}  {'bits/byte':>9}")
    for info in stages:
        _say(f"{info['stage']:>5}  {info['blocks']:>6}  {info['tokens_seen']:>12,}  {info['val_loss']:>8.4f}  "
             f"{info['val_bpb']:>9.4f}")
    for stage, before, after in growth_steps(read_metrics(run_dir)):
        _say(f"  adding block {stage}: validation loss {before:.4f} -> {after:.4f} ({after - before:+.4f}) "
             "before the new block trained")
    samples = evaluate_and_sample(out, run_dir, plan.seed, args.eval_docs)
    for stage, prompt, text in samples:
        _say(f"  stage {stage} | {prompt}{text}".replace("\n", " ⏎ ")[:160])

    _step(7, "report")
    report = write_report(run_dir, out / "report.md")
    loss_png = report.with_name(f"{report.stem}-loss-curve.png")
    _say(f"loss curve with growth steps: {loss_png}")
    _say(f"report: {report}   samples: {out / 'samples.md'}   neighbours: {out / 'neighbours.txt'}")
    _say(f"demo finished in {time.perf_counter() - started:.0f} s")
    return report


def handle_demo(args: argparse.Namespace) -> int:
    """Handler of `pgt demo`."""
    run_demo(args)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `pgt demo` to the command line."""
    parser = subparsers.add_parser(
        "demo", help="the whole story on the embedded corpus in ~10 minutes on 2 CPU cores",
        description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="runs/demo", help="demo directory (default: runs/demo); rerun to resume")
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="time budget; sets the tokens per stage from measured speeds (default: 10; a resumed "
                        "demo keeps the plan it started with)")
    parser.add_argument("--stages", type=int, default=3, help="blocks to grow (default: 3)")
    parser.add_argument("--tokens-per-stage", type=int, help="training tokens per stage (default: fitted to --minutes)")
    parser.add_argument("--dim", type=int,
                        help=f"embedding width of the substrate built here (default: {DEFAULT_DIM}; the 65,536 x d "
                        "output head dominates CPU training, so a small d trains more tokens per minute)")
    parser.add_argument("--substrate", metavar="DIR", help="reuse an existing substrate instead of building one")
    parser.add_argument("--data", metavar="DIR", help="reuse token data prepared with that substrate "
                        "instead of tokenizing the default corpus")
    parser.add_argument("--eval-docs", type=int, default=100,
                        help="held-out documents scored per stage for perplexity (0 = skip; default: 100)")
    parser.add_argument("--init", choices=("random", "identity", "copy-top"), default="random",
                        help="new-block initialisation (default: random, as the reference)")
    parser.add_argument("--seq-len", type=int, default=128, help="training sequence length (default: 128)")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per step (default: 8)")
    parser.add_argument("--lr", type=float, default=DEFAULT_LR, help=f"peak learning rate (default: {DEFAULT_LR:g})")
    parser.add_argument("--seed", type=int, default=0, help="seed of training and sampling (default: 0)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: min(2, CPUs))")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=handle_demo)
