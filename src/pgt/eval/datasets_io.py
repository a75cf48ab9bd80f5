"""Loading task data through `datasets`: local files and directories offline, the hub on request.

`--data` accepts a file (`.jsonl`, `.json`, `.parquet`, `.csv`), a directory of
such files, a directory written by `Dataset.save_to_disk`, or `hf:NAME[:CONFIG]`
for the Hugging Face hub. Every failure is a one-line PgtError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgt.data.hub import HF_PREFIX as HUB_PREFIX
from pgt.errors import PgtError
from pgt.eval.tasks import Example, Task

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class TaskData:
    """The examples of a task and where they came from."""

    examples: list[Example]
    source: str
    split: str
    n_rows: int  # rows in the split, before the protocol's filters (e.g. SQuAD answer length)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _pick_split(loaded: Any, split: str, source: str) -> Any:
    """A Dataset from a Dataset or DatasetDict: the requested split, or the only one there is."""
    import datasets

    if isinstance(loaded, datasets.Dataset):
        return loaded
    if split in loaded:
        return loaded[split]
    if len(loaded) == 1:
        return next(iter(loaded.values()))
    raise PgtError(f"{source} has no split {split!r} (splits: {', '.join(loaded)}); choose one with --split")


def _load_hub(spec: str, split: str) -> Any:
    import datasets

    name, _, config = spec.partition(":")
    try:
        return datasets.load_dataset(name, config or None, split=split)
    except Exception as exc:  # datasets raises many types (connection, offline, missing config)
        raise PgtError(
            f"cannot load {name!r} (config {config or 'default'}, split {split}) from the Hugging Face hub "
            f"({_first_line(exc)}); offline, pass local files with --data PATH"
        ) from None


def _load_local(path: Path, split: str) -> Any:
    import datasets

    if not path.exists():
        raise PgtError(f"dataset not found: {path}")
    try:
        if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
            return _pick_split(datasets.load_from_disk(str(path)), split, str(path))
        if path.is_dir():
            # A folder of data files: datasets infers the builder and the splits from the file names.
            return _pick_split(datasets.load_dataset(str(path)), split, str(path))
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise PgtError(f"unsupported dataset file {path} (use {', '.join(FILE_BUILDERS)} or a dataset directory)")
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    except PgtError:
        raise
    except Exception as exc:
        raise PgtError(f"cannot read dataset {path} ({_first_line(exc)})") from None


def load_task_data(task: Task, data: str | os.PathLike | None = None, split: str | None = None) -> TaskData:
    """Load the rows of `task` and turn them into examples.

    `data` is a local path, `hf:NAME[:CONFIG]`, or None for the task's default hub
    dataset (which needs the network or a filled cache). A row without the task's
    fields raises a PgtError naming the fields the task expects.
    """
    split = split or task.split
    if data is None:
        spec = f"{task.hf_path}:{task.hf_config}" if task.hf_config else task.hf_path
        rows, source = _load_hub(spec, split), HUB_PREFIX + spec
    elif str(data).startswith(HUB_PREFIX):
        rows, source = _load_hub(str(data)[len(HUB_PREFIX) :], split), str(data)
    else:
        rows, source = _load_local(Path(data), split), str(data)
    examples: list[Example] = []
    for index, row in enumerate(rows):
        try:
            example = task.build(row)
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise PgtError(
                f"{source}: row {index} does not fit task {task.name} ({_first_line(exc)}); "
                f"expected fields: {task.expected_fields}"
            ) from None
        if example is not None:
            examples.append(example)
    if not examples:
        raise PgtError(f"{source}: no usable examples for task {task.name} (expected fields: {task.expected_fields})")
    return TaskData(examples, source, split, len(rows))
