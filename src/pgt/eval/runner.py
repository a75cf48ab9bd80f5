"""Evaluate a loaded model on one task and dataset and write `MODEL_DIR/eval/<task>--<dataset>.json`.

This is what `pgt eval` calls once per `--task/--data` pair; other code (the demo, the
study, the growth trainer) can call `evaluate_to_file` directly with a model in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgt.corpus.hub import hub_spec
from pgt.data.manifest import is_token_data
from pgt.data.splits import split_documents
from pgt.errors import PgtError, one_line
from pgt.eval import protocol
from pgt.eval.datasets_io import load_task_data
from pgt.eval.generation import DEFAULT_DECODING, SAMPLERS, Sampler
from pgt.eval.perplexity import score_texts
from pgt.eval.results import (
    EvalRecord,
    dataset_name,
    model_fingerprint,
    result_lock,
    results_path,
    write_results,
)
from pgt.eval.tasks import MC_TASK, PERPLEXITY_TASKS, Task, get_task, mc_task
from pgt.io import read_json
from pgt.model import load_model
from pgt.model.loading import refuse_pickle_weights
from pgt.options import resolve_device, torch_dtype

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_HELD_OUT = "default"
# How generation fits long prompts (every generated result records it; docs/evaluation.md).
PROMPT_CROPPING = (
    "as the reference's nanoGPT-style sampler: before every new token the sequence is cropped to its "
    "last context tokens (n_truncated_prompts counts the prompts cropped)"
)


def load_for_eval(
    model_dir: str | os.PathLike, dtype: str = "float32", device: str = "auto", attn_implementation: str = "sdpa"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a pgt model (with its fingerprint checks) or any HF causal LM, in eval mode."""
    model_dir = Path(model_dir)
    target = resolve_device(device)  # before reading anything: `--device cuda` without CUDA is one line
    config = read_json(model_dir / "config.json", "model config")
    if config.get("substrate_fingerprint"):  # a pgt model directory (arcee, or merged experts)
        model, tokenizer = load_model(
            model_dir, dtype=torch_dtype(dtype), device=target, attn_implementation=attn_implementation
        )
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        refuse_pickle_weights(model_dir)
        try:  # never custom code (no prompt either), never the network, never pickle
            tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(
                model_dir,
                dtype=torch_dtype(dtype),
                attn_implementation=attn_implementation,
                use_safetensors=True,
                local_files_only=True,
                trust_remote_code=False,
            ).to(target)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise PgtError(f"cannot load {model_dir} as a causal LM: {one_line(exc)}") from None
    model.eval()
    return model, tokenizer


def held_out_texts(data: str | None, split: str | None = None) -> Iterator[str]:
    """Documents to score for perplexity.

    `data` is any corpus source `pgt data prepare` accepts (text, fortune, JSONL or parquet
    files, directories, saved or hub datasets). Without `split` it is scored whole; with
    `split` (train/validation) only the documents `pgt data prepare` puts into that split.
    Without `data`, the validation documents of the embedded default corpus are scored.
    """
    if data is not None and is_token_data(data):
        raise PgtError(
            f"{data} holds token ids, not text (bits per byte need the text): pass the corpus it was prepared "
            "from with --data SOURCE --split validation"
        )
    if data is None:
        return split_documents([DEFAULT_HELD_OUT], split or "validation")
    if split is None:
        return split_documents([data], "train", val_fraction=0.0)  # nothing held out: every document
    return split_documents([data], split)


def _perplexity_record(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    model_dir: str | os.PathLike,
    task: str,
    data: str | None,
    split: str | None,
    limit: int | None,
    batch_size: int,
) -> tuple[EvalRecord, list[dict[str, Any]]]:
    """The result and, for --log-samples, one line per document (index, tokens, bytes, nats)."""
    texts = list(islice(held_out_texts(data, split), limit))
    score = score_texts(model, tokenizer, texts, batch_size=batch_size)
    values = {
        "perplexity": score.perplexity,
        "bpb": score.bits_per_byte,
        "loss": score.nats_per_token,
        "bz2_bpb": score.bz2_bpb,
        "xz_bpb": score.xz_bpb,
    }  # compressors on the same bytes
    primary = "bpb" if task == "bpb" else "perplexity"
    record = EvalRecord(
        task=task,
        dataset=result_dataset(task, data, split),
        kind="perplexity",
        metric=primary,
        unit={"perplexity": "perplexity", "bpb": "bits per UTF-8 byte"}[primary],
        metrics=protocol.summarize([values[primary]]),
        other_metrics={name: protocol.summarize([value]) for name, value in values.items() if name != primary},
        n_examples=score.n_documents,
        runs=1,
        runs_identical=True,
        comparable_to_published=False,
        protocol={
            "windows": "context-length windows advancing by half the context; each token scored once",
            "limit": limit,
        },
        data={
            "source": data or DEFAULT_HELD_OUT,
            "split": split or ("validation" if data is None else "all documents"),
        },
        details={"n_tokens": score.n_tokens, "n_bytes": score.n_bytes},
        model_dir=str(Path(model_dir).resolve()),
        model_fingerprint=model_fingerprint(model_dir),
    )
    return record, [document.to_json() for document in score.documents]


# Samplers the reference may have used (docs/evaluation.md, "What a run is").
REFERENCE_SAMPLERS = (SAMPLERS["sample"], SAMPLERS["card"])


def comparable_to_published(task: Task, outcome: protocol.TaskOutcome, mode: protocol.Mode, sampler: Sampler) -> bool:
    """A reference benchmark, generated, at its published size over 10 runs, with a sampler the reference may use."""
    return (
        mode == "generate"
        and task.reference_size is not None
        and outcome.n_examples == task.reference_size
        and outcome.runs == protocol.REFERENCE_RUNS
        and sampler in REFERENCE_SAMPLERS
    )


def sampler_name(sampler: Sampler) -> str:
    """`--decoding`'s name of a sampler, or `custom` (e.g. another --temperature)."""
    return next((name for name, preset in SAMPLERS.items() if preset == sampler), "custom")


def _task_record(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    model_dir: str | os.PathLike,
    task: Task,
    *,
    data: str | None,
    split: str | None,
    mode: protocol.Mode,
    runs: int | None,
    limit: int | None,
    sampler: Sampler,
    seed: int,
    batch_size: int,
) -> tuple[EvalRecord, list]:
    loaded = load_task_data(task, data, split)
    if task.scoring == "loglik":
        mode = "loglik"  # a user's own multiple-choice file has no generation protocol
    if limit is None and mode == "generate":
        limit = task.reference_draw  # the reference's published size (SQuAD 256, OPUS 128; else all)
    outcome = protocol.evaluate_task(
        model,
        tokenizer,
        task,
        loaded.examples,
        mode=mode,
        runs=runs or protocol.REFERENCE_RUNS,
        limit=limit,
        sampler=sampler,
        seed=seed,
        batch_size=batch_size,
    )
    generated = mode == "generate"
    kind = "mc" if task.scoring == "loglik" else "reference" if generated else "loglik"
    record = EvalRecord(
        # The reference protocol keeps the task's name; log-likelihood results are a different measurement.
        task=result_task(task, mode),
        dataset=dataset_name(loaded.source),
        kind=kind,
        metric=outcome.primary_metric,
        unit="percent" if task.metric == "accuracy" or not generated else "BLEU (0-100)",
        metrics=outcome.metrics[outcome.primary_metric],
        other_metrics={name: s for name, s in outcome.metrics.items() if name != outcome.primary_metric},
        n_examples=outcome.n_examples,
        runs=outcome.runs,
        runs_identical=outcome.runs_identical,
        comparable_to_published=comparable_to_published(task, outcome, mode, sampler),
        protocol={
            "prompt_template": task.template,
            "new_tokens": task.new_tokens_doc if generated else None,
            "decoding": sampler.describe() if generated else None,
            "decoding_choice": sampler_name(sampler) if generated else None,
            "scoring": task.scoring
            if generated
            else "most probable option continuation "
            "(accuracy_text, acc_norm: lm-evaluation-harness 0.4's acc and acc_norm)",
            "limit": limit,
            "seed": seed,
            "run_definition": "one list shuffled once with the seed, the same in every run; runs differ by "
            "their sampled continuations (greedy: identical runs, σ 0)"
            if generated
            else "deterministic",
            "prompt_truncation": PROMPT_CROPPING
            if generated
            else "lm-evaluation-harness's window: the last context+1 ids, the last one not fed",
            "reference_size": task.reference_size,
            "notes": list(task.notes),
        },
        data={
            "source": loaded.source,
            "split": loaded.split,
            "n_rows": loaded.n_rows,
            "n_usable": len(loaded.examples),
        },
        chance=outcome.chance,
        n_truncated_prompts=outcome.n_truncated,
        by_group=outcome.by_group,
        details=outcome.details,
        model_dir=str(Path(model_dir).resolve()),
        model_fingerprint=model_fingerprint(model_dir),
    )
    return record, outcome.samples


def result_task(task: Task, mode: protocol.Mode) -> str:
    """The task name in results: the reference protocol and `mc` keep it; log-likelihood results are another
    measurement of the same benchmark (`<task>-loglik`), so they never replace the reference's figure."""
    return task.name if mode == "generate" or task.scoring == "loglik" else f"{task.name}-loglik"


def result_dataset(task_name: str, data: str | None, split: str | None) -> str:
    """The dataset's name in results: the file, folder or hub id (the task's default hub dataset without data)."""
    if task_name in PERPLEXITY_TASKS:
        return dataset_name(data or DEFAULT_HELD_OUT) + (f"-{split}" if split else "")
    if data is None:
        task = get_task(task_name)
        data = hub_spec(task.hf_path, task.hf_config)
    return dataset_name(data)


def planned_path(
    model_dir: str | os.PathLike,
    task_name: str,
    *,
    name: str | None = None,
    data: str | None = None,
    split: str | None = None,
    mode: protocol.Mode = "generate",
    out_dir: str | os.PathLike | None = None,
) -> Path:
    """Where `evaluate_to_file` with these arguments writes its result (known before evaluating)."""
    task = resolve_task(task_name, name)
    shown = task_name if task is None else result_task(task, mode)
    return results_path(model_dir, shown, result_dataset(task_name, data, split), out_dir)


def resolve_task(task_name: str, name: str | None = None) -> Task | None:
    """The task for `--task` (with `--name` for `mc`), or None for the perplexity tasks."""
    if task_name in PERPLEXITY_TASKS:
        return None
    if task_name == MC_TASK and name is not None:
        return mc_task(name)
    return get_task(task_name)


def evaluate_to_file(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    model_dir: str | os.PathLike,
    task_name: str,
    *,
    name: str | None = None,
    data: str | None = None,
    split: str | None = None,
    mode: protocol.Mode = "generate",
    runs: int | None = None,
    limit: int | None = None,
    sampler: Sampler = SAMPLERS[DEFAULT_DECODING],
    seed: int = 0,
    batch_size: int = 8,
    out_dir: str | os.PathLike | None = None,
    log_samples: bool = False,
    overwrite: bool = True,
) -> tuple[Path, EvalRecord]:
    """Evaluate `model` (saved in `model_dir`) on `task_name` and `data`; write and return the result.

    The file is `MODEL_DIR/eval/<task>--<dataset>.json` (or under `out_dir`); with
    `log_samples`, every example's prompt, continuation(s) or option log-likelihoods,
    answer and correctness (for perplexity and bpb: every document's index, tokens, bytes
    and negative log-likelihood in nats) go to `<same name>.samples.jsonl` beside it. Without `overwrite`
    an existing result of the same task and dataset is an error.
    """
    path = planned_path(model_dir, task_name, name=name, data=data, split=split, mode=mode, out_dir=out_dir)
    with result_lock(path, overwrite=overwrite):
        model.eval()
        task = resolve_task(task_name, name)
        if task is None:
            record, samples = _perplexity_record(model, tokenizer, model_dir, task_name, data, split, limit, batch_size)
        else:
            record, samples = _task_record(
                model,
                tokenizer,
                model_dir,
                task,
                data=data,
                split=split,
                mode=mode,
                runs=runs,
                limit=limit,
                sampler=sampler,
                seed=seed,
                batch_size=batch_size,
            )
        return write_results(path, record, samples if log_samples else None), record
