"""The GPU machine's image, as far as imports go: `datasets`, `lm_eval` and `vllm` are not installed there,
nor `scipy` and `threadpoolctl` (none of its packages pulls them in).

tests/test_gpu_check.py puts this folder first on PYTHONPATH, so every Python process of the dry run
(and of the import check) starts with these packages unimportable, whatever this machine has.
"""

from __future__ import annotations

import importlib.abc
import sys

MISSING = ("datasets", "lm_eval", "vllm", "scipy", "threadpoolctl")


class _Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] in MISSING:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden: not on the GPU image)", name=name)
        return None


if __name__ == "sitecustomize":  # run at start-up; importing this file by another name hides nothing
    sys.meta_path.insert(0, _Missing())
