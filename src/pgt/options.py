"""The one command-line convention every `pgt` command follows, defined once.

- A command is registered with `pgt.settings.add_command(subparsers, name, help=..., examples=[...],
  handler=..., settings=...)`; its handler is `run_<command>(args) -> int` (`run_grow`, `run_data_prepare`).
- The output is `--out`; replacing an existing output is `--overwrite`.
- A substrate (or tokenizer) directory is `--substrate`.
- Progress bars: `--progress/--no-progress` (default: on when stderr is a terminal).
- Weights: `--dtype` from `DTYPES`; device: `--device` (`auto` = CUDA when available).
- Parallel processes: `--workers N` (default: the CPUs this process may use).
- Numbers that must be finite and positive are parsed by `positive_float`/`positive_int`,
  so `--lr inf`, `--temperature nan` or `--workers -3` are refused at parse time; every
  `--seed` is parsed by `seed` (0 … SEED_MAX = 2^32 - 1). These are `Number`s, which also bound
  values that come another way (a config file, Python), by the same rule in the same words.
- Every command declares its settings once, as a dataclass of `setting(...)` fields, from which its
  options, YAML file and one check come (pgt.settings).

torch is imported only inside the functions that need it, so `pgt --help` stays fast.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_DTYPE = "float32"
DEVICE_AUTO = "auto"


def available_cpus() -> int:
    """CPUs this process may run on (the default of every `--workers`)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Number:
    """A number type of the convention: finite, at least `minimum` (above it unless `inclusive`), at most
    `maximum`. Called with command-line text it is an argparse `type`; `problem(value)` judges a value that
    came another way (a config file, Python) by the same rule, in the same words."""

    def __init__(
        self,
        kind: type,
        minimum: float,
        *,
        inclusive: bool = True,
        maximum: float | None = None,
        maximum_text: str | None = None,
    ) -> None:
        self.kind, self.minimum, self.inclusive, self.maximum = kind, minimum, inclusive, maximum
        self.maximum_text = maximum_text or (None if maximum is None else f"{maximum:g}")
        self.__name__ = kind.__name__  # argparse names the type in its messages

    def problem(self, value: float) -> str | None:
        """What is wrong with `value` ("must be …"), or None."""
        if not math.isfinite(value) or value < self.minimum or (value == self.minimum and not self.inclusive):
            return f"must be a finite number {'≥' if self.inclusive else '>'} {self.minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum_text}"
        return None

    def __call__(self, text: str) -> Any:
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {self.kind.__name__}") from None
        problem = self.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{text} {problem}")
        return value


positive_float = Number(float, 0.0, inclusive=False)
non_negative_float = Number(float, 0.0)
positive_int = Number(int, 1)
non_negative_int = Number(int, 0)
fraction = Number(float, 0.0, inclusive=False, maximum=1)  # top-p, split fractions: (0, 1]
unit_interval = Number(float, 0.0, maximum=1)  # [0, 1]

SEED_MAX = 2**32 - 1  # the largest seed every generator pgt seeds (numpy's legacy one, torch's, Python's) takes
# A random seed: an integer in 0 … SEED_MAX.
seed = Number(int, 0, maximum=SEED_MAX, maximum_text=f"{SEED_MAX} (2^32 - 1)")


def text(value: str) -> str:
    """Text for a tokenizer (a prompt, a token): valid UTF-8, so no lone surrogate."""
    from pgt.errors import PgtError, refuse_surrogates

    try:
        return refuse_surrogates(value, "the text")
    except PgtError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def show_progress(args: Any) -> bool:
    """Whether to draw progress bars: the flag (for commands that have it), else whether stderr is a terminal."""
    progress = getattr(args, "progress", None)
    return sys.stderr.isatty() if progress is None else bool(progress)


HUB_PROGRESS_VARIABLE = "HF_HUB_DISABLE_PROGRESS_BARS"  # read by huggingface_hub, transformers and datasets


def quiet_library_progress() -> None:
    """No Hugging Face progress bars (weights written, files fetched) where pgt draws none of its own."""
    os.environ[HUB_PROGRESS_VARIABLE] = "1"
    if "huggingface_hub" in sys.modules:  # imported before: the variable was read already
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def workers(args: Any) -> int:
    return args.workers or available_cpus()


def resolve_device(name: str = DEVICE_AUTO, local_rank: int = 0) -> Any:
    """`auto` → this rank's CUDA device when available, else CPU; an unusable device is a PgtError."""
    import torch

    from pgt.errors import PgtError

    if name in (DEVICE_AUTO, "", None):
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PgtError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PgtError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PgtError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type not in ("cpu", "mps"):
        raise PgtError(f"--device {name}: pgt runs on cpu or cuda")
    return device


def torch_dtype(name: str) -> Any:
    """The torch dtype named by `--dtype`."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
