"""The run directory's lifecycle: lock it, start, resume or recognise a finished run, write `run.json`
and `config.yaml`, and, for --overwrite, set the old run aside until the new one's first checkpoint.

Rank 0 holds `RUN_DIR/.lock` for the whole session and alone writes; every rank reads.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pgt.errors import PgtError
from pgt.growth import checkpoint as ckpt
from pgt.growth import distributed as pdist
from pgt.growth.config import OPTIMIZER_KEYS, config_differences
from pgt.growth.lineage import check_unchanged
from pgt.growth.records import (
    RUN_FILE,
    ConfigChange,
    Halt,
    RunRecord,
    StageRecord,
    mixture_draws,
)
from pgt.growth.run_layout import stage_dirs
from pgt.growth.setup import (
    OWN_NEIGHBOURS,
    SET_ASIDE_DIR,
    RunSetup,
    refuse_foreign_run_dir,
)
from pgt.io import LOCK_FILE, atomic_file, remove_stale_temporaries, run_lock

CONFIG_FILE = "config.yaml"


@dataclass(frozen=True)
class Opening:
    """What the run directory holds for this run: the checkpoint to resume from (None: a fresh start),
    or the same run already finished."""

    resume: ckpt.Checkpoint | None = None
    finished: bool = False


class RunDirectory:
    """`run.json`, `config.yaml`, the lock and the set-aside run of one run directory."""

    def __init__(self, setup: RunSetup, *, overwrite: bool, allow_data_change: bool, probe: Callable[[], None]) -> None:
        self.setup = setup
        self.path = setup.run_dir
        self.ctx = setup.ctx
        self.overwrite = overwrite
        self.allow_data_change = allow_data_change
        self.probe = probe  # a training step of the new settings, before --overwrite removes anything
        self.history: list[ConfigChange] = []  # run.json's config_changes
        self.set_aside: Path | None = None  # the run an --overwrite replaces, until the new one's first checkpoint

    @contextlib.contextmanager
    def session(self) -> Iterator[Opening]:
        """Hold the directory (rank 0 locks it) and open it. On failure, an --overwrite puts the old run back,
        and a first attempt that failed before its first checkpoint leaves nothing that blocks the corrected
        command."""
        created = not self.path.exists()
        started = False  # True once this session's run directory holds work worth keeping
        try:
            with run_lock(self.path) if self.ctx.is_main else contextlib.nullcontext():
                if self.ctx.is_main:  # leftovers of killed writes; safe only under the lock
                    for directory in (self.path, self.path / ckpt.CHECKPOINT_DIR):
                        remove_stale_temporaries(directory)
                    self._recover_set_aside()
                opening = self._open()
                started = opening.finished or opening.resume is not None or not created
                yield opening
        except BaseException:
            if self.set_aside is not None and self.ctx.is_main:
                self._restore_set_aside()
            if (
                created
                and not started
                and self.ctx.is_main
                and self.path.is_dir()
                and not (self.path / ckpt.CHECKPOINT_DIR).exists()
                and not stage_dirs(self.path)
            ):
                shutil.rmtree(self.path, ignore_errors=True)
            raise

    def _open(self) -> Opening:
        run_file = self.path / RUN_FILE
        pdist.barrier(self.ctx)  # rank 0 holds the lock (and has created the directory)
        refuse_foreign_run_dir(self.path)  # again, under the lock
        if run_file.exists() and self.overwrite:
            self.probe()  # a setting that fails only when training fails here, before anything is removed
            pdist.barrier(self.ctx)
            if self.ctx.is_main:
                self._set_aside()
            pdist.barrier(self.ctx)
        if not run_file.exists():
            self.record_config()
            return Opening()
        saved = RunRecord.load(run_file)
        self._check_resumable(saved)
        if saved.finished and saved.config.get("stages") == self.setup.config.stages:
            return Opening(finished=True)
        resume = self._find_checkpoint()
        self._check_same_data(saved, resume)
        self.record_config()  # e.g. a raised stage count, changed optimizer settings, the data's fingerprint
        return Opening(resume=resume)

    def _check_resumable(self, saved: RunRecord) -> None:
        """The same settings as the run on disk, but optimizer/schedule ones after a non-finite stop."""
        setup = self.setup
        differences = config_differences(saved.config, setup.config)
        now = setup.config.to_dict()
        self.history = list(saved.config_changes)
        if saved.halted and differences and set(differences) <= OPTIMIZER_KEYS:
            self.history.append(
                ConfigChange(
                    stage=saved.halted.stage,
                    step=saved.halted.step,
                    reason=f"resumed after a {saved.halted.reason}",
                    changes={k: [saved.config.get(k), now.get(k)] for k in differences},
                )
            )
        elif differences:
            shown = ", ".join(f"{k}: {saved.config.get(k)!r} -> {now.get(k)!r}" for k in differences[:4])
            allowed = (
                "; only optimizer and schedule settings may change when resuming after a non-finite loss"
                if saved.halted
                else ""
            )
            raise PgtError(
                f"{self.path} holds a run with a different configuration ({shown}){allowed}; "
                "rerun with the same settings to resume, or pass --overwrite to discard it"
            )
        if saved.started_from and setup.lineage:
            check_unchanged(saved.started_from, setup.lineage)
        if saved.tokens_per_step != setup.tokens_per_step:
            raise PgtError(
                f"{self.path} was trained with {saved.tokens_per_step} tokens per step "
                f"({saved.world_size} processes); this launch gives {setup.tokens_per_step}. Resume with "
                "the same global batch (batch_size x grad_accum x processes), or pass --overwrite"
            )

    def _check_same_data(self, saved: RunRecord, resume: ckpt.Checkpoint | None) -> None:
        """A resume trains on the data the run trained on: another manifest (the data prepared again) or a
        shard edited in place is refused, or with --allow-data-change recorded in run.json's config_changes."""
        recorded, data = saved.data_fingerprint, self.setup.data
        if recorded is None:  # a run.json written before pgt recorded its data
            return
        if recorded.sha256 != self.setup.data_fingerprint.sha256:
            what = "was prepared again since (its manifest differs)"
        elif changed := data.changed_shards(recorded):
            what = f"changed since: {', '.join(changed[:3])} no longer match their checksums"
        else:
            return
        if not self.allow_data_change:
            raise PgtError(
                f"{self.path} was trained on other data: {', '.join(data.paths)} {what}. Resume "
                "on the data it was trained on, pass --allow-data-change to go on with this data "
                "(run.json and the report record the change), or --overwrite to start again"
            )
        stage, step = (resume.state.stage, resume.state.step) if resume else (self.setup.plans[0].stage, 0)
        self.history.append(
            ConfigChange(
                stage=stage,
                step=step,
                reason=f"the token data {what}",
                changes={"data_fingerprint": [recorded.sha256, self.setup.data_fingerprint.sha256]},
            )
        )
        pdist.say(
            self.ctx,
            f"{self.path}: the token data {what}; going on with it (--allow-data-change), recorded in run.json",
        )

    def _find_checkpoint(self) -> ckpt.Checkpoint | None:
        """The checkpoint to resume from. Never a silent fresh start over trained work: without
        `latest.json`, the newest checkpoint that verifies; without any, an error if stages exist."""
        if ckpt.has_checkpoint(self.path):
            return ckpt.load_checkpoint(self.path)
        found = ckpt.newest_verified_checkpoint(self.path)
        if found is not None:
            if self.ctx.is_main:
                print(
                    f"{self.path}: {ckpt.CHECKPOINT_DIR}/{ckpt.POINTER_FILE} is missing; resuming from the "
                    f"newest checkpoint that verifies, {found.path.name}"
                )
            return found
        trained = [p.name for p in stage_dirs(self.path)]
        checkpoints = self.path / ckpt.CHECKPOINT_DIR
        if trained or (checkpoints.is_dir() and any(checkpoints.iterdir())):
            held = ", ".join(trained) or f"{checkpoints} (none of them verifies)"
            raise PgtError(
                f"{self.path} holds trained work ({held}) but no usable checkpoint to resume from "
                f"({ckpt.CHECKPOINT_DIR}/{ckpt.POINTER_FILE} is missing); {ckpt.START_OVER}"
            )
        return None

    # ------------------------------------------------------------------ --overwrite

    def _own_entries(self) -> list[Path]:
        """What the run itself wrote: all but its lock, the runs nested by convention and a set-aside run."""
        return [path for path in self.path.iterdir() if path.name not in OWN_NEIGHBOURS | {LOCK_FILE}]

    def _set_aside(self) -> None:
        """--overwrite (rank 0): move the old run into RUN_DIR/.overwritten (a rename: no disk space needed).
        It comes back if the new run fails (or is killed) before its first checkpoint and goes at that
        checkpoint, so a full disk or a crash early in the new run loses nothing."""
        aside = self.path / SET_ASIDE_DIR
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir()
        for path in self._own_entries():
            path.rename(aside / path.name)
        self.set_aside = aside

    def _restore_set_aside(self) -> None:
        """The new run wrote no checkpoint: remove what it wrote and put the old run back (rank 0)."""
        aside = self.path / SET_ASIDE_DIR
        for path in self._own_entries():
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        for path in aside.iterdir():
            path.rename(self.path / path.name)
        aside.rmdir()
        self.set_aside = None

    def release_set_aside(self) -> None:
        """The new run has its first checkpoint: the run it replaced goes (rank 0)."""
        if self.set_aside is not None:
            shutil.rmtree(self.set_aside, ignore_errors=True)
            self.set_aside = None

    def _recover_set_aside(self) -> None:
        """A run set aside by an --overwrite that was killed (rank 0, under the lock): back in place when the
        new run got no checkpoint, else removed as the overwrite asked."""
        aside = self.path / SET_ASIDE_DIR
        if not aside.is_dir():
            return
        self.set_aside = aside
        if (self.path / ckpt.CHECKPOINT_DIR).is_dir():
            self.release_set_aside()
        else:
            self._restore_set_aside()
            pdist.say(
                self.ctx, f"{self.path}: an interrupted --overwrite had set the previous run aside; it is back in place"
            )

    # ------------------------------------------------------------------ records

    def record_config(self) -> None:
        """Write run.json (not finished) and config.yaml for the current settings (rank 0)."""
        import yaml

        pdist.barrier(self.ctx)
        if self.ctx.is_main:
            self.path.mkdir(parents=True, exist_ok=True)
            self.write_run_file(finished=False)
            with atomic_file(self.path / CONFIG_FILE, "w", encoding="utf-8") as handle:
                yaml.safe_dump(self.setup.config.to_dict(), handle, sort_keys=True)
        pdist.barrier(self.ctx)

    def write_run_file(
        self, *, finished: bool, stages: list[StageRecord] | None = None, halted: Halt | None = None
    ) -> None:
        """run.json (rank 0): the settings, where the run stands, and its finished stages' records."""
        setup = self.setup
        drawn = {d.name: d.tokens_total for d in stages[-1].mixture or []} if stages else {}
        RunRecord(
            kind=setup.config.kind,
            config=setup.config.to_dict(),
            world_size=self.ctx.world_size,
            tokens_per_step=setup.tokens_per_step,
            stages=[p.stage for p in setup.plans],
            finished=finished,
            results=stages or [],
            halted=halted,
            config_changes=self.history,
            data_fingerprint=setup.data_fingerprint,
            mixture=mixture_draws(setup.data, drawn, drawn),
            started_from=setup.lineage,
        ).save(self.path / RUN_FILE)

    def halt(self, stage: int, step: int, reason: str) -> None:
        """Record in run.json that the run stopped on its own, so a resume may change optimizer settings."""
        if self.ctx.is_main:
            self.write_run_file(finished=False, halted=Halt(reason=reason, stage=stage, step=step))


__all__ = ["CONFIG_FILE", "Opening", "RunDirectory"]
