"""Evaluation results on disk: `MODEL_DIR/eval/<task>.json`, written atomically.

Every file holds `task`, `protocol` (how the figure was measured), `model_fingerprint`
(the substrate fingerprint from config.json and a SHA-256 of the weights),
`n_examples`, `metrics` (`{name: {mean, std, ci95, per_run}}`, accuracies and BLEU
in percent), `primary_metric`, `runs`, `runs_identical`, `created` and `pgt_version`.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgt import __version__
from pgt.io import read_json, write_json

WEIGHT_PATTERNS = ("*.safetensors",)
RESULTS_DIRNAME = "eval"


def model_fingerprint(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Identify a saved model: its substrate fingerprint and a hash over its weight files."""
    model_dir = Path(model_dir)
    config = read_json(model_dir / "config.json", "model config")
    digest = hashlib.sha256()
    files = sorted(p for pattern in WEIGHT_PATTERNS for p in model_dir.glob(pattern))
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return {
        "substrate_fingerprint": config.get("substrate_fingerprint"),
        "weights_sha256": digest.hexdigest() if files else None,
        "model_type": config.get("model_type"),
    }


def results_path(model_dir: str | os.PathLike, task: str, out_dir: str | os.PathLike | None = None) -> Path:
    """`MODEL_DIR/eval/<task>.json` (or `out_dir/<task>.json`); characters unsafe in file names become `-`."""
    directory = Path(out_dir) if out_dir is not None else Path(model_dir) / RESULTS_DIRNAME
    return directory / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', task)}.json"


def write_results(path: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Stamp `record` (in place) with the creation time and pgt version and write it atomically to `path`."""
    record.update(created=datetime.now(UTC).isoformat(timespec="seconds"), pgt_version=__version__)
    write_json(path, record)
    return Path(path)
