"""pgt's GPU check: one command, a few minutes on one GPU, every figure written as soon as it is measured.

    PYTHONPATH=src python benchmarks/gpu_check.py prepare  # beforehand, on a CPU with the fonts and fortunes
    benchmarks/gpu_check.sh                           # on the GPU machine: `run`, into $OUT (or docs/results/gpu/DATE)
    benchmarks/gpu_check.sh --tiny --device cpu --prepared P --out /tmp/g  # the dry run (P: prepare --tiny)

`prepare` builds what is slow or impossible on the GPU machine (no fonts, no fortune files, no network)
into one git-ignored folder, `.cache/gpu-check/`: the study's corpus split, its trimmed substrates and
token data, packed in `study.tar.xz` (the full-vocabulary substrates are left out: the study reuses
the trimmed ones without them), and `prepared.json`. `run` measures, in this order, so that a run cut
off early still returns the most important numbers (docs/gpu.md):

  1. machine: GPU, torch / transformers versions, the measured bf16 matmul ceiling (8192^3, median of 10);
  2. growth: the abs-bvv-4 growth step (3 frozen blocks, 1 new, head; seq 1,024) in bfloat16 autocast:
     tokens/s, model FLOP/s, MFU against step 1's ceiling, peak memory; sdpa and every faster attention
     backend the image has; with and without torch.compile; the full-backprop step for the ratio;
  3. generate: `pgt generate` (batch 1, its streamed call) and pgt's batched generation (batch 32) against
     plain transformers `generate` on the same abs-bvv-width ArceeForCausalLM;
  4. study: `pgt study --scale gpu`, embeddings family first, its budgets sized from step 2's
     throughput to end inside the minutes left; its report is copied into OUT/study/.

Each step runs in its own process under a time guard and writes OUT/NN-STEP.json (partial figures
included) the moment it has them; OUT/logs/ holds every step's log; the last thing printed is the
table of OUT/summary.md with the performance targets (pass / miss and by how much).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgt.errors import PgtError, one_line
from pgt.records import Record

REPO = Path(__file__).resolve().parents[1]
PREPARED = REPO / ".cache" / "gpu-check"
PREPARED_FILE = "prepared.json"
STUDY_ARCHIVE = "study.tar.xz"
PREPARED_BUDGET_MIB = 56  # the device tool carries 64 MiB in all, the repository (~2 MiB) included
LIMIT_S = 400  # the whole run; the GPU command's limit is 7 minutes (420 s)
STEPS = ("machine", "growth", "generate", "study")
STEP_LIMITS_S = {"machine": 45, "growth": 150, "generate": 90}  # the study gets what is left
STUDY_MIN_S = 45  # below this the study is not started
MARGIN_S = 10  # left at the end for the table
STUDY_FAMILY_ORDER = ("embeddings", "growth", "merging")  # the order: embeddings first

# Performance targets (benchmarks, not tests).
TARGET_MFU = 0.40  # growth step, best of compile and attention backends, against the measured ceiling
TARGET_FULL_OVER_GROWTH = 1.8  # full-backprop step time / growth step time
TARGET_PGT_OVER_HF = 1.0  # pgt's generation tokens/s / plain transformers'

# Sizing the study from step 2 (assumptions, printed with the sizing; the run's actual times correct them).
SMALL_MODEL_EFFICIENCY = 0.10  # share of the abs-bvv-4 step's FLOP/s that the study's d=512 model reaches
FALLBACK_FLOPS = 50e12  # model FLOP/s assumed when step 2 measured nothing


@dataclass(frozen=True)
class Sizes:
    """What the check measures at: the real sizes on a GPU, or `--tiny` ones for the CPU dry run."""

    matmul: int
    matmul_repeats: int
    growth_preset: str
    growth_overrides: dict  # config fields replacing the preset's (tiny: a narrow model)
    batch: int
    seq: int
    steps: int
    warmup: int
    compile_backend: str  # torch.compile backend (inductor on a GPU; eager traces without a compiler)
    gen_width: int
    gen_heads: int
    gen_blocks: int
    prompt_chars: int
    new_tokens: int
    gen_batches: tuple[int, ...]
    gen_repeats: int
    study_scale: str
    study_sweeps: int | None  # learning rates each arm's sweep tries (None: the scale's; tiny: one, for speed)
    run_overhead_s: float  # assumed seconds of one `pgt grow` run besides its steps (build, checkpoints, save)
    score_s: float  # assumed seconds to score one model (held-out bits per byte, cloze)


SIZES = {
    "gpu": Sizes(
        matmul=8192,
        matmul_repeats=10,
        growth_preset="abs-bvv-4",
        growth_overrides={},
        batch=8,
        seq=1024,
        steps=10,
        warmup=3,
        compile_backend="inductor",
        gen_width=4096,
        gen_heads=32,
        gen_blocks=4,
        prompt_chars=200,
        new_tokens=64,
        gen_batches=(1, 32),
        gen_repeats=3,
        study_scale="gpu",
        study_sweeps=None,
        run_overhead_s=3.0,
        score_s=2.0,
    ),
    "tiny": Sizes(
        matmul=256,
        matmul_repeats=3,
        growth_preset="abs-bvv-4",
        growth_overrides=dict(hidden_size=64, num_attention_heads=4, vocab_size=512),
        batch=2,
        seq=64,
        steps=2,
        warmup=1,
        compile_backend="eager",
        gen_width=64,
        gen_heads=4,
        gen_blocks=2,
        prompt_chars=40,
        new_tokens=4,
        gen_batches=(1, 4),
        gen_repeats=1,
        study_scale="smoke",
        study_sweeps=1,
        run_overhead_s=0.5,
        score_s=0.3,
    ),
}


@dataclass
class StepRecord(Record):
    """OUT/NN-STEP.json: one step's figures, rewritten as they come (status `partial` until it ends)."""

    WHAT = "gpu check step"
    step: str
    status: str  # partial, ok, failed, timeout, skipped
    seconds: float
    figures: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class PreparedRecord(Record):
    """.cache/gpu-check/prepared.json: what `prepare` built, and the study options a run must repeat."""

    WHAT = "gpu check preparation"
    created: str
    tiny: bool
    study_scale: str
    corpus: list[str]  # `pgt study --corpus` items the study was split from (not read again)
    substrate: str | None  # `--substrate` the study was prepared from (not read again)
    families: list[str]
    bytes: int  # the prepared folder's size


@dataclass
class Target:
    name: str
    goal: float
    value: float | None
    note: str

    def verdict(self) -> str:
        if self.value is None:
            return "not measured"
        if self.value >= self.goal:
            return "pass"
        return f"miss by {(self.goal - self.value) / self.goal:.0%}"


@dataclass
class Summary(Record):
    """OUT/summary.json: the table's figures and the targets."""

    WHAT = "gpu check summary"
    created: str
    device: str
    rows: list[list[str]]
    targets: list[dict]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _say(message: str) -> None:
    print(message, flush=True)


def _record_path(out: Path, step: str) -> Path:
    return out / f"{STEPS.index(step) + 1:02d}-{step}.json"


# ====================================================================== prepare


FULL_SUBSTRATES = ("substrate-full", "substrate-visible-full")  # the study reuses its trims without them


def _carried(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """What goes to the GPU machine: not the full-vocabulary substrates, not lock files."""
    parts = Path(member.name).parts
    return None if (len(parts) > 1 and parts[1] in FULL_SUBSTRATES) or parts[-1].endswith(".lock") else member


def _link_duplicates(folder: Path) -> None:
    """Hard-link byte-identical files (the embeddings arms' token shards: one tokenizer, the same ids), so that
    the archive stores each once. pgt replaces files by renaming, never in place, so the links stay safe."""
    import hashlib

    seen: dict[tuple[int, str], Path] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
        first = seen.setdefault(key, path)
        if first != path and not path.samefile(first):
            path.unlink()
            os.link(first, path)


def prepare(
    out: Path,
    *,
    tiny: bool,
    substrate: str | None,
    families: tuple[str, ...],
    overwrite: bool,
    build: Path | None = None,
) -> Path:
    """Build the study's inputs for `run` into `out` (see the module docstring) by way of the study folder
    `build` (default: OUT-build, kept so that a rerun reuses every finished step); return `out`."""
    from pgt.io import atomic_dir, refuse_existing
    from pgt.study.corpus import parse_corpus_specs
    from pgt.study.runner import StudyOptions, prepare_study
    from pgt.study.scales import get_scale

    sizes = SIZES["tiny" if tiny else "gpu"]
    scale = get_scale(sizes.study_scale)
    # The fortunes' file names, spelled out: the run repeats them without reading them (the split is reused).
    corpus = [f"{lang}={source}" for lang, sources in parse_corpus_specs(None).items() for source in sources]
    refuse_existing(out, overwrite=overwrite, marker=PREPARED_FILE)
    study = (build or out.parent / f"{out.name}-build") / "study"
    prepare_study(
        StudyOptions(
            out=study,
            scale=scale,
            seeds=scale.seeds,
            families=families,
            corpus=corpus,
            substrate=Path(substrate) if substrate else None,
            progress=not tiny,
        )
    )
    _link_duplicates(study / "data")
    with atomic_dir(out, overwrite=overwrite, marker=PREPARED_FILE) as tmp:
        with tarfile.open(tmp / STUDY_ARCHIVE, "w:xz", preset=6) as archive:
            archive.add(study, arcname="study", filter=_carried)
        size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        if size > PREPARED_BUDGET_MIB * 2**20:
            raise PgtError(f"the prepared folder is {size / 2**20:.1f} MiB, over its {PREPARED_BUDGET_MIB} MiB budget")
        PreparedRecord(_now(), tiny, scale.name, corpus, substrate, list(families), size).save(tmp / PREPARED_FILE)
    _say(f"prepared {out}: {size / 2**20:.1f} MiB ({', '.join(families)}; study scale {scale.name})")
    return out


# ====================================================================== run: the parent


@dataclass
class Context:
    """What every step knows: where things are, the sizes, the device and its deadline."""

    out: Path
    work: Path  # scratch (not brought back): the unpacked study, model directories
    prepared: Path
    device: str
    tiny: bool
    deadline: float  # time.time() by which the step must be done
    families: tuple[str, ...] = STUDY_FAMILY_ORDER  # the study's families to run (those prepared, in this order)

    @property
    def sizes(self) -> Sizes:
        return SIZES["tiny" if self.tiny else "gpu"]

    @property
    def study_dir(self) -> Path:
        return self.work / "study"

    def left(self) -> float:
        return self.deadline - time.time()


def run(
    out: Path,
    *,
    prepared: Path,
    work: Path | None,
    device: str,
    tiny: bool,
    limit_s: float,
    only: tuple[str, ...] = STEPS,
    families: tuple[str, ...] = STUDY_FAMILY_ORDER,
) -> Summary:
    """Run the steps in order, each in its own process under its time guard; write and print the summary."""
    started = time.time()
    deadline = started + limit_s
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    record = PreparedRecord.load(prepared / PREPARED_FILE)
    if record.tiny != tiny:
        raise PgtError(
            f"{prepared} was prepared {'with' if record.tiny else 'without'} --tiny; "
            f"run {'with' if record.tiny else 'without'} it, or prepare again"
        )
    work = work or Path(tempfile.mkdtemp(prefix="pgt-gpu-check-"))
    if not (work / "study").is_dir():
        with tarfile.open(prepared / STUDY_ARCHIVE) as archive:
            archive.extractall(work, filter="data")
    _say(f"gpu check: {device}, out {out}, scratch {work}, {limit_s:.0f} s in all")
    for step in STEPS:
        if step not in only:
            continue
        left = deadline - time.time() - MARGIN_S
        # The dry run (--tiny) has no per-step guards: a loaded CPU must not turn a slow step into a failure.
        limit = left if tiny else min(STEP_LIMITS_S.get(step, left), left)
        path = _record_path(out, step)
        if limit < (STUDY_MIN_S if step == "study" else 5):
            StepRecord(step, "skipped", 0.0, notes=[f"{left:.0f} s left: not started"]).save(path)
            _say(f"== {step}: skipped ({left:.0f} s left)")
            continue
        _say(f"== {step} (at most {limit:.0f} s)")
        _run_step(step, out, work=work, prepared=prepared, device=device, tiny=tiny, limit=limit, families=families)
        saved = StepRecord.load(path) if path.is_file() else None
        _say(f"   {step}: {saved.status if saved else 'no record'} in {saved.seconds if saved else 0:.0f} s")
    summary = summarize(out)
    _say(f"total {time.time() - started:.0f} s\n")
    _say((out / "summary.md").read_text(encoding="utf-8"))
    return summary


def _run_step(
    step: str,
    out: Path,
    *,
    work: Path,
    prepared: Path,
    device: str,
    tiny: bool,
    limit: float,
    families: tuple[str, ...],
) -> None:
    """One step in a child process (its own session, so a timeout kills its compile workers too)."""
    path = _record_path(out, step)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "step",
        step,
        "--out",
        str(out),
        "--work",
        str(work),
        "--prepared",
        str(prepared),
        "--device",
        device,
        "--deadline",
        str(time.time() + limit),
        "--families",
        *families,
    ]
    if tiny:
        command.append("--tiny")
    started = time.time()
    with open(out / "logs" / f"{path.stem}.log", "w", encoding="utf-8") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = child.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            code = None
    seconds = time.time() - started
    saved = StepRecord.load(path) if path.is_file() else StepRecord(step, "failed", seconds)
    if code is None:
        saved = dataclasses.replace(
            saved, status="timeout", seconds=seconds, notes=[*saved.notes, f"stopped by its {limit:.0f} s guard"]
        )
    elif code != 0 or saved.status == "partial":
        saved = dataclasses.replace(
            saved, status="failed", seconds=seconds, notes=[*saved.notes, f"exit code {code}: see logs/{path.stem}.log"]
        )
    saved.save(path)


# ====================================================================== steps (each in its own process)


def run_step(step: str, ctx: Context) -> None:
    record = StepRecord(step, "partial", 0.0)
    path = _record_path(ctx.out, step)
    started = time.time()

    def save() -> None:
        record.seconds = time.time() - started
        record.save(path)

    save()
    if ctx.tiny:
        import torch

        torch.set_num_threads(1)  # the dry run shares a small CPU
    try:
        {"machine": step_machine, "growth": step_growth, "generate": step_generate, "study": step_study}[step](
            ctx, record, save
        )
    except Exception as exc:
        record.status = "failed"
        record.notes.append(f"{type(exc).__name__}: {one_line(exc)}")
        save()
        raise
    record.status = "ok"
    save()


def _device(ctx: Context) -> Any:
    from pgt.options import resolve_device

    return resolve_device(ctx.device)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def attention_backends(device: Any) -> dict[str, bool]:
    """transformers' attention backends this machine can run (the fast ones need CUDA and their package)."""
    from transformers.utils import (
        is_flash_attn_2_available,
        is_flash_attn_3_available,
        is_torch_flex_attn_available,
    )

    cuda = device.type == "cuda"
    return {
        "sdpa": True,
        "flash_attention_2": cuda and is_flash_attn_2_available(),
        "flash_attention_3": cuda and is_flash_attn_3_available(),
        "flex_attention": cuda and is_torch_flex_attn_available(),
    }


def step_machine(ctx: Context, record: StepRecord, save: Any) -> None:
    import platform

    import torch
    import transformers

    device = _device(ctx)
    figures = record.figures
    figures.update(
        python=platform.python_version(),
        torch=torch.__version__,
        transformers=transformers.__version__,
        cuda=torch.version.cuda,
        device=str(device),
        attention=attention_backends(device),
    )
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        figures.update(gpu=props.name, memory_gib=round(props.total_memory / 2**30, 1))
    else:
        figures.update(gpu=None, cpu_threads=torch.get_num_threads())
    save()
    n, dtype = ctx.sizes.matmul, torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    times = []
    for _ in range(ctx.sizes.matmul_repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    figures.update(
        matmul=dict(
            n=n,
            dtype=str(dtype).removeprefix("torch."),
            repeats=len(times),
            median_ms=seconds * 1e3,
            flops_per_s=2 * n**3 / seconds,
        )
    )
    _say(f"{figures.get('gpu') or 'cpu'}: {n}^3 {dtype} matmul {2 * n**3 / seconds / 1e12:.1f} TFLOP/s")


def _ceiling(out: Path) -> float | None:
    """The measured matmul FLOP/s of step 1, the denominator of every MFU."""
    path = _record_path(out, "machine")
    if not path.is_file():
        return None
    return StepRecord.load(path).figures.get("matmul", {}).get("flops_per_s")


def step_growth(ctx: Context, record: StepRecord, save: Any) -> None:
    import torch

    from pgt.growth.distributed import autocast
    from pgt.growth.expand import frozen_prefix, set_trainable
    from pgt.growth.stage import causal_lm_loss
    from pgt.model.architecture import build_model, count_parameters
    from pgt.model.presets import get_preset
    from pgt.study import flops

    sizes, device = ctx.sizes, _device(ctx)
    cuda = device.type == "cuda"
    ceiling = _ceiling(ctx.out)
    torch.manual_seed(0)
    config = get_preset(sizes.growth_preset).config(max_position_embeddings=sizes.seq, **sizes.growth_overrides)
    d, vocab, k = config.hidden_size, config.vocab_size, config.num_hidden_layers
    with device:
        model = build_model(config)
        # A random unit-row stand-in for the bvv241-abs matrix: the embedding is a lookup, its values cost nothing.
        rows = torch.randn(vocab, d)
        model.model.embed_tokens.weight.data.copy_(rows / rows.norm(dim=1, keepdim=True))
        del rows
    model.train()
    layers = model.model.layers
    batch = torch.randint(0, vocab, (sizes.batch, sizes.seq + 1), device=device)
    tokens = sizes.batch * sizes.seq
    shape = dict(d=d, vocab=vocab, seq_len=sizes.seq)
    step_flops = {
        "growth": flops.grown_stage_flops(**shape, stage=k, tokens=tokens),
        "full": flops.monolithic_flops(**shape, blocks=k, tokens=tokens),
    }
    record.figures.update(
        preset=sizes.growth_preset,
        d=d,
        vocab=vocab,
        blocks=k,
        batch=sizes.batch,
        seq=sizes.seq,
        parameters=count_parameters(model)[0],
        ceiling_flops_per_s=ceiling,
        step_flops=step_flops,
        flop_ratio_full_over_growth=step_flops["full"] / step_flops["growth"],
        variants=[],
    )
    save()
    _say(
        f"{sizes.growth_preset}: d {d}, {k} blocks, vocab {vocab:,}, batch {sizes.batch} x {sizes.seq}; "
        f"FLOP ratio full / growth {step_flops['full'] / step_flops['growth']:.2f}"
    )

    compiled_loss = None  # torch.compile(causal_lm_loss), made on first use: as a single-process `pgt grow --compile`

    def measure(kind: str, attention: str, compiled: bool, profile: bool = False) -> dict:
        nonlocal compiled_loss
        if compiled and compiled_loss is None:
            compiled_loss = torch.compile(causal_lm_loss, backend=sizes.compile_backend)
        loss_of = compiled_loss if compiled else causal_lm_loss
        model.set_attn_implementation(attention)
        frozen = k - 1 if kind == "growth" else 0
        set_trainable(
            model,
            [layers[-1], model.model.norm, model.lm_head]
            if kind == "growth"
            else [*layers, model.model.norm, model.lm_head],
        )
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), fused=cuda)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        times = []

        def train_step() -> torch.Tensor:
            with autocast(device, "auto"):  # bfloat16 on a GPU, as `pgt grow`; float32 on a CPU
                loss = loss_of(model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss

        with frozen_prefix(layers, frozen):
            for _ in range(sizes.warmup + sizes.steps):
                _sync(device)
                start = time.perf_counter()
                loss = train_step()
                _sync(device)
                times.append(time.perf_counter() - start)
            lines = _profile(train_step, device) if profile else None
        if not torch.isfinite(loss):
            raise PgtError(f"{kind} step: non-finite loss {loss.item()}")
        optimizer.state.clear()  # the moments go before the next variant builds its own
        seconds = statistics.median(times[sizes.warmup :])
        rate = step_flops[kind] / seconds
        return dict(
            kind=kind,
            attention=attention,
            compile=compiled,
            status="ok",
            ms_per_step=seconds * 1e3,
            first_step_s=times[0],
            tokens_per_s=tokens / seconds,
            model_flops_per_s=rate,
            mfu=rate / ceiling if ceiling else None,
            loss=loss.item(),
            peak_memory_gib=torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
            profile=lines,
        )

    def attempt(kind: str, attention: str, compiled: bool, needs_s: float, profile: bool = False) -> dict | None:
        label = f"{kind}, {attention}{', compiled' if compiled else ''}"
        if ctx.left() < needs_s:
            record.notes.append(f"{label}: skipped ({ctx.left():.0f} s left, about {needs_s:.0f} s needed)")
            save()
            return None
        try:
            result = measure(kind, attention, compiled, profile)
        except Exception as exc:  # a backend or compile that fails is a finding, not the end of the step
            result = dict(kind=kind, attention=attention, compile=compiled, status=f"failed: {one_line(exc)}")
        record.figures["variants"].append(result)
        save()
        if result["status"] == "ok":
            _say(
                f"  {label}: {result['ms_per_step']:.1f} ms/step, {result['tokens_per_s']:,.0f} tokens/s, "
                f"{result['model_flops_per_s'] / 1e12:.1f} TFLOP/s, MFU "
                f"{result['mfu'] * 100 if result['mfu'] is not None else float('nan'):.1f} %"
            )
        else:
            _say(f"  {label}: {result['status']}")
        return result if result["status"] == "ok" else None

    eager = 10 if not ctx.tiny else 1  # rough seconds of one eager measurement; compiling takes several times more
    growth = attempt("growth", "sdpa", False, eager, profile=True)  # the profile says where a miss comes from
    attempt("full", "sdpa", False, eager)
    best, best_rate = "sdpa", growth["tokens_per_s"] if growth else 0.0
    available = [name for name, ok in attention_backends(device).items() if ok and name != "sdpa"]
    # flex attention compiles its kernel on first use: it goes last, after the compiled model.
    for attention in [name for name in available if name != "flex_attention"]:
        result = attempt("growth", attention, False, eager)
        if result and result["tokens_per_s"] > best_rate:
            best, best_rate = attention, result["tokens_per_s"]
    record.figures["best_eager_attention"] = best
    if ctx.left() > 6 * eager:
        attempt("growth", best, True, 6 * eager)
        attempt("full", best, True, 4 * eager)
    else:
        record.notes.append(f"compiled variants skipped ({ctx.left():.0f} s left)")
    if "flex_attention" in available:
        attempt("growth", "flex_attention", True, 3 * eager)


def _profile(train_step: Any, device: Any, rows: int = 8) -> list[str]:
    """The top operators of two profiled steps by their own time on the device: why an MFU is what it is."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    try:
        with profile(activities=activities) as prof:
            for _ in range(2):
                train_step()
                _sync(device)
        table = prof.key_averages().table(
            sort_by="self_device_time_total" if cuda else "self_cpu_time_total",
            row_limit=rows,
            max_name_column_width=48,
        )
    except Exception as exc:  # the profile explains a figure; it must never cost one
        return [f"profile failed: {one_line(exc)}"]
    return table.splitlines()


def _wide_substrate(glyph: Path, out: Path, width: int) -> Path:
    """The study's trimmed tokenizer with random unit rows `width` wide: an abs-bvv-width stand-in (the
    bvv241-abs matrix needs the font; generation speed does not depend on the rows' values)."""
    import numpy as np

    from pgt.substrate.health import random_unit_matrix
    from pgt.substrate.store import SUBSTRATE_FILE, Substrate, save_substrate

    if (out / SUBSTRATE_FILE).is_file():
        return out
    source = Substrate.load(glyph)
    matrix = random_unit_matrix((source.vocab_size, width), 0).astype(np.float32)
    params = dataclasses.replace(
        source.meta.params,
        dim=width,
        sources=[*source.meta.params.sources, {"control": "random unit rows at abs-bvv width (gpu check)", "seed": 0}],
    )
    return save_substrate(out, source.tokenizer, matrix, params, extra_meta={"derived_from": source.fingerprint})


def _prompts(ctx: Context, count: int) -> list[str]:
    from pgt.study.corpus import CORPUS_FILE, StudyCorpus

    corpus = StudyCorpus.load(ctx.study_dir / "corpus" / CORPUS_FILE)
    texts = [t for s in corpus.languages for t in s.heldout if len(t) >= ctx.sizes.prompt_chars]
    if len(texts) < count:
        raise PgtError(
            f"only {len(texts)} held-out documents of {ctx.sizes.prompt_chars}+ characters for {count} prompts"
        )
    return [t[: ctx.sizes.prompt_chars] for t in texts[:count]]


def step_generate(ctx: Context, record: StepRecord, save: Any) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from pgt.model.loading import init_model_dir, load_model

    sizes, device = ctx.sizes, _device(ctx)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    substrate = _wide_substrate(ctx.study_dir / "substrate", ctx.work / "gen-substrate", sizes.gen_width)
    model_dir = ctx.work / "gen-model"
    if not model_dir.is_dir():
        init_model_dir(substrate, model_dir, layers=sizes.gen_blocks, heads=sizes.gen_heads, seed=0)
    pgt_model, tokenizer = load_model(model_dir, dtype=dtype, device=device)  # what `pgt generate` loads
    hf_model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(device).eval()
    n = sizes.new_tokens
    for model in (pgt_model, hf_model):  # exactly n new tokens on both sides, whatever the random weights pick
        model.generation_config.min_new_tokens = n
    record.figures.update(
        width=sizes.gen_width,
        heads=sizes.gen_heads,
        blocks=sizes.gen_blocks,
        vocab=len(tokenizer),
        dtype=str(dtype).removeprefix("torch."),
        new_tokens=n,
        prompt_chars=sizes.prompt_chars,
        batches={},
    )
    record.notes.append(
        "the model's vocabulary is the study's trimmed tokenizer with random rows at abs-bvv "
        f"width ({len(tokenizer):,} ids, not 131,328): the head is far smaller than abs-bvv's"
    )
    save()
    streamed = ctx.out / "logs" / "03-generate-streamed.txt"  # what `pgt generate` prints
    with open(streamed, "w", encoding="utf-8") as log:
        for batch in sizes.gen_batches:
            _generate_batch(ctx, record, save, batch, pgt_model, hf_model, tokenizer, log)


def _generate_batch(
    ctx: Context, record: StepRecord, save: Any, batch: int, pgt_model: Any, hf_model: Any, tokenizer: Any, log: Any
) -> None:
    import torch
    from transformers import TextStreamer

    from pgt.eval.generation import SAMPLERS, generate_continuations
    from pgt.model.cli import GREEDY, stream_continuation

    sizes, device, n = ctx.sizes, _device(ctx), ctx.sizes.new_tokens
    prompts = _prompts(ctx, batch)
    if batch == 1:
        ids = tokenizer(prompts[0])["input_ids"]

        def pgt_run() -> None:  # `pgt generate DIR PROMPT --greedy`: the streamed call
            with contextlib.redirect_stdout(log):
                stream_continuation(
                    pgt_model,
                    ids,
                    max_new_tokens=n,
                    sampling=GREEDY,
                    streamer=TextStreamer(tokenizer, skip_prompt=True),
                )

        what = "pgt generate (streamed, batch 1)"
    else:

        def pgt_run() -> None:  # pgt's batched generation (`pgt eval`'s generative tasks)
            generate_continuations(
                pgt_model, tokenizer, prompts, [n] * batch, sampler=SAMPLERS["greedy"], batch_size=batch
            )

        what = f"pgt batched generation (batch {batch})"
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left").to(device)

    def hf_run() -> None:
        with torch.inference_mode():
            hf_model.generate(**encoded, max_new_tokens=n, do_sample=False, pad_token_id=hf_model.config.pad_token_id)

    times: dict[str, list[float]] = {"pgt": [], "transformers": []}
    for repeat in range(sizes.gen_repeats + 1):  # the first round warms up
        for name, call in (("pgt", pgt_run), ("transformers", hf_run)):
            _sync(device)
            start = time.perf_counter()
            call()
            _sync(device)
            if repeat:
                times[name].append(time.perf_counter() - start)
    rates = {name: batch * n / statistics.median(t) for name, t in times.items()}
    record.figures["batches"][str(batch)] = dict(
        pgt_path=what,
        pgt_tokens_per_s=rates["pgt"],
        transformers_tokens_per_s=rates["transformers"],
        ratio=rates["pgt"] / rates["transformers"],
    )
    save()
    _say(
        f"  batch {batch}: {what} {rates['pgt']:,.0f} tokens/s, transformers {rates['transformers']:,.0f} "
        f"tokens/s, ratio {rates['pgt'] / rates['transformers']:.3f}"
    )


def _family_seconds(family: str, scale: Any, vocab: int, d: int, seeds: int, rate: float, sizes: Sizes) -> float:
    """Predicted seconds of one family at `scale`: its training FLOPs (sweeps included) at `rate`, plus the
    assumed overhead of every run and every scored model."""
    from pgt.study import flops
    from pgt.study.arms import family_arms
    from pgt.study.runner import arm_budget

    shape = dict(d=d, vocab=vocab, seq_len=scale.seq_len)
    runs_per_arm = len(scale.sweep_lrs) * scale.sweep_share + seeds
    total, runs, scored = 0.0, 0, 0
    for arm in family_arms(family):
        blocks, per_stage = arm_budget(arm, scale)
        if arm.baseline != "none":
            arm_flops = flops.monolithic_flops(**shape, blocks=blocks, tokens=blocks * per_stage)
        else:
            arm_flops = flops.grown_flops(**shape, stages=blocks, tokens_per_stage=per_stage)
        total += runs_per_arm * arm_flops
        runs += len(scale.sweep_lrs) + seeds
        scored += seeds * (blocks if arm.name == "grown-random" else 1)
    if family == "merging":  # the merge, the adapter merge's tuning and their scores
        total += seeds * flops.monolithic_flops(**shape, blocks=scale.expert_stages, tokens=scale.tune_tokens)
        runs, scored = runs + seeds, scored + 2 * seeds
    return total / rate + runs * sizes.run_overhead_s + scored * sizes.score_s


def size_study(ctx: Context, seconds: float, record: StepRecord) -> tuple[Any, dict[str, float]]:
    """The study's scale with every token budget multiplied by one factor (at most 1) so that the first
    family fits `seconds`; and each family's predicted seconds at it."""
    from pgt.study.scales import get_scale
    from pgt.substrate.store import Substrate

    scale = get_scale(ctx.sizes.study_scale)
    glyph = Substrate.load(ctx.study_dir / "substrate")
    growth_path = _record_path(ctx.out, "growth")
    variants = StepRecord.load(growth_path).figures.get("variants", []) if growth_path.is_file() else []
    measured = [v["model_flops_per_s"] for v in variants if v.get("status") == "ok"]
    big = max(measured) if measured else FALLBACK_FLOPS
    rate = big * SMALL_MODEL_EFFICIENCY
    step = scale.batch_size * scale.seq_len

    def at(factor: float) -> Any:
        def tokens(n: int) -> int:
            return max(step, int(n * factor) // step * step)

        return dataclasses.replace(
            scale,
            device=ctx.device,
            sweep_lrs=scale.sweep_lrs[: ctx.sizes.study_sweeps],
            embedding_tokens=tokens(scale.embedding_tokens),
            growth_tokens=tokens(scale.growth_tokens),
            expert_tokens=tokens(scale.expert_tokens),
            tune_tokens=tokens(scale.tune_tokens),
        )

    def predict(s: Any) -> dict[str, float]:
        return {
            f: _family_seconds(f, s, glyph.vocab_size, glyph.dim, s.seeds, rate, ctx.sizes) for f in STUDY_FAMILY_ORDER
        }

    full = predict(scale)[STUDY_FAMILY_ORDER[0]]
    fixed = predict(at(0.0))[STUDY_FAMILY_ORDER[0]]  # overheads only (one step per run)
    factor = min(1.0, max(0.0, (seconds - fixed) / max(full - fixed, 1e-9)))
    sized = at(factor)
    predicted = predict(sized)
    record.figures["sizing"] = dict(
        measured_flops_per_s=big if measured else None,
        small_model_efficiency=SMALL_MODEL_EFFICIENCY,
        assumed_study_flops_per_s=rate,
        run_overhead_s=ctx.sizes.run_overhead_s,
        score_s=ctx.sizes.score_s,
        seconds_available=seconds,
        factor=factor,
        scale=scale.name,
        budgets={k: getattr(sized, k) for k in ("embedding_tokens", "growth_tokens", "expert_tokens", "tune_tokens")},
        predicted_s=predicted,
    )
    return sized, predicted


def step_study(ctx: Context, record: StepRecord, save: Any) -> None:
    from pgt.study.results import StudyResults
    from pgt.study.runner import RESULTS_FILE, StudyOptions, run_study

    prepared = PreparedRecord.load(ctx.prepared / PREPARED_FILE)
    scale, predicted = size_study(ctx, ctx.left() - MARGIN_S, record)
    save()
    sizing = record.figures["sizing"]
    _say(
        f"study at {scale.name} scale x {sizing['factor']:.3f} "
        f"(embeddings {scale.embedding_tokens:,} tokens per arm), "
        "predicted " + ", ".join(f"{f} {s:.0f} s" for f, s in predicted.items())
    )
    shown = ctx.out / "study"
    done: list[str] = []
    record.figures.update(families=done, family_seconds={})
    for family in STUDY_FAMILY_ORDER:
        if family not in prepared.families or family not in ctx.families:
            continue
        if done and predicted[family] > ctx.left() - MARGIN_S:
            record.notes.append(f"{family}: not started ({ctx.left():.0f} s left, {predicted[family]:.0f} s predicted)")
            break
        started = time.time()
        run_study(
            StudyOptions(
                out=ctx.study_dir,
                scale=scale,
                seeds=scale.seeds,
                families=(family,),
                corpus=prepared.corpus,
                substrate=Path(prepared.substrate) if prepared.substrate else None,
            ),
            command=f"pgt study {family} --scale {scale.name} (sized x {sizing['factor']:.3f}) by gpu_check.py",
        )
        done.append(family)
        record.figures["family_seconds"][family] = time.time() - started
        for name in ("report.md", RESULTS_FILE, "study-plan.json"):
            shown.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ctx.study_dir / name, shown / name)
        for figure in ctx.study_dir.glob("report-*.png"):
            shutil.copy2(figure, shown / figure.name)
        results = StudyResults.load(ctx.study_dir / RESULTS_FILE)
        record.figures["verdicts"] = [
            dict(
                family=f.family,
                claim=c.claim,
                metric=c.metric,
                scope=c.scope,
                difference=c.difference,
                p_holm=c.p_holm,
                verdict=c.verdict,
            )
            for f in results.families
            for c in f.comparisons
        ]
        save()


# ====================================================================== the table


def _load_steps(out: Path) -> dict[str, StepRecord]:
    return {s: StepRecord.load(_record_path(out, s)) for s in STEPS if _record_path(out, s).is_file()}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def targets(steps: dict[str, StepRecord]) -> list[Target]:
    growth = steps.get("growth")
    variants = [v for v in (growth.figures.get("variants", []) if growth else []) if v.get("status") == "ok"]
    growth_runs = [v for v in variants if v["kind"] == "growth" and v.get("mfu") is not None]
    best = max(growth_runs, key=lambda v: v["mfu"], default=None)
    found = []
    if best:
        found.append(
            Target(
                "growth-step MFU (best of compile and backends)",
                TARGET_MFU,
                best["mfu"],
                f"{best['attention']}{', compiled' if best['compile'] else ''}",
            )
        )
    else:
        found.append(Target("growth-step MFU", TARGET_MFU, None, "no growth step measured"))
    ratios = []
    for compiled in (False, True):  # eager: sdpa; compiled: the best eager backend (as step_growth runs them)
        attention = growth.figures.get("best_eager_attention", "sdpa") if compiled and growth else "sdpa"
        pair = {v["kind"]: v for v in variants if v["compile"] == compiled and v["attention"] == attention}
        if "growth" in pair and "full" in pair:
            ratios.append((pair["full"]["ms_per_step"] / pair["growth"]["ms_per_step"], compiled))
    ideal = growth.figures.get("flop_ratio_full_over_growth") if growth else None
    if ratios:
        ratio, compiled = max(ratios)
        found.append(
            Target(
                "full backprop / growth step time",
                TARGET_FULL_OVER_GROWTH,
                ratio,
                f"{'compiled' if compiled else 'eager'}; the FLOPs allow at most {ideal:.2f}",
            )
        )
    else:
        found.append(Target("full backprop / growth step time", TARGET_FULL_OVER_GROWTH, None, "not measured"))
    generate = steps.get("generate")
    for batch, figures in (generate.figures.get("batches", {}) if generate else {}).items():
        found.append(
            Target(
                f"pgt / transformers generation, batch {batch}",
                TARGET_PGT_OVER_HF,
                figures["ratio"],
                figures["pgt_path"],
            )
        )
    if not generate or not generate.figures.get("batches"):
        found.append(Target("pgt / transformers generation", TARGET_PGT_OVER_HF, None, "not measured"))
    return found


def summarize(out: Path) -> Summary:
    """Write OUT/summary.md and OUT/summary.json from the step records (whatever exists)."""
    steps = _load_steps(out)
    machine = steps.get("machine")
    device = (machine.figures.get("gpu") or machine.figures.get("device", "?")) if machine else "?"
    rows: list[list[str]] = [[s, r.status, f"{r.seconds:.0f} s", _headline(s, r)] for s, r in steps.items()]
    found = targets(steps)
    lines = [f"# pgt GPU check, {device}, {_now()}", ""]
    for s, r in steps.items():
        lines.extend(f"- {s}: {note}" for note in r.notes)
    variants = steps["growth"].figures.get("variants", []) if "growth" in steps else []
    profiled = [v for v in variants if v.get("profile")]
    if profiled and found[0].verdict() != "pass":  # why the MFU target is missed: where the step's time goes
        v = profiled[0]
        lines += [
            "",
            f"Where the time of the {v['kind']} step ({v['attention']}, eager) goes, two profiled steps:",
            "",
            "```",
            *v["profile"],
            "```",
        ]
    # The tables last: the end of the output is what a cut-off log shows.
    lines += [
        "",
        "| step | status | time | result |",
        "| --- | --- | --- | --- |",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
        "| target | goal | measured | verdict | note |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in found:
        measured = "–" if t.value is None else (_pct(t.value) if "MFU" in t.name else f"{t.value:.2f}x")
        goal = _pct(t.goal) if "MFU" in t.name else f"≥ {t.goal:.1f}x"
        lines.append(f"| {t.name} | {goal} | {measured} | {t.verdict()} | {t.note} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = Summary(_now(), device, rows, [dataclasses.asdict(t) | {"verdict": t.verdict()} for t in found])
    summary.save(out / "summary.json")
    return summary


def _headline(step: str, record: StepRecord) -> str:
    f = record.figures
    if step == "machine" and "matmul" in f:
        m = f["matmul"]
        return (
            f"torch {f['torch']}, transformers {f['transformers']}; {m['n']}³ {m['dtype']} matmul "
            f"{m['flops_per_s'] / 1e12:.1f} TFLOP/s"
        )
    if step == "growth":
        parts = [
            f"{v['kind']} {v['attention']}{'+compile' if v['compile'] else ''}: {v['tokens_per_s']:,.0f} tok/s, "
            f"MFU {_pct(v.get('mfu'))}" + (f", {v['peak_memory_gib']:.1f} GiB" if v.get("peak_memory_gib") else "")
            for v in f.get("variants", [])
            if v.get("status") == "ok"
        ]
        return "; ".join(parts) or "–"
    if step == "generate":
        batches = f.get("batches", {}).items()
        return (
            "; ".join(
                f"batch {b}: pgt {g['pgt_tokens_per_s']:,.0f}, transformers {g['transformers_tokens_per_s']:,.0f} tok/s"
                for b, g in batches
            )
            or "–"
        )
    if step == "study":
        verdicts = f.get("verdicts", [])
        held = sum(v["verdict"] == "holds" for v in verdicts)
        return (
            f"{', '.join(f.get('families', [])) or 'no family'} (x {f.get('sizing', {}).get('factor', 0):.3f} "
            f"of the {f.get('sizing', {}).get('scale', '?')} scale): {len(verdicts)} comparisons, {held} hold"
        )
    return "–"


# ====================================================================== command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="build the study's inputs into one git-ignored folder (CPU, beforehand)")
    p.add_argument("--out", default=str(PREPARED), help=f"default: {PREPARED.relative_to(REPO)}")
    p.add_argument("--tiny", action="store_true", help="the dry run's smoke-scale study")
    p.add_argument("--substrate", help="a full bvv241-2-3 substrate to trim (default: the study builds one)")
    p.add_argument("--families", nargs="+", default=list(STUDY_FAMILY_ORDER), choices=STUDY_FAMILY_ORDER)
    p.add_argument("--build", help="where the study's inputs are built and kept (default: OUT-build)")
    p.add_argument("--overwrite", action="store_true")
    r = commands.add_parser("run", help="measure (a GPU, or --tiny --device cpu for the dry run)")
    r.add_argument("--out", help="output folder (default: $OUT, else docs/results/gpu/DATE)")
    r.add_argument("--prepared", default=str(PREPARED))
    r.add_argument("--work", help="scratch folder (default: a new temporary one)")
    r.add_argument("--device", default="cuda")
    r.add_argument("--tiny", action="store_true", help="tiny sizes: the CPU dry run")
    r.add_argument("--limit-s", type=float, default=LIMIT_S)
    r.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    r.add_argument(
        "--families",
        nargs="+",
        default=list(STUDY_FAMILY_ORDER),
        choices=STUDY_FAMILY_ORDER,
        help="the study's families (default: every prepared one, embeddings first, while time lasts)",
    )
    s = commands.add_parser("step", help=argparse.SUPPRESS)
    s.add_argument("name", choices=STEPS)
    for option in ("--out", "--work", "--prepared", "--device", "--deadline"):
        s.add_argument(option, required=True)
    s.add_argument("--tiny", action="store_true")
    s.add_argument("--families", nargs="+", default=list(STUDY_FAMILY_ORDER), choices=STUDY_FAMILY_ORDER)
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            prepare(
                Path(args.out),
                tiny=args.tiny,
                substrate=args.substrate,
                families=tuple(args.families),
                overwrite=args.overwrite,
                build=Path(args.build) if args.build else None,
            )
        elif args.command == "run":
            out = Path(args.out or os.environ.get("OUT") or REPO / "docs" / "results" / "gpu" / _now()[:10])
            run(
                out,
                prepared=Path(args.prepared),
                work=Path(args.work) if args.work else None,
                device=args.device,
                tiny=args.tiny,
                limit_s=args.limit_s,
                only=tuple(args.steps),
                families=tuple(args.families),
            )
        else:
            run_step(
                args.name,
                Context(
                    Path(args.out),
                    Path(args.work),
                    Path(args.prepared),
                    args.device,
                    args.tiny,
                    float(args.deadline),
                    tuple(args.families),
                ),
            )
    except PgtError as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
