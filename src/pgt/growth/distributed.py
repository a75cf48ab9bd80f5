"""torch.distributed plumbing: process group from torchrun's environment, DDP / FSDP2 wrapping,
and full (rank-0, CPU) state dicts for checkpoints that do not depend on the world size.

Under `torchrun --nproc_per_node K` every process runs the same `pgt grow` command; rank 0
alone writes files. Without torchrun's variables the run is a single process and none of
this initialises anything.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from pgt.errors import PgtError
from pgt.growth.checkpoint import START_OVER
from pgt.options import resolve_device


@dataclass
class DistContext:
    """Where this process sits: rank, world size, its device; `is_main` writes the files."""

    rank: int
    world_size: int
    device: torch.device
    distributed: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def single(cls, device: torch.device) -> DistContext:
        """The one process of a run without torchrun."""
        return cls(0, 1, device, distributed=False)


def describe_launch(device_name: str) -> DistContext:
    """This process's place in torchrun's launch (or the single process), from the environment alone:
    nothing is started, so settings can be checked (`--dry-run`) without a process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda" and device.index is None:  # plain `cuda`: this rank's own GPU
        device = torch.device("cuda", local_rank)
    if world_size == 1:
        return DistContext.single(device)
    return DistContext(rank, world_size, device, distributed=True)


def start(ctx: DistContext) -> None:
    """Join torchrun's process group (gloo on CPU, nccl on GPU); nothing for a single process."""
    if not ctx.distributed:
        return
    if ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if ctx.device.type == "cuda" else "gloo",
            device_id=ctx.device if ctx.device.type == "cuda" else None,
        )


def shutdown(ctx: DistContext, *, finished: bool) -> None:
    """Leave the process group. After a finished run every rank first waits for the others (rank 0 writes
    run.json last), so that no rank tears its group down while another still talks to it."""
    if ctx.distributed and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def say(ctx: DistContext, message: str) -> None:
    """A line of the run's log (rank 0), printed even when stdout is a pipe."""
    if ctx.is_main:
        print(message, flush=True)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def wrap_model(model: nn.Module, ctx: DistContext, *, fsdp: bool, bf16: bool) -> nn.Module:
    """DDP (or FSDP2 fully_shard per block, then the root) when distributed; the model itself otherwise.

    FSDP2 works with gloo on CPU too (the tests use it); on GPU it is what lets the 4,096-wide
    presets fit, with bfloat16 parameters in compute and float32 gradient reduction."""
    if fsdp:
        if not ctx.distributed:
            raise PgtError(
                "--fsdp shards over the processes of a torchrun launch (e.g. torchrun --nproc_per_node 8 "
                "-m pgt.cli grow ... --fsdp); a single process has nothing to shard over: drop --fsdp"
            )
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32)
        for block in _unwrap_layers(model):
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        return model
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def _unwrap_layers(model: nn.Module) -> nn.ModuleList:
    for name, module in model.named_modules():
        if name.endswith("model.layers") and isinstance(module, nn.ModuleList):
            return module
    raise PgtError("model has no `model.layers` block list to shard")


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (FSDP2 shards in place, so it is its own module)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


@contextlib.contextmanager
def no_sync(model: nn.Module, skip: bool) -> Iterator[None]:
    """Skip the gradient reduction of a micro-batch's forward + backward (all but the last of an
    accumulation): DDP's no_sync, FSDP2's set_requires_gradient_sync(False); a no-op otherwise."""
    from torch.distributed.fsdp import FSDPModule

    if skip and isinstance(model, torch.nn.parallel.DistributedDataParallel):
        with model.no_sync():
            yield
    elif skip and isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def _options(ctx: DistContext, **kwargs: Any):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # full_state_dict gathers shards; it needs a process group, so only when distributed.
    return StateDictOptions(full_state_dict=ctx.distributed, **kwargs)


def trainable_state(model: nn.Module, ctx: DistContext) -> dict[str, torch.Tensor]:
    """The trainable parameters as full CPU tensors, keyed by their unwrapped names (collective)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_options(ctx, cpu_offload=True, ignore_frozen_params=True))
    trainable = {name for name, p in unwrap(model).named_parameters() if p.requires_grad}
    return {k: v for k, v in state.items() if k in trainable}


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, ctx: DistContext) -> dict[str, Any]:
    """The optimizer state keyed by parameter names, full CPU tensors (collective)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options(ctx, cpu_offload=True))


def load_training_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainable: dict[str, torch.Tensor],
    moments: dict[str, dict[str, torch.Tensor]],
    ctx: DistContext,
) -> None:
    """Load a checkpoint's trainable weights and optimizer moments into the (wrapped) model. The optimizer's
    groups stay as they were built, with this run's settings (they may change after a non-finite stop)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    expected = {name for name, p in unwrap(model).named_parameters() if p.requires_grad}
    if set(trainable) != expected:
        missing, extra = sorted(expected - set(trainable)), sorted(set(trainable) - expected)
        raise PgtError(
            f"checkpoint does not match the model being trained (missing {missing[:3]}, unexpected {extra[:3]}); "
            f"{START_OVER}"
        )
    set_model_state_dict(model, trainable, options=_options(ctx, strict=False))
    # The groups keyed by parameter names, as the loader maps them; local shards only, nothing gathered.
    groups = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=False))["param_groups"]
    set_optimizer_state_dict(
        model, optimizer, {"state": moments, "param_groups": groups}, options=_options(ctx, strict=False)
    )


def full_model_state(model: nn.Module, ctx: DistContext) -> dict[str, torch.Tensor]:
    """Every weight as a full CPU tensor (collective; used to save an FSDP-sharded stage)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options(ctx, cpu_offload=True))


@contextlib.contextmanager
def autocast(device: torch.device, mode: str) -> Iterator[None]:
    """bfloat16 autocast per `mode`; `auto` means bfloat16 on GPU, none on CPU."""
    dtype = torch.bfloat16 if mode == "bf16" else None
    if mode == "auto" and device.type == "cuda":
        dtype = torch.bfloat16
    with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        yield
