"""The Hugging Face hub behind `hf:NAME[:CONFIG]` sources: the prefix, and an overall timeout on hub reads.

Every pgt command that reads a dataset by name (`pgt data prepare`, `pgt substrate build --corpus`,
`pgt eval --data`) spells it `hf:NAME[:CONFIG]`; only such sources may touch the network.
A hub call behind a dead or stalled connection would otherwise wait for minutes, so reads run
in a helper thread and waiting longer than `hub_timeout_s()` for the next record is a one-line error.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from pgt.errors import PgtError

HF_PREFIX = "hf:"
DEFAULT_HUB_TIMEOUT_S = 120.0
HUB_TIMEOUT_ENV = "PGT_HUB_TIMEOUT"

T = TypeVar("T")


def is_hub_spec(spec: str) -> bool:
    return spec.startswith(HF_PREFIX)


def parse_hub_spec(spec: str) -> tuple[str, str | None]:
    """`hf:NAME[:CONFIG]` -> (NAME, CONFIG or None); a one-line error without a NAME."""
    name, _, config = spec[len(HF_PREFIX) :].partition(":")
    if not name:
        raise PgtError(f"source {spec!r}: expected {HF_PREFIX}NAME or {HF_PREFIX}NAME:CONFIG")
    return name, config or None


def hub_spec(name: str, config: str | None = None) -> str:
    """(NAME, CONFIG or None) -> `hf:NAME[:CONFIG]`, the inverse of parse_hub_spec."""
    return f"{HF_PREFIX}{name}" + (f":{config}" if config else "")


def hub_timeout_s() -> float:
    """Seconds a hub read may wait for its next record: $PGT_HUB_TIMEOUT, else DEFAULT_HUB_TIMEOUT_S."""
    text = os.environ.get(HUB_TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_HUB_TIMEOUT_S
    except ValueError:
        raise PgtError(f"${HUB_TIMEOUT_ENV} must be a number of seconds, not {text!r}") from None
    if not value > 0:
        raise PgtError(f"${HUB_TIMEOUT_ENV} must be positive, not {text!r}")
    return value


_DONE = object()


def with_timeout(make: Callable[[], Iterable[T]], what: str, timeout_s: float | None = None) -> Iterator[T]:
    """The items of `make()`, produced in a daemon thread; no item for `timeout_s` seconds is a PgtError.

    `make` is called in the thread too, so connecting, resolving and downloading all count.
    """
    timeout_s = hub_timeout_s() if timeout_s is None else timeout_s
    items: queue.Queue[Any] = queue.Queue(maxsize=64)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in make():
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(_DONE)
        except BaseException as exc:  # handed to the reader, which raises it
            items.put(exc)

    # A daemon: a thread stuck in a stalled connection must not keep the process alive.
    threading.Thread(target=produce, name="pgt-hub-read", daemon=True).start()
    try:
        while True:
            try:
                item = items.get(timeout=timeout_s)
            except queue.Empty:
                raise PgtError(
                    f"{what}: no data from the Hugging Face hub for {timeout_s:g} s (network down or stalled; "
                    f"set ${HUB_TIMEOUT_ENV} to wait longer, or pass a local copy)"
                ) from None
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
