"""A run's settings, checked: its data, substrate, stages and global batch, the validation sample, and
the first and deepest stages' models and optimizers built on the meta device. Nothing is written and no
process group starts, so `pgt grow --dry-run` is exactly this."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pgt.errors import PgtError
from pgt.growth import distributed as pdist
from pgt.growth.config import GrowthConfig
from pgt.growth.lineage import check_source_model
from pgt.growth.records import RUN_FILE
from pgt.growth.run_layout import stage_dir
from pgt.growth.schedule import StagePlan, check_budget, plan_stages
from pgt.growth.stage import check_buildable
from pgt.growth.validation import mixture_validation_sample
from pgt.io import refuse_foreign, refuse_overlap
from pgt.model.architecture import check_heads

# Other runs that live inside a run directory by convention (docs/growth.md).
NESTED_DIRS = frozenset({"baselines", "merged"})
SET_ASIDE_DIR = ".overwritten"  # the run an --overwrite replaces, until the new run's first checkpoint
OWN_NEIGHBOURS = NESTED_DIRS | {SET_ASIDE_DIR}  # what a run directory may hold besides the run


def refuse_foreign_run_dir(path: Path) -> None:
    """Refuse a directory that holds something other than a run (nested runs and a set-aside run aside)."""
    refuse_foreign(path, RUN_FILE, what="run directory", ignore=OWN_NEIGHBOURS)


class RunSetup:
    """Every setting of one `pgt grow` invocation, checked, with what training needs from them."""

    def __init__(self, config: GrowthConfig) -> None:
        from pgt.data.mixture import TokenMixture
        from pgt.substrate.store import Substrate

        config.validate()
        self.config = config
        self.run_dir = Path(config.out)
        self.data = TokenMixture(config.data)
        refuse_overlap(self.run_dir, [config.substrate, *self.data.paths, *filter(None, [config.from_model])])
        refuse_foreign_run_dir(self.run_dir)
        self.ctx = pdist.describe_launch(config.device)
        self.substrate = Substrate.load(config.substrate)
        self._check_shape()
        self.data.check_tokenizer(self.substrate.fingerprint)
        self.data_fingerprint = self.data.fingerprint()
        self.lineage = check_source_model(config.from_model, self.substrate, config) if config.from_model else None
        self.plans = plan_stages(config, start=self.lineage.blocks if self.lineage else 0)
        self.tokens_per_step = config.batch_size * config.grad_accum * config.seq_len * self.ctx.world_size
        self.data.train_batch(0, config.batch_size, config.seq_len, seed=config.seed)  # enough training text?
        check_budget(
            config.tokens_per_stage,
            self.tokens_per_step,
            "--tokens-per-stage",
            f"--batch-size {config.batch_size} x --grad-accum {config.grad_accum} x --seq-len "
            f"{config.seq_len} x {self.ctx.world_size} process(es)",
        )
        self.sample = mixture_validation_sample(self.data, config.eval_tokens)
        check_buildable(
            config,
            self.substrate,
            dataclasses.replace(self.plans[0], fresh=True, frozen_blocks=0, lora_blocks=range(0)),
            self.ctx.device,
        )
        # The deepest model the run makes, as one fresh N-block stage: the size it must fit in.
        self.final_parameters = check_buildable(
            config,
            self.substrate,
            StagePlan(stage=self.plans[-1].stage, tokens=self.plans[-1].tokens, fresh=True),
            self.ctx.device,
        )

    def _check_shape(self) -> None:
        """Heads that split the substrate's width into even head dimensions; a preset's width and vocabulary."""
        config, dim = self.config, self.substrate.dim
        check_heads(dim, config.heads)
        if config.preset:
            from pgt.model.presets import get_preset

            preset = get_preset(config.preset)
            if (preset.hidden_size, preset.vocab_size) != (dim, self.substrate.vocab_size):
                raise PgtError(
                    f"--preset {preset.name} is {preset.hidden_size} wide over {preset.vocab_size:,} ids, but the "
                    f"substrate {config.substrate} is {dim} wide over {self.substrate.vocab_size:,}; build a "
                    f"{preset.family} substrate with --dim {preset.hidden_size}"
                )

    def below(self, plan: StagePlan) -> Path | None:
        """The saved model a growth stage stacks its block on: the stage below, or the `--from` model."""
        if plan.fresh:
            return None
        if self.lineage and self.lineage.blocks == plan.stage - 1:
            return Path(self.lineage.path)
        return stage_dir(self.run_dir, plan.stage - 1)


__all__ = ["NESTED_DIRS", "OWN_NEIGHBOURS", "SET_ASIDE_DIR", "RunSetup", "refuse_foreign_run_dir"]
