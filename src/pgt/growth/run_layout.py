"""Where a growth run keeps its models: `RUN_DIR/stage-K`, named and parsed here only."""

from __future__ import annotations

import os
import re
from pathlib import Path

STAGE_PREFIX = "stage-"
_STAGE_NAME = re.compile(rf"{STAGE_PREFIX}(\d+)")


def stage_dir(run_dir: str | os.PathLike, stage: int) -> Path:
    """The directory of stage `stage`'s model in `run_dir`."""
    return Path(run_dir) / f"{STAGE_PREFIX}{stage}"


def stage_number(path: str | os.PathLike) -> int | None:
    """K of a `stage-K` directory, or None for any other name."""
    match = _STAGE_NAME.fullmatch(Path(path).name)
    return int(match[1]) if match else None


def stage_dirs(run_dir: str | os.PathLike) -> list[Path]:
    """A run's stage directories (`stage-K`), in depth order."""
    found = [
        (stage, path)
        for path in Path(run_dir).glob(f"{STAGE_PREFIX}*")
        if (stage := stage_number(path)) is not None and path.is_dir()
    ]
    return [path for _, path in sorted(found)]
