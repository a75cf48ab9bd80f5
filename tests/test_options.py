"""The shared CLI convention: numeric flags refuse non-finite and out-of-range values at parse time."""

from __future__ import annotations

import argparse

import pytest

from pgt.errors import PgtError
from pgt.options import fraction, non_negative_float, positive_float, positive_int, resolve_device


@pytest.mark.parametrize("text", ["inf", "nan", "-1", "0", "abc"])
def test_positive_float_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        positive_float(text)


def test_numbers_accept_valid_values() -> None:
    assert positive_float("8e-3") == 0.008
    assert non_negative_float("0") == 0.0
    assert positive_int("3") == 3
    assert fraction("0.95") == 0.95
    with pytest.raises(argparse.ArgumentTypeError):
        fraction("1.5")
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int("-3")


def test_cuda_without_cuda_is_one_line() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(PgtError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(PgtError, match="unknown device"):
        resolve_device("tpu9")
