"""`pgt tune`: train a merged model (`pgt merge`) on token data, from the merge's own starting loss.

By default only the logit adapter of a `pgt merge --mode adapter` model trains (the experts
stay as they are); `full=True` trains the whole merged model except the frozen substrate
embedding (for a `--mode mean` merge too).

Tuning runs `pgt grow`'s training loop in one process: each step is the trainer's own
`pgt.growth.step.OptimizerStep` (the learning rate warming up linearly and decaying by a cosine,
`lr_at`; one micro-batch drawn as the trainer draws it; the gradient clipped to norm 1.0; a
non-finite loss or gradient stops the run before the update) with AdamW without weight decay.
The validation loss (nats per token) on the same fixed validation sample the trainer scores
(whole documents spread over the data's validation split, `pgt.growth.validation.score_sample`)
is measured before the first step (the merge's starting loss), whenever the trainer's `Cadence`
says for `eval_every`, and after the last step; the curve, with the training loss of every step,
is saved as `tune.json` beside the tuned model, which is a normal merged-model directory that
loads with `pgt.model.load_model`.
The data may be a weighted mixture (`--data NAME=DIR:WEIGHT`, repeated; pgt.data.mixture),
drawn exactly as `pgt grow` draws it; `tune.json` then records the tokens drawn per source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from pgt import options
from pgt.errors import PgtError, SettingError
from pgt.growth.records import MixtureDraw
from pgt.records import Record
from pgt.settings import check_settings, device_setting, setting

if TYPE_CHECKING:
    from pgt.data.mixture import TokenMixture

TUNE_FILE = "tune.json"
GRAD_CLIP = 1.0  # the gradient norm a step is clipped to


@dataclass
class TuneConfig:
    """Settings of `pgt tune`; each field's help is its option's help (pgt.settings.setting)."""

    tokens: int = setting(help="training tokens", required=True)
    full: bool = setting(False, "train the whole merged model, not only its adapter", switch=True)
    batch_size: int = setting(8, "sequences per step")
    seq_len: int = setting(128, "tokens per sequence")
    lr: float = setting(3e-3, "peak learning rate", parse=options.positive_float)
    warmup_steps: float = setting(0.1, "below 1: a fraction of the steps", parse=options.non_negative_float)
    min_lr_ratio: float = setting(0.1, "cosine floor as a fraction of lr", parse=options.unit_interval)
    eval_every: int = setting(
        0, "steps between validation losses (0: about 8 over the run)", parse=options.non_negative_int
    )
    eval_tokens: int = setting(16_384, "size of the fixed validation sample (whole documents spread over the split)")
    seed: int = setting(0, "data order", parse=options.seed)
    device: str = device_setting()
    progress: bool = setting(False, "progress bar")


@dataclass
class TunePoint(Record):
    WHAT = "tuning curve point"
    step: int
    tokens: int
    train_loss: float | None  # mean training loss of the step (None at step 0)
    val_loss: float | None  # validation loss after the step (None where not evaluated)


@dataclass
class TuneRecord(Record):
    """OUT/tune.json."""

    WHAT = "tuning record"
    merged_from: str
    data: str | list[str]  # a token data directory, or a mixture's NAME=DIR:WEIGHT specs
    trains: str  # "adapter" or "full"
    tokens: int
    steps: int
    trainable_parameters: int
    start_val_loss: float
    end_val_loss: float
    curve: list[TunePoint]
    mixture: list[MixtureDraw] | None = None  # a weighted mixture's sources and the tokens drawn from each


def _trainable(model, full: bool, merged_dir: Path) -> list:
    """Set requires_grad for what trains; return those parameters."""
    embedding = model.get_input_embeddings().weight
    if not full and getattr(model, "adapter", None) is None:
        raise PgtError(
            f"{merged_dir} has no adapter to train (merged with --mode mean, or not a merged model): "
            "merge with `pgt merge --mode adapter` or pass --full"
        )
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    chosen = model.parameters() if full else model.adapter.parameters()
    trainable = [p for p in chosen if p is not embedding]
    for parameter in trainable:
        parameter.requires_grad_(True)
    return trainable


def tune_merged(
    merged_dir: str | Path,
    data: str | Path | list[str],
    out: str | Path,
    config: TuneConfig,
    *,
    overwrite: bool = False,
) -> TuneRecord:
    """Train the merged model in `merged_dir` on `data` (a token data directory, or a mixture's
    NAME=DIR:WEIGHT specs) and save it to `out` (see the module docstring)."""
    from pgt.data.mixture import TokenMixture, normalize_specs
    from pgt.io import output_lock, refuse_existing, refuse_overlap
    from pgt.model.loading import CONFIG_FILE

    merged_dir, out = Path(merged_dir), Path(out)
    check_settings(config)
    specs = normalize_specs(str(data) if isinstance(data, Path) else data)
    mixture = TokenMixture(specs)
    refuse_overlap(out, [merged_dir, *mixture.paths])
    refuse_existing(out, overwrite=overwrite, marker=CONFIG_FILE)
    with output_lock(out):
        return _tune(merged_dir, specs, mixture, out, config, overwrite=overwrite)


def _tune(
    merged_dir: Path, specs: str | list[str], data: TokenMixture, out: Path, config: TuneConfig, *, overwrite: bool
) -> TuneRecord:
    import torch
    from tqdm.auto import tqdm

    from pgt.growth.distributed import DistContext
    from pgt.growth.records import mixture_draws
    from pgt.growth.schedule import Cadence, check_budget
    from pgt.growth.stage import causal_lm_loss
    from pgt.growth.step import OptimizerStep, non_finite_part
    from pgt.growth.validation import mixture_validation_sample, score_sample
    from pgt.io import atomic_dir
    from pgt.model import load_model
    from pgt.model.loading import CONFIG_FILE, save_model, substrate_meta_of
    from pgt.options import resolve_device

    device = resolve_device(config.device)
    tokens_per_step = config.batch_size * config.seq_len
    check_budget(
        config.tokens, tokens_per_step, "--tokens", f"--batch-size {config.batch_size} x --seq-len {config.seq_len}"
    )
    model, tokenizer = load_model(merged_dir, device=device)
    context = model.config.max_position_embeddings
    if config.seq_len > context:  # positions beyond it were never trained (or do not exist)
        raise SettingError("seq_len", f"{config.seq_len} is longer than the model's context of {context} tokens")
    data.check_tokenizer(model.config.substrate_fingerprint)
    trainable = _trainable(model, config.full, merged_dir)
    steps = max(1, math.ceil(config.tokens / tokens_per_step))
    # Every step's training loss goes into the curve; nothing is checkpointed.
    cadence = Cadence(steps, log_every=1, eval_every=config.eval_every or max(1, steps // 8), checkpoint_every=0)
    sample = mixture_validation_sample(data, config.eval_tokens)

    def stop(step: int, loss: float, grad_norm: float) -> NoReturn:
        raise PgtError(
            f"step {step + 1}: {non_finite_part(loss)} became non-finite (loss {loss}, gradient norm {grad_norm}); "
            "lower --lr and rerun"
        )

    optimizer_step = OptimizerStep(
        model=model,
        loss=causal_lm_loss,
        optimizer=torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0),
        trainable=trainable,
        data=data,
        ctx=DistContext.single(device),
        batch_size=config.batch_size,
        seq_len=config.seq_len,
        seed=config.seed,
        total_steps=steps,
        schedule=config,
        grad_clip=GRAD_CLIP,
        on_non_finite=stop,
    )

    def val_loss() -> float:
        score = score_sample(
            model,
            tokenizer,
            sample,
            context=config.seq_len + 1,
            pad_id=data.eos_id,
            device=device,
            batch_size=config.batch_size,
        )
        return score.nats_per_token

    curve = [TunePoint(0, 0, None, val_loss())]
    drawn = dict.fromkeys(data.names, 0)
    for step in tqdm(range(steps), desc="tune", disable=not config.progress):
        result = optimizer_step(step, data_step=step)
        for name, tokens in result.source_tokens.items():
            drawn[name] += tokens
        done = step + 1
        evaluated = val_loss() if cadence.should_evaluate(done) or done == steps else None  # and after the last
        curve.append(TunePoint(done, done * tokens_per_step, result.loss, evaluated))
    model.eval()
    record = TuneRecord(
        str(merged_dir),
        specs,
        "full" if config.full else "adapter",
        steps * tokens_per_step,
        steps,
        sum(p.numel() for p in trainable),
        curve[0].val_loss,
        curve[-1].val_loss,
        curve,
        mixture_draws(data, drawn, drawn),
    )
    with atomic_dir(out, overwrite=overwrite, marker=CONFIG_FILE) as tmp:
        save_model(model.to("cpu"), tokenizer, tmp, substrate_meta=substrate_meta_of(merged_dir), overwrite=True)
        record.save(tmp / TUNE_FILE)
    return record
