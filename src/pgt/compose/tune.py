"""`pgt tune`: train a merged model (`pgt merge`) on token data, from the merge's own starting loss.

By default only the logit adapter of a `pgt merge --mode adapter` model trains (the experts
stay as they are); `full=True` trains the whole merged model except the frozen substrate
embedding (for a `--mode mean` merge too). The learning rate warms up linearly and decays
by a cosine as `pgt grow`'s does. The validation loss (nats per token) on the same fixed
validation sample the trainer scores (whole documents spread over the data's validation
split, `pgt.growth.validation`) is measured before the first step (the merge's starting
loss) and every `eval_every` steps; the curve, with the training loss of every step, is
saved as `tune.json` beside the tuned model, which is a normal merged-model directory that
loads with `pgt.model.load_model`.
The data may be a weighted mixture (`--data NAME=DIR:WEIGHT`, repeated; pgt.data.mixture),
drawn exactly as `pgt grow` draws it; `tune.json` then records the tokens drawn per source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pgt import options
from pgt.errors import PgtError, SettingError
from pgt.growth.records import MixtureDraw
from pgt.records import Record
from pgt.settings import check_settings, setting

if TYPE_CHECKING:
    from pgt.data.mixture import TokenMixture

TUNE_FILE = "tune.json"


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
    device: str = setting(options.DEVICE_AUTO, "auto (CUDA when available), cpu, cuda, cuda:1 …")
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

    from pgt.growth.records import mixture_draws
    from pgt.growth.schedule import check_budget, lr_at
    from pgt.growth.stage import causal_lm_loss
    from pgt.growth.validation import (
        decoder,
        mixture_validation_sample,
        score_documents,
    )
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
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    steps = max(1, math.ceil(config.tokens / tokens_per_step))
    eval_every = config.eval_every or max(1, steps // 8)
    sample = mixture_validation_sample(data, config.eval_tokens)

    @torch.no_grad()
    def val_loss() -> float:
        model.eval()
        score = score_documents(
            lambda ids: model(input_ids=ids, use_cache=False).logits,
            sample.documents,
            decoder(tokenizer),
            context=config.seq_len + 1,
            bos_id=tokenizer.bos_token_id,
            pad_id=data.eos_id,
            device=device,
            batch_size=config.batch_size,
        )
        model.train()
        return score.nats_per_token

    from tqdm.auto import tqdm

    curve = [TunePoint(0, 0, None, val_loss())]
    drawn = dict.fromkeys(data.names, 0)
    model.train()
    for step in tqdm(range(steps), desc="tune", disable=not config.progress):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, config)
        batch = data.train_batch(step, config.batch_size, config.seq_len, seed=config.seed).to(device)
        for name, rows in zip(data.names, data.rows_per_source(step, config.batch_size, seed=config.seed), strict=True):
            drawn[name] += rows * config.seq_len
        loss = causal_lm_loss(model, batch)
        if not torch.isfinite(loss):
            raise PgtError(f"step {step + 1}: the loss became non-finite ({float(loss)}); lower --lr and rerun")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        evaluated = val_loss() if done % eval_every == 0 or done == steps else None
        curve.append(TunePoint(done, done * tokens_per_step, float(loss.detach()), evaluated))
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
