"""Loading task data: local files read directly (never the network), the hub on request.

`--data` accepts a file (`.jsonl`, `.json`, `.parquet`, `.csv`), a directory of such
files (the hub's layout: the split is chosen by file name, e.g.
`validation-00000-of-00001.parquet` or `test.jsonl`), a directory written by
`Dataset.save_to_disk`, or `hf:NAME[:CONFIG]` for the Hugging Face hub. Local files
are read with `json` and `pyarrow`, not through `datasets.load_dataset`, so a local
evaluation opens no network connection. `hf:lukaemon/mmlu` without a config reads all
57 subject configs. Hub loads run under `pgt.corpus.hub`'s timeout ($PGT_HUB_TIMEOUT). Every failure is a one-line
PgtError naming the file and, for JSON lines, the line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgt.corpus.hub import hub_spec, is_hub_spec, parse_hub_spec, with_timeout
from pgt.corpus.readers import json_line
from pgt.errors import PgtError, one_line, refuse_surrogates
from pgt.eval.tasks import MMLU_SUBJECTS, Example, Task

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
# Hub datasets whose subjects are separate configs: loaded config by config, each row tagged with it.
SUBJECT_CONFIGS = {"lukaemon/mmlu": MMLU_SUBJECTS}

Row = tuple[str, Any]  # (where it came from, e.g. "file.jsonl:3", the row)


@dataclass(frozen=True)
class TaskData:
    """The examples of a task and where they came from."""

    examples: list[Example]
    source: str
    split: str
    n_rows: int  # rows in the split, before the protocol's filters (e.g. SQuAD answer length)


def _read_jsonl(path: Path) -> Iterator[Row]:
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    yield f"{path}:{number}", json_line(line, f"{path}:{number}")
    except UnicodeDecodeError as exc:
        raise PgtError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _read_json(path: Path) -> Iterator[Row]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PgtError(f"{path}: not a JSON file ({one_line(exc)})") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"data": [...]}
    if not isinstance(data, list):
        raise PgtError(f"{path}: expected a JSON list of rows (or JSON lines in a .jsonl file)")
    for index, row in enumerate(data):
        yield f"{path} row {index}", row


def _read_table(path: Path) -> Iterator[Row]:
    import pyarrow.csv
    import pyarrow.parquet

    try:
        table = pyarrow.parquet.read_table(path) if path.suffix == ".parquet" else pyarrow.csv.read_csv(path)
    except (OSError, pyarrow.ArrowException) as exc:
        raise PgtError(f"cannot read dataset {path} ({one_line(exc)})") from None
    for index, row in enumerate(table.to_pylist()):
        yield f"{path} row {index}", row


def read_rows(path: Path) -> list[Row]:
    """Every row of one local data file (one-line errors with the file and line)."""
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise PgtError(f"unsupported dataset file {path} (use {', '.join(FILE_SUFFIXES)} or a dataset directory)")
    reader = {".jsonl": _read_jsonl, ".json": _read_json}.get(suffix, _read_table)
    rows = [(where, refuse_surrogates(row, where)) for where, row in reader(path)]
    if not rows:
        raise PgtError(f"{path}: no rows (the file is empty)")
    return rows


def _split_files(directory: Path, split: str) -> list[Path]:
    """The data files of `split` in a folder (by file name), or all of them when none is named after a split."""
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in FILE_SUFFIXES)
    if not files:
        raise PgtError(f"{directory} holds no data files ({', '.join(FILE_SUFFIXES)})")
    named: dict[str, list[Path]] = {}
    for path in files:
        for name in ("train", "validation", "test", "dev"):
            if path.name.startswith(name):
                named.setdefault(name, []).append(path)
    if not named:
        return files
    if split not in named:
        raise PgtError(f"{directory} has no split {split!r} (splits: {', '.join(named)}); choose one with --split")
    return named[split]


def _load_saved(path: Path, split: str) -> list[Row]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises many types for a damaged directory
        raise PgtError(f"cannot read dataset {path} ({one_line(exc)})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split in loaded:
            loaded = loaded[split]
        elif len(loaded) == 1:
            loaded = next(iter(loaded.values()))
        else:
            raise PgtError(f"{path} has no split {split!r} (splits: {', '.join(loaded)}); choose one with --split")
    return [(f"{path} row {index}", row) for index, row in enumerate(loaded)]


def _load_local(path: Path, split: str) -> list[Row]:
    if not path.exists():
        raise PgtError(f"dataset not found: {path}")
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        return _load_saved(path, split)
    if path.is_dir():
        return [row for file in _split_files(path, split) for row in read_rows(file)]
    return read_rows(path)


def _load_hub(spec: str, split: str) -> list[Row]:
    """The rows of `hf:NAME[:CONFIG]`'s split (without a CONFIG, all of a subject-config dataset's)."""
    name, config = parse_hub_spec(spec)
    configs = [config] if config else list(SUBJECT_CONFIGS.get(name, [None]))  # type: ignore[list-item]

    def load() -> Iterator[Row]:
        import datasets

        for one in configs:
            table = datasets.load_dataset(name, one, split=split)
            tag = {"subject": one} if name in SUBJECT_CONFIGS else {}
            where = hub_spec(name, one or "default")
            yield from ((f"{where} row {i}", {**row, **tag}) for i, row in enumerate(table))

    try:
        return list(with_timeout(load, f"loading {name!r}"))
    except PgtError:
        raise
    except Exception as exc:  # datasets raises many types (connection, offline, missing config)
        raise PgtError(
            f"cannot load {name!r} (config {config or 'default'}, split {split}) from the Hugging Face hub "
            f"({one_line(exc)}); offline, pass local files with --data PATH"
        ) from None


def load_task_data(task: Task, data: str | os.PathLike | None = None, split: str | None = None) -> TaskData:
    """Load the rows of `task` and turn them into examples.

    `data` is a local path, `hf:NAME[:CONFIG]`, or None for the task's default hub
    dataset (which needs the network or a filled cache). A row without the task's
    fields raises a PgtError naming where the row is and the fields the task expects.
    """
    split = split or task.split
    if data is None:
        if task.hf_path is None:
            raise PgtError(f"task {task.name} has no default dataset: give --data FILE")
        source = hub_spec(task.hf_path, task.hf_config)
        rows = _load_hub(source, split)
    elif is_hub_spec(str(data)):
        rows, source = _load_hub(str(data), split), str(data)
    else:
        rows, source = _load_local(Path(data), split), str(data)
    examples: list[Example] = []
    for where, row in rows:
        if not isinstance(row, dict):
            raise PgtError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
        try:
            example = task.build(row)
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise PgtError(
                f"{where}: row does not fit task {task.name} ({detail}); expected fields: {task.expected_fields}"
            ) from None
        if example is not None:
            examples.append(example)
    if not examples:
        raise PgtError(f"{source}: no usable examples for task {task.name} (expected fields: {task.expected_fields})")
    return TaskData(examples, source, split, len(rows))
