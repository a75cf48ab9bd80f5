"""The study's training runs: one after another in this process, or `jobs` at a time in worker processes.

A study run is a small model that many threads barely speed up: on two cores, `--jobs 2` (one thread
per run) ran the embeddings family 1.10 times faster than one two-thread process (docs/study.md), and
on a machine with many cores the gain should grow with them. A run's numbers depend on its torch thread
count, not on which process trains it, so `--jobs` changes the wall time, not the results, as
long as the threads per run stay the same. Each worker's runs write their lines to OUT/logs/.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgt.study import adapter
from pgt.study.collect import say


@dataclass(frozen=True)
class RunJob:
    """One `pgt grow` run of the study: what the log calls it, and its GrowthConfig fields."""

    name: str
    settings: dict[str, Any]


class RunPool:
    """Trains lists of runs, `workers` at a time; worker processes start on first use and serve the whole study."""

    def __init__(self, out: Path, workers: int, threads: int | None) -> None:
        self.out, self.workers, self.threads = out, workers, threads
        self.logs = out / "logs"
        self._executor: ProcessPoolExecutor | None = None

    def run(self, jobs: list[RunJob]) -> None:
        """Train every job (a finished run is recognised and kept); a failed run is raised once the runs
        already started have ended, and the runs not yet started are not started."""
        if self.workers == 1:
            for job in jobs:
                say(f"== {job.name} -> {job.settings['out']}")
                adapter.grow(job.settings)
            return
        self.logs.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        futures: dict[Future, RunJob] = {}
        for job in jobs:
            log = self.logs / (Path(job.settings["out"]).relative_to(self.out).as_posix().replace("/", "-") + ".log")
            futures[self._pool().submit(_train, job.settings, str(log))] = job
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = futures[future]
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    wait(pending)
                    raise future.exception()
                say(f"== {job.name} -> {job.settings['out']} ({time.monotonic() - started:.0f} s into this batch)")

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            say(f"== {self.workers} training processes, {self.threads} torch thread(s) each; their lines: {self.logs}/")
            self._executor = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),  # no fork of a process that holds torch threads
                initializer=_start_worker,
                initargs=(self.threads,),
            )
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)
            self._executor = None


def _start_worker(threads: int | None) -> None:
    import torch
    from transformers.utils import logging as hf_logging

    if threads is not None:
        torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()


def _train(settings: dict[str, Any], log: str) -> None:
    with open(log, "a", encoding="utf-8") as handle, contextlib.redirect_stdout(handle):
        with contextlib.redirect_stderr(handle):
            adapter.grow(settings)
