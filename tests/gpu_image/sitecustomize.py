"""The GPU machine's image, as far as imports go: `datasets`, `lm_eval` and `vllm` are not installed there,
nor `scipy` and `threadpoolctl` (none of its packages pulls them in).

tests/test_gpu_check.py puts this folder first on PYTHONPATH, so every Python process of the dry run
(and of the import check) starts with these packages looking absent, whatever this machine has: the
path finder does not find them, so `import scipy` fails and `importlib.util.find_spec("scipy")` is None
(which is how transformers asks whether a package is there).
"""

from __future__ import annotations

from importlib.machinery import PathFinder

MISSING = ("datasets", "lm_eval", "vllm", "scipy", "threadpoolctl")


def _hiding(find_spec):  # noqa: ANN001, ANN202
    def find(cls, fullname, path=None, target=None):  # noqa: ANN001, ANN202
        return None if fullname.partition(".")[0] in MISSING else find_spec(fullname, path, target)

    return classmethod(find)


if __name__ == "sitecustomize":  # run at start-up; importing this file by another name hides nothing
    PathFinder.find_spec = _hiding(PathFinder.find_spec)
