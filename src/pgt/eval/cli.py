"""`pgt eval` (reference protocol, log-likelihood, perplexity, lm-evaluation-harness) and `pgt report`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pgt.errors import PgtError
from pgt.eval import report as report_module

EVAL_EXAMPLES = """tasks:
  mmlu, arc_easy, arc_challenge, commonsense_qa, boolq, squad_v2   reference protocol (DESIGN.md §7)
  opus100:SRC-TGT (e.g. opus100:en-ru)                             translation, BLEU
  perplexity, bpb                                                  held-out text (both report both)

examples:
  pgt eval runs/demo/stage-2 --task perplexity                     # default corpus, held-out part
  pgt eval runs/grow/stage-* --task arc_easy --data arc_easy.jsonl  # every stage: depth against score
  pgt eval MODEL --task arc_easy --data arc_easy.jsonl --limit 200 --runs 10
  pgt eval MODEL --task mmlu --data hf:cais/mmlu:all --mode loglik
  pgt eval MODEL --harness arc_easy,hellaswag --limit 100
  pgt eval MODEL --harness my_task --include-path tasks/

Results go to MODEL/eval/<task>.json (log-likelihood mode: <task>-loglik.json).
Without --data the task's Hugging Face dataset is downloaded (needs the network or a cache).
"""

DTYPES = ("float32", "bfloat16", "float16")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `pgt eval` and `pgt report`."""
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model: reference benchmarks, log-likelihood, perplexity, lm-evaluation-harness",
        description="Evaluate saved model directories and write MODEL_DIR/eval/<task>.json for each.",
        epilog=EVAL_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model_dirs", metavar="MODEL_DIR", nargs="+",
                        help="saved model directories (pgt or any HF causal LM), e.g. runs/grow/stage-*")
    parser.add_argument("--task", action="append", default=[], metavar="TASK", help="task to run (repeatable)")
    parser.add_argument("--data", help="dataset: a file (.jsonl/.json/.parquet/.csv), a directory, or hf:NAME[:CONFIG]")
    parser.add_argument("--split", help="dataset split (default: the task's own, e.g. validation)")
    parser.add_argument("--mode", choices=("generate", "loglik"), default="generate",
                        help="generate: the reference's greedy protocol; loglik: most probable option")
    parser.add_argument("--runs", type=int, default=10, help="runs to average (default 10)")
    parser.add_argument("--limit", type=int, help="examples per run, drawn at random per run (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of run 0's subset (run r uses seed+r)")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass (default 8)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="weights dtype (default float32)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--out", metavar="DIR", help="write results to DIR/<task>.json instead of MODEL_DIR/eval/")
    parser.add_argument("--harness", metavar="TASKS", help="run lm-evaluation-harness tasks (comma-separated)")
    parser.add_argument("--include-path", metavar="DIR", help="extra lm-eval task YAMLs (with --harness)")
    parser.add_argument("--num-fewshot", type=int, help="few-shot examples for --harness tasks")
    parser.set_defaults(handler=run_eval)

    report = subparsers.add_parser(
        "report",
        help="one Markdown page with plots for a growth run",
        description="Write a Markdown report with PNG plots for a growth run directory.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report_module.add_arguments(report)  # options, examples and handler live with the report


def _print_result(path: Path, record: dict[str, Any]) -> None:
    metrics = record["metrics"]
    spread = "" if record.get("runs_identical") else f" ± {metrics['ci95']:.2f} (σ {metrics['std']:.2f})"
    extra = f" (bpb {metrics['bpb']:.4f})" if "bpb" in metrics and record["metric"] != "bpb" else ""
    print(f"{record['task']}: {record['metric']} {metrics['mean']:.4f}{spread}{extra} "
          f"[{record['n_examples']} examples x {record['runs']} runs] -> {path}")


def _evaluate_model(model_dir: str, args: argparse.Namespace) -> None:
    """Every --task and --harness task of `pgt eval` on one model directory."""
    from pgt.eval.runner import evaluate_to_file, load_for_eval

    model, tokenizer = load_for_eval(model_dir, args.dtype, args.device)
    for name in args.task:
        path, record = evaluate_to_file(
            model, tokenizer, model_dir, name, data=args.data, split=args.split, mode=args.mode,
            runs=args.runs, limit=args.limit, seed=args.seed, batch_size=args.batch_size, out_dir=args.out,
        )
        _print_result(path, record)
        if record.get("n_truncated_prompts"):
            print(f"  note: {record['n_truncated_prompts']} prompts were longer than the context and lost their "
                  "beginning", file=sys.stderr)
    if args.harness:
        from pgt.eval.harness import run_harness

        for path, record in run_harness(
            model, tokenizer, model_dir, [t for t in args.harness.split(",") if t], include_path=args.include_path,
            limit=args.limit, batch_size=args.batch_size, num_fewshot=args.num_fewshot, seed=args.seed,
            out_dir=args.out,
        ):
            _print_result(path, record)


def run_eval(args: argparse.Namespace) -> int:
    """`pgt eval`: evaluate each --task (and/or --harness tasks) and write the results."""
    if not args.task and not args.harness:
        raise PgtError("nothing to evaluate: give --task TASK (repeatable) and/or --harness TASKS")
    if args.include_path and not args.harness:
        raise PgtError("--include-path is for lm-evaluation-harness tasks: use it with --harness")
    if len(args.task) > 1 and args.data:
        raise PgtError("--data names one dataset: evaluate one --task at a time with it")
    if len(args.model_dirs) > 1 and args.out:
        raise PgtError("--out holds the results of one model: leave it out to write each MODEL_DIR/eval/")
    from pgt.eval.tasks import PERPLEXITY_TASKS, get_task

    for name in args.task:  # fail on a typo before loading the model
        if name not in PERPLEXITY_TASKS:
            get_task(name)
    for model_dir in args.model_dirs:
        if len(args.model_dirs) > 1:
            print(f"{model_dir}:")
        _evaluate_model(model_dir, args)
    return 0
