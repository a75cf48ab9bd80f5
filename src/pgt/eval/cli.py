"""`pgt eval` (reference protocol, log-likelihood, your own multiple-choice files, perplexity,
lm-evaluation-harness) and the registration of `pgt report`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from pgt import options
from pgt.errors import PgtError
from pgt.eval import batching
from pgt.eval import report as report_module
from pgt.eval.generation import DEFAULT_DECODING, SAMPLERS
from pgt.eval.harness import harness_paths, run_harness
from pgt.eval.results import RESULTS_DIRNAME, EvalRecord, refuse_existing_result
from pgt.eval.runner import evaluate_to_file, load_for_eval, planned_path, resolve_task
from pgt.eval.tasks import MC_TASK, PERPLEXITY_TASKS
from pgt.io import check_writable
from pgt.model.cli import add_attn_implementation

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


def _add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model_dirs",
        metavar="MODEL_DIR",
        nargs="+",
        help="saved model directories (pgt or any HF causal LM), e.g. runs/grow/stage-*",
    )
    parser.add_argument("--task", action="append", default=[], metavar="TASK", help="task to run (repeatable)")
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="PATH",
        help="dataset of the --task at the same position: a file (.jsonl/.json/.parquet/.csv), "
        "a directory, or hf:NAME[:CONFIG]; give none (hub defaults) or one per --task",
    )
    parser.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="NAME",
        help="name of each --task mc, in order (names its results file)",
    )
    parser.add_argument("--hub-split", metavar="SPLIT", help="dataset split (default: the task's own, e.g. validation)")
    parser.add_argument(
        "--split",
        choices=("train", "validation"),
        help="perplexity/bpb: score only pgt's train or validation documents of --data",
    )
    parser.add_argument(
        "--protocol",
        choices=("reference", "loglik"),
        default="reference",
        help="reference: generated answers as the reference scores them (default); loglik: the most probable option",
    )
    parser.add_argument(
        "--decoding",
        choices=tuple(SAMPLERS),
        default=DEFAULT_DECODING,
        help="sample: temperature-1 sampling (default, the reference's likeliest sampler); "
        "card: the model card's temperature 0.8, top-k 50, top-p 0.95; greedy: deterministic",
    )
    parser.add_argument(
        "--temperature", type=options.positive_float, help="sampling temperature (overrides --decoding's)"
    )
    parser.add_argument("--runs", type=options.positive_int, help="runs over the one fixed list (default 10)")
    parser.add_argument(
        "--limit",
        type=options.positive_int,
        help="examples in the list (default: the reference's size) / held-out documents",
    )
    parser.add_argument(
        "--seed", type=options.seed, default=0, help="seed of the list's shuffle and of the samples (default 0)"
    )
    parser.add_argument(
        "--batch-size", type=options.positive_int, default=8, help="prompts per forward pass (default 8)"
    )
    options.add_dtype(parser)
    options.add_device(parser)
    add_attn_implementation(parser)
    options.add_out(parser, "write results to DIR/<task>--<dataset>.json instead of MODEL_DIR/eval/", required=False)
    parser.add_argument(
        "--log-samples",
        action="store_true",
        help="also write every example (prompt, continuation or option log-likelihoods, answer, "
        "correctness; for perplexity/bpb each document's index, tokens, bytes and nats) "
        "to <results>.samples.jsonl",
    )
    options.add_progress(parser)
    parser.add_argument("--harness", metavar="TASKS", help="run lm-evaluation-harness tasks (comma-separated)")
    parser.add_argument("--include-path", metavar="DIR", help="extra lm-eval task YAMLs (with --harness)")
    parser.add_argument("--num-fewshot", type=options.non_negative_int, help="few-shot examples for --harness tasks")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `pgt eval` and `pgt report`."""
    parser = options.add_command(
        subparsers,
        "eval",
        help="evaluate a model: reference benchmarks, log-likelihood, your own tasks, perplexity, lm-eval",
        description=DESCRIPTION,
        examples=EXAMPLES,
        handler=run_eval,
    )
    _add_eval_arguments(parser)
    report = options.add_command(
        subparsers, "report", help="one Markdown page with plots for a growth run", handler=report_module.run_report
    )
    report_module.add_arguments(report)  # options, examples and handler live with the report


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


def _jobs(args: argparse.Namespace) -> list[tuple[str, str | None, str | None]]:
    """(task, mc name, data) per --task, checked before any model is loaded."""
    if args.data and len(args.data) != len(args.task):
        raise PgtError(
            f"{len(args.data)} --data for {len(args.task)} --task: give one --data per --task "
            "(in the same order), or none for the tasks' hub datasets"
        )
    n_mc = args.task.count(MC_TASK)
    if len(args.name) != n_mc:
        raise PgtError(f"{len(args.name)} --name for {n_mc} --task mc: name each of your own tasks once, in order")
    names = iter(args.name)
    jobs = []
    for index, task in enumerate(args.task):
        name = next(names) if task == MC_TASK else None
        resolve_task(task, name)  # fail on a typo before loading the model
        jobs.append((task, name, args.data[index] if args.data else None))
    return jobs


def _check(args: argparse.Namespace) -> None:
    if not args.task and not args.harness:
        raise PgtError("nothing to evaluate: give --task TASK (repeatable) and/or --harness TASKS")
    if args.include_path and not args.harness:
        raise PgtError("--include-path is for lm-evaluation-harness tasks: use it with --harness")
    if args.temperature is not None and args.decoding == "greedy":
        raise PgtError("--temperature is for sampling: leave it out with --decoding greedy")
    if len(args.model_dirs) > 1 and args.out:
        raise PgtError("--out holds the results of one model: leave it out to write each MODEL_DIR/eval/")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise PgtError(f"--out {args.out} is a file: give a directory for the results")
    for model_dir in args.model_dirs:
        if not (Path(model_dir) / "config.json").is_file():
            raise PgtError(f"{model_dir} is not a model directory (no config.json)")


def _split(args: argparse.Namespace, task: str) -> str | None:
    """pgt's train/validation split for held-out text; the dataset's own split for every other task."""
    return args.split if task in PERPLEXITY_TASKS else args.hub_split


def run_eval(args: argparse.Namespace) -> int:
    """`pgt eval`: evaluate each --task/--data pair (and/or --harness tasks) and write the results."""
    _check(args)
    jobs = _jobs(args)

    mode = "loglik" if args.protocol == "loglik" else "generate"
    harness_tasks = [t for t in args.harness.split(",") if t] if args.harness else []
    for model_dir in args.model_dirs:  # refuse before any model is loaded or evaluated
        paths = [
            planned_path(model_dir, task, name=name, data=data, split=_split(args, task), mode=mode, out_dir=args.out)
            for task, name, data in jobs
        ]
        if args.harness:
            paths += harness_paths(model_dir, harness_tasks, include_path=args.include_path, out_dir=args.out)
        for path in paths:
            refuse_existing_result(path, overwrite=args.overwrite)
        check_writable(Path(args.out) if args.out else Path(model_dir) / RESULTS_DIRNAME)

    batching.set_progress(options.show_progress(args))
    sampler = SAMPLERS[args.decoding]
    if args.temperature is not None:
        sampler = dataclasses.replace(sampler, temperature=args.temperature)
    for model_dir in args.model_dirs:
        if len(args.model_dirs) > 1:
            print(f"{model_dir}:")
        model, tokenizer = load_for_eval(model_dir, args.dtype, args.device, args.attn_implementation)
        for task, name, data in jobs:
            path, record = evaluate_to_file(
                model,
                tokenizer,
                model_dir,
                task,
                name=name,
                data=data,
                split=_split(args, task),
                mode=mode,
                runs=args.runs,
                limit=args.limit,
                sampler=sampler,
                seed=args.seed,
                batch_size=args.batch_size,
                out_dir=args.out,
                log_samples=args.log_samples,
            )
            _print_result(path, record)
        if args.harness:
            for path, record in run_harness(
                model,
                tokenizer,
                model_dir,
                harness_tasks,
                include_path=args.include_path,
                limit=args.limit,
                batch_size=args.batch_size,
                num_fewshot=args.num_fewshot,
                seed=args.seed,
                out_dir=args.out,
                log_samples=args.log_samples,
                overwrite=args.overwrite,
            ):
                _print_result(path, record)
    return 0
