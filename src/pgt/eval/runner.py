"""Evaluate a loaded model on one task and write `MODEL_DIR/eval/<task>.json`.

This is what `pgt eval` calls once per `--task`; other code (the demo, the growth
trainer) can call `evaluate_to_file` directly with a model already in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgt.errors import PgtError
from pgt.eval import protocol
from pgt.eval.results import model_fingerprint, results_path, write_results
from pgt.eval.tasks import PERPLEXITY_TASKS, get_task
from pgt.io import read_json

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_HELD_OUT = "default"


def pick_device(requested: str | None) -> str:
    """The requested device, or cuda when there is one, else cpu."""
    import torch

    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_for_eval(
    model_dir: str | os.PathLike, dtype: str = "float32", device: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a pgt model (with its fingerprint checks) or any HF causal LM, in eval mode."""
    import torch

    model_dir = Path(model_dir)
    config = read_json(model_dir / "config.json", "model config")
    torch_dtype, target = getattr(torch, dtype), pick_device(device)
    if str(config.get("model_type", "")).startswith("pgt"):
        from pgt.model import load_model

        model, tokenizer = load_model(model_dir, dtype=torch_dtype, device=target)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(model_dir)
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype).to(target)
        except (OSError, ValueError) as exc:
            raise PgtError(f"cannot load {model_dir} as a causal LM: {str(exc).splitlines()[0]}") from None
    model.eval()
    return model, tokenizer


def held_out_texts(data: str | None, split: str | None = None) -> Iterator[str]:
    """Documents to score for perplexity.

    `data` is any corpus source `pgt data prepare` accepts (text, fortune, JSONL or parquet
    files, directories, saved or hub datasets). Without `split` it is scored whole; with
    `split` (train/validation) only the documents `pgt data prepare` puts into that split.
    Without `data`, the validation documents of the embedded default corpus are scored.
    """
    from pgt.data.manifest import is_token_data
    from pgt.data.prepare import split_documents

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
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: str, data: str | None, split: str | None,
    limit: int | None, batch_size: int,
) -> dict[str, Any]:
    from itertools import islice

    from pgt.eval.perplexity import score_texts

    texts = list(islice(held_out_texts(data, split), limit))
    score = score_texts(model, tokenizer, texts, batch_size=batch_size)
    values = {"perplexity": score.perplexity, "bpb": score.bits_per_byte, "loss": score.nats_per_token}
    primary = "bpb" if task == "bpb" else "perplexity"
    return {
        "task": task,
        "protocol": {
            "kind": "perplexity",
            "data": data or DEFAULT_HELD_OUT,
            "split": split or ("validation" if data is None else "all documents"),
            "windows": "context-length windows advancing by half the context; each token scored once",
            "limit": limit,
        },
        "n_examples": score.n_documents,
        "n_tokens": score.n_tokens,
        "n_bytes": score.n_bytes,
        "metric": primary,
        "unit": {"perplexity": "perplexity", "bpb": "bits per UTF-8 byte"}[primary],
        # Flat: `mean` etc. describe the primary metric; bpb/perplexity/loss are always present.
        "metrics": {**protocol.summarize([values[primary]]), **values},
        "runs": 1,
        "runs_identical": True,
    }


def _task_record(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task_name: str, *, data: str | None,
    split: str | None, mode: protocol.Mode, runs: int, limit: int | None, seed: int, batch_size: int,
) -> dict[str, Any]:
    from pgt.eval.datasets_io import load_task_data

    task = get_task(task_name)
    loaded = load_task_data(task, data, split)
    outcome = protocol.evaluate_task(
        model, tokenizer, task, loaded.examples, mode=mode, runs=runs, limit=limit, seed=seed, batch_size=batch_size
    )
    primary = outcome.metrics[outcome.primary_metric]
    others = {name: values for name, values in outcome.metrics.items() if name != outcome.primary_metric}
    return {
        # The reference protocol keeps the task's name; log-likelihood results are a different measurement.
        "task": task.name if mode == "generate" else f"{task.name}-loglik",
        "protocol": {
            "kind": "reference" if mode == "generate" else "loglik",
            "mode": mode,
            "prompt_template": task.template,
            "new_tokens": task.new_tokens_doc if mode == "generate" else None,
            "decoding": "greedy" if mode == "generate" else None,
            "scoring": task.scoring if mode == "generate" else "most probable option continuation",
            "runs": runs,
            "limit": limit,
            "seed": seed,
            "run_definition": "each run scores a random subset of `limit` examples drawn with seed+run; "
            "without a limit every run is the whole split and greedy runs are identical (std 0)",
            "prompt_truncation": "prompts longer than the context lose their beginning (left truncation)",
            "notes": list(task.notes),
        },
        "dataset": {"source": loaded.source, "split": loaded.split, "n_rows": loaded.n_rows,
                    "n_usable": len(loaded.examples)},
        "n_examples": outcome.n_examples,
        "n_evaluated": outcome.n_evaluated,
        "n_truncated_prompts": outcome.n_truncated,
        "metric": outcome.primary_metric,
        "unit": "percent",
        "metrics": primary,
        "other_metrics": others,
        "runs": runs,
        "runs_identical": outcome.runs_identical,
        **outcome.extra,
    }


def evaluate_to_file(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    model_dir: str | os.PathLike,
    task_name: str,
    *,
    data: str | None = None,
    split: str | None = None,
    mode: protocol.Mode = "generate",
    runs: int = 10,
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    out_dir: str | os.PathLike | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Evaluate `model` (saved in `model_dir`) on `task_name`; write and return the results.

    The file is `MODEL_DIR/eval/<task>.json`, or `out_dir/<task>.json`.
    """
    model.eval()
    if task_name in PERPLEXITY_TASKS:
        record = _perplexity_record(model, tokenizer, task_name, data, split, limit, batch_size)
    else:
        record = _task_record(
            model, tokenizer, task_name, data=data, split=split, mode=mode, runs=runs, limit=limit, seed=seed,
            batch_size=batch_size,
        )
    record["model_fingerprint"] = model_fingerprint(model_dir)
    record["model_dir"] = str(Path(model_dir).resolve())
    path = write_results(results_path(model_dir, record["task"], out_dir), record)
    return path, record
