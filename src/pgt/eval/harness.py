"""A thin wrapper over EleutherAI's lm-evaluation-harness for a model already in memory.

`pgt eval MODEL_DIR --harness TASKS` hands the loaded model and tokenizer to
`lm_eval.models.huggingface.HFLM` and runs `lm_eval.simple_evaluate`; each task's
figures are written as `MODEL_DIR/eval/harness-<task>--<dataset>.json`, an `EvalRecord`
like `pgt eval`'s own results (accuracies in percent), with the harness's raw numbers
kept under `details.harness_metrics`. `harness_paths` names those files before any model
is loaded (from the task index: a group or tag stands for its member tasks), so an existing
result is refused up front unless it may be overwritten.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgt.errors import PgtError, one_line
from pgt.eval.protocol import Z_95
from pgt.eval.results import (
    EvalRecord,
    Summary,
    dataset_name,
    model_fingerprint,
    refuse_existing_result,
    result_lock,
    results_path,
    write_results,
)

if TYPE_CHECKING:
    from lm_eval.tasks import TaskManager
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Preferred primary metric of a harness task, in order; fractions among them are shown in percent.
PRIMARY_METRICS = ("acc", "acc_norm", "exact_match", "f1", "bleu", "word_perplexity", "perplexity")
FRACTION_METRICS = {"acc", "acc_norm", "exact_match", "f1", "mcc"}


def _harness_record(
    task: str, figures: dict[str, Any], config: dict[str, Any], model_dir: str | os.PathLike, version: str | None
) -> EvalRecord:
    """Our record for one task of `simple_evaluate`'s `results` section."""
    # Harness keys look like "acc,none" and "acc_stderr,none" (metric, filter).
    values = {
        key.split(",")[0]: value for key, value in figures.items() if "," in key and isinstance(value, int | float)
    }
    names = [name for name in values if not name.endswith("_stderr")]
    if not names:
        raise PgtError(f"lm-evaluation-harness returned no metric for task {task}")

    def summary(name: str) -> Summary:
        scale = 100.0 if name in FRACTION_METRICS else 1.0
        stderr = values.get(f"{name}_stderr")
        stderr = stderr * scale if isinstance(stderr, int | float) else None
        # lm-eval reports a standard error, not a spread over runs: std stays unknown.
        return Summary(
            mean=values[name] * scale,
            std=None,
            ci95=Z_95 * stderr if stderr is not None else None,
            per_run=[values[name] * scale],
        )

    primary = next((name for name in PRIMARY_METRICS if name in values), names[0])
    return EvalRecord(
        task=f"harness-{task}",
        dataset=_harness_dataset(task, config),
        kind="lm-eval",
        metric=primary,
        unit="percent" if primary in FRACTION_METRICS else primary,
        metrics=summary(primary),
        other_metrics={name: summary(name) for name in names if name != primary},
        n_examples=int(figures.get("samples") or config.get("n_samples") or 0),
        runs=1,
        runs_identical=True,
        comparable_to_published=False,
        protocol={
            "harness_task": task,
            "output_type": config.get("output_type"),
            "num_fewshot": config.get("num_fewshot"),
            "prompt_template": config.get("doc_to_text"),
            "lm_eval_version": version,
        },
        data={"source": config.get("dataset_path"), "config": config.get("dataset_name")},
        details={"harness_metrics": values},
        model_dir=str(Path(model_dir).resolve()),
        model_fingerprint=model_fingerprint(model_dir),
    )


LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow")  # lm-eval's `dataset_path` for local files


def _harness_dataset(task: str, config: dict[str, Any]) -> str:
    """The task's dataset name: its hub id, or its first data file for a local builder (`dataset_path: json`)."""
    source = str(config.get("dataset_path") or task)
    if source in LOCAL_BUILDERS:
        files: Any = (config.get("dataset_kwargs") or {}).get("data_files")
        while isinstance(files, dict | list | tuple) and files:
            files = next(iter(files.values())) if isinstance(files, dict) else files[0]
        if isinstance(files, str):
            return dataset_name(files)
    return dataset_name(source + (f":{config['dataset_name']}" if config.get("dataset_name") else ""))


def _sample_line(sample: dict[str, Any]) -> dict[str, Any]:
    """One lm-eval sample as plain JSON (its own keys; request objects become their arguments)."""
    keep = ("doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "acc", "acc_norm", "exact_match")
    return {key: sample[key] for key in keep if key in sample}


@functools.cache
def _task_manager(tasks: tuple[str, ...], include_path: str | None) -> TaskManager:
    """lm-eval's task index with `tasks` checked in it (one-line errors; built once per process: it is slow)."""
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise PgtError("lm-evaluation-harness is not installed: pip install 'pgt[eval]' (or lm-eval)") from None
    if not tasks:
        raise PgtError("--harness needs at least one task name")
    if include_path is not None and not Path(include_path).is_dir():
        raise PgtError(f"--include-path {include_path} is not a directory of task YAML files")
    manager = TaskManager(include_path=include_path)
    unknown = [task for task in tasks if not manager.match_tasks([task])]
    if unknown:
        raise PgtError(
            f"unknown lm-evaluation-harness task(s): {', '.join(unknown)} (add --include-path for local YAMLs)"
        )
    return manager


def _index_configs(manager: TaskManager, name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, YAML config) of `name` and, for a group or tag, of every member (a group's own config is {})."""
    from lm_eval.tasks._index import Kind

    entry = manager.task_index.get(name)
    if entry is None:
        return
    if entry.kind is Kind.TAG:  # a tag's entry lists its member tasks
        for member in sorted(entry.tags):
            yield from _index_configs(manager, member)
    elif entry.kind is Kind.GROUP:
        yield name, {}
        for child in (entry.cfg or {}).get("task") or []:
            if isinstance(child, dict):  # an inline task: its own keys over the named task's
                base = manager.task_index.get(str(child.get("task")))
                yield str(child.get("task")), {**((base.cfg if base else None) or {}), **child}
            else:
                yield from _index_configs(manager, str(child))
    else:
        yield name, dict(entry.cfg or {})


def harness_paths(
    model_dir: str | os.PathLike,
    tasks: Sequence[str],
    *,
    include_path: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
) -> list[Path]:
    """The result files `run_harness` with these tasks writes (known before any model is loaded)."""
    manager = _task_manager(tuple(tasks), str(include_path) if include_path else None)
    return [
        results_path(model_dir, f"harness-{name}", _harness_dataset(name, config), out_dir)
        for task in tasks
        for name, config in _index_configs(manager, task)
    ]


def run_harness(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    model_dir: str | os.PathLike,
    tasks: Sequence[str],
    *,
    include_path: str | os.PathLike | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    num_fewshot: int | None = None,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    log_samples: bool = False,
    overwrite: bool = True,
) -> list[tuple[Path, EvalRecord]]:
    """Run lm-evaluation-harness `tasks` on the model; write and return one result per task.

    Without `overwrite` an existing result of the same task and dataset is an error, before
    evaluating (for the files `harness_paths` names) and again before each write.
    """
    manager = _task_manager(tuple(tasks), str(include_path) if include_path else None)
    if not overwrite:
        for path in harness_paths(model_dir, tasks, include_path=include_path, out_dir=out_dir):
            refuse_existing_result(path, overwrite=False)
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    try:
        output = lm_eval.simple_evaluate(
            model=lm,
            tasks=list(tasks),
            num_fewshot=num_fewshot,
            limit=limit,
            task_manager=manager,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
            log_samples=log_samples,
            bootstrap_iters=1000,
        )
    except (FileNotFoundError, ConnectionError, ValueError) as exc:
        raise PgtError(f"lm-evaluation-harness failed: {type(exc).__name__}: {one_line(exc)}") from None
    if output is None:
        raise PgtError("lm-evaluation-harness returned no results")
    written = []
    for task, figures in output["results"].items():
        config = dict(output.get("configs", {}).get(task, {}))
        config["n_samples"] = output.get("n-samples", {}).get(task, {}).get("effective")
        record = _harness_record(task, figures, config, model_dir, getattr(lm_eval, "__version__", None))
        samples = [_sample_line(s) for s in output.get("samples", {}).get(task, [])] if log_samples else None
        path = results_path(model_dir, record.task, record.dataset, out_dir)
        with result_lock(path, overwrite=overwrite):
            written.append((write_results(path, record, samples), record))
    return written
