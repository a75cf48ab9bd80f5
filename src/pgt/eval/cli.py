"""`pgt eval` (reference protocol, log-likelihood, your own multiple-choice files, perplexity,
lm-evaluation-harness) and the registration of `pgt report`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pgt import options
from pgt.data.manifest import SPLITS
from pgt.errors import PgtError
from pgt.eval import batching
from pgt.eval import report as report_module
from pgt.eval.generation import DEFAULT_DECODING, SAMPLERS
from pgt.eval.harness import harness_paths, run_harness
from pgt.eval.protocol import REFERENCE_RUNS
from pgt.eval.results import RESULTS_DIRNAME, EvalRecord, refuse_existing_result
from pgt.eval.runner import evaluate_to_file, load_for_eval, planned_path, resolve_task
from pgt.eval.tasks import MC_TASK, PERPLEXITY_TASKS
from pgt.io import check_writable
from pgt.model.architecture import SAMPLING, AttnImplementation, attn_implementation_setting
from pgt.settings import (
    add_command,
    device_setting,
    dtype_setting,
    out_setting,
    overwrite_setting,
    progress_setting,
    setting,
    settings_from,
)

DESCRIPTION = """Evaluate saved model directories; each --task/--data pair writes MODEL_DIR/eval/<task>--<dataset>.json.

tasks (docs/evaluation.md):
  mmlu, arc_easy, arc_challenge, commonsense_qa, boolq, squad_v2   the reference protocol
  opus100:SRC-TGT (e.g. opus100:en-ru)                             translation, sentence-mean BLEU
  mc --name NAME --data FILE.jsonl                                 your own multiple-choice / cloze file
  perplexity, bpb                                                  held-out text (both report both)

--protocol reference (the default) samples 10 runs over one fixed list at the published sizes
(all of MMLU, ARC, CommonsenseQA; 256 SQuAD, 128 OPUS per direction); --decoding greedy is our
deterministic mode (σ 0). Only a reference benchmark at its published size and sampler is marked
comparable_to_published. Without --data the task's hub dataset is downloaded (network or cache)."""

EXAMPLES = [
    "pgt eval runs/demo/stage-2 --task perplexity                     # default corpus, held-out part",
    "pgt eval runs/grow/stage-* --task arc_easy --data arc_easy.jsonl  # every stage: depth against score",
    "pgt eval MODEL --task arc_easy --data arc.jsonl --task mmlu --data mmlu.parquet --log-samples",
    "pgt eval MODEL --task squad_v2 --data squad.jsonl --decoding greedy --runs 1",
    "pgt eval MODEL --task mmlu --data hf:lukaemon/mmlu --protocol loglik",
    "pgt eval MODEL --task mc --name cloze-ru --data cloze_ru.jsonl",
    "pgt eval MODEL --task bpb --data heldout_ru.txt --task bpb --data heldout_de.txt",
    "pgt eval MODEL --harness arc_easy,hellaswag --limit 100",
]


@dataclass
class EvalSettings:
    """`pgt eval`: the models, the tasks and how they are run."""

    model_dirs: list[str] = setting(
        help="saved model directories (pgt or any HF causal LM), e.g. runs/grow/stage-*",
        positional=True,
        nargs="+",
        required=True,
        metavar="MODEL_DIR",
    )
    # repeated options: None when not given, [] once built (__post_init__)
    task: list[str] | None = setting(None, "task to run (repeatable)", metavar="TASK")
    data: list[str] | None = setting(
        None,
        "dataset of the --task at the same position: a file (.jsonl/.json/.parquet/.csv), "
        "a directory, or hf:NAME[:CONFIG]; give none (hub defaults) or one per --task",
        metavar="PATH",
    )
    name: list[str] | None = setting(None, "name of each --task mc, in order (names its results file)", metavar="NAME")
    hub_split: str | None = setting(
        None, "dataset split", metavar="SPLIT", default_text="the task's own, e.g. validation"
    )
    split: str | None = setting(
        None, "perplexity/bpb: score only pgt's train or validation documents of --data", choices=SPLITS
    )
    protocol: Literal["reference", "loglik"] = setting(
        "reference", "reference: generated answers as the reference scores them; loglik: the most probable option"
    )
    decoding: str = setting(
        DEFAULT_DECODING,
        "sample: temperature-1 sampling (the reference's likeliest sampler); "
        f"card: the model card's temperature {SAMPLING['temperature']}, top-k {SAMPLING['top_k']}, "
        f"top-p {SAMPLING['top_p']}; greedy: deterministic",
        choices=tuple(SAMPLERS),
    )
    temperature: float | None = setting(
        None, "sampling temperature (overrides --decoding's)", parse=options.positive_float
    )
    runs: int | None = setting(None, "runs over the one fixed list", default_text=str(REFERENCE_RUNS))
    limit: int | None = setting(None, "examples in the list (default: the reference's size) / held-out documents")
    seed: int = setting(0, "seed of the list's shuffle and of the samples", parse=options.seed)
    batch_size: int = setting(8, "prompts per forward pass")
    dtype: str = dtype_setting()
    device: str = device_setting()
    attn_implementation: AttnImplementation = attn_implementation_setting()
    out: str | None = out_setting(
        "write results to DIR/<task>--<dataset>.json instead of MODEL_DIR/eval/", required=False
    )
    overwrite: bool = overwrite_setting()
    log_samples: bool = setting(
        False,
        "also write every example (prompt, continuation or option log-likelihoods, answer, "
        "correctness; for perplexity/bpb each document's index, tokens, bytes and nats) "
        "to <results>.samples.jsonl",
        switch=True,
    )
    progress: bool | None = progress_setting()
    harness: str | None = setting(None, "run lm-evaluation-harness tasks (comma-separated)", metavar="TASKS")
    include_path: str | None = setting(None, "extra lm-eval task YAMLs (with --harness)", metavar="DIR")
    num_fewshot: int | None = setting(None, "few-shot examples for --harness tasks", parse=options.non_negative_int)

    def __post_init__(self) -> None:
        self.task, self.data, self.name = self.task or [], self.data or [], self.name or []


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `pgt eval` and `pgt report`."""
    add_command(
        subparsers,
        "eval",
        help="evaluate a model: reference benchmarks, log-likelihood, your own tasks, perplexity, lm-eval",
        description=DESCRIPTION,
        examples=EXAMPLES,
        handler=run_eval,
        settings=EvalSettings,
    )
    add_command(  # the report's settings, examples and handler live with the report
        subparsers,
        "report",
        help="one Markdown page with plots for a growth run",
        examples=report_module.EXAMPLES,
        handler=report_module.run_report,
        settings=report_module.ReportSettings,
    )


def _print_result(path: Path, record: EvalRecord) -> None:
    metrics = record.metrics
    spread = "" if record.runs_identical or metrics.ci95 is None else f" ± {metrics.ci95:.2f} (σ {metrics.std:.2f})"
    extra = f" (bpb {record.value('bpb'):.4f})" if "bpb" in record.other_metrics else ""
    if "bz2_bpb" in record.other_metrics:  # a held-out bits per byte: the compressors on the same bytes beside it
        extra += f" (bzip2 -9 {record.value('bz2_bpb'):.4f}, xz -9e {record.value('xz_bpb'):.4f} bits/byte)"
    chance = f", chance {record.chance:.1f}" if record.chance is not None else ""
    print(
        f"{record.task} on {record.dataset}: {record.metric} {metrics.mean:.4f}{spread}{extra}{chance} "
        f"[{record.n_examples} examples x {record.runs} runs] -> {path}"
    )
    if record.n_truncated_prompts:
        print(
            f"  note: {record.n_truncated_prompts} prompts with their new tokens exceeded the context and were "
            "cropped to its last tokens before each new token, as the reference's sampler does",
            file=sys.stderr,
        )


def _jobs(settings: EvalSettings) -> list[tuple[str, str | None, str | None]]:
    """(task, mc name, data) per --task, checked before any model is loaded."""
    if settings.data and len(settings.data) != len(settings.task):
        raise PgtError(
            f"{len(settings.data)} --data for {len(settings.task)} --task: give one --data per --task "
            "(in the same order), or none for the tasks' hub datasets"
        )
    n_mc = settings.task.count(MC_TASK)
    if len(settings.name) != n_mc:
        raise PgtError(f"{len(settings.name)} --name for {n_mc} --task mc: name each of your own tasks once, in order")
    names = iter(settings.name)
    jobs = []
    for index, task in enumerate(settings.task):
        name = next(names) if task == MC_TASK else None
        resolve_task(task, name)  # fail on a typo before loading the model
        jobs.append((task, name, settings.data[index] if settings.data else None))
    return jobs


def _check(settings: EvalSettings) -> None:
    if not settings.task and not settings.harness:
        raise PgtError("nothing to evaluate: give --task TASK (repeatable) and/or --harness TASKS")
    if settings.include_path and not settings.harness:
        raise PgtError("--include-path is for lm-evaluation-harness tasks: use it with --harness")
    if settings.temperature is not None and settings.decoding == "greedy":
        raise PgtError("--temperature is for sampling: leave it out with --decoding greedy")
    if len(settings.model_dirs) > 1 and settings.out:
        raise PgtError("--out holds the results of one model: leave it out to write each MODEL_DIR/eval/")
    if settings.out and Path(settings.out).exists() and not Path(settings.out).is_dir():
        raise PgtError(f"--out {settings.out} is a file: give a directory for the results")
    for model_dir in settings.model_dirs:
        if not (Path(model_dir) / "config.json").is_file():
            raise PgtError(f"{model_dir} is not a model directory (no config.json)")


def _split(settings: EvalSettings, task: str) -> str | None:
    """pgt's train/validation split for held-out text; the dataset's own split for every other task."""
    return settings.split if task in PERPLEXITY_TASKS else settings.hub_split


def run_eval(args: argparse.Namespace) -> int:
    """`pgt eval`: evaluate each --task/--data pair (and/or --harness tasks) and write the results."""
    settings = settings_from(EvalSettings, args)
    _check(settings)
    jobs = _jobs(settings)

    mode = "loglik" if settings.protocol == "loglik" else "generate"
    harness_tasks = [t for t in settings.harness.split(",") if t] if settings.harness else []
    for model_dir in settings.model_dirs:  # refuse before any model is loaded or evaluated
        paths = [
            planned_path(
                model_dir, task, name=name, data=data, split=_split(settings, task), mode=mode, out_dir=settings.out
            )
            for task, name, data in jobs
        ]
        if settings.harness:
            paths += harness_paths(model_dir, harness_tasks, include_path=settings.include_path, out_dir=settings.out)
        for path in paths:
            refuse_existing_result(path, overwrite=settings.overwrite)
        check_writable(Path(settings.out) if settings.out else Path(model_dir) / RESULTS_DIRNAME)

    batching.set_progress(options.show_progress(settings))
    sampler = SAMPLERS[settings.decoding]
    if settings.temperature is not None:
        sampler = dataclasses.replace(sampler, temperature=settings.temperature)
    for model_dir in settings.model_dirs:
        if len(settings.model_dirs) > 1:
            print(f"{model_dir}:")
        model, tokenizer = load_for_eval(model_dir, settings.dtype, settings.device, settings.attn_implementation)
        for task, name, data in jobs:
            path, record = evaluate_to_file(
                model,
                tokenizer,
                model_dir,
                task,
                name=name,
                data=data,
                split=_split(settings, task),
                mode=mode,
                runs=settings.runs,
                limit=settings.limit,
                sampler=sampler,
                seed=settings.seed,
                batch_size=settings.batch_size,
                out_dir=settings.out,
                log_samples=settings.log_samples,
            )
            _print_result(path, record)
        if settings.harness:
            for path, record in run_harness(
                model,
                tokenizer,
                model_dir,
                harness_tasks,
                include_path=settings.include_path,
                limit=settings.limit,
                batch_size=settings.batch_size,
                num_fewshot=settings.num_fewshot,
                seed=settings.seed,
                out_dir=settings.out,
                log_samples=settings.log_samples,
                overwrite=settings.overwrite,
            ):
                _print_result(path, record)
    return 0
