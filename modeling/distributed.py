"""DDP for training under ``torchrun``: the process group, the device, and the few collectives
the loop needs (every rank must stop at the same step and report the same loss)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Dist:
    """Where this process sits in a (possibly one-process) run.

    Attributes:
        rank: global rank.
        world: number of processes.
        local_rank: rank on this machine (selects the CUDA device).
        owns_group: this process created the process group and destroys it at the end.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """True when more than one process trains."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that reports, evaluates and writes files."""
        return self.rank == 0

    def close(self) -> None:
        """Destroy the process group if this process created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(device_str: str) -> Dist:
    """Join the process group when started under torchrun (RANK / WORLD_SIZE in the environment).

    Args:
        device_str: the configured device ("auto", "cpu", "cuda", ...): NCCL on CUDA, else gloo.

    Returns:
        This process's place; a one-process Dist outside torchrun.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    owns = False
    if not dist.is_initialized():
        cuda = device_str.startswith("cuda") or (device_str == "auto" and torch.cuda.is_available())
        dist.init_process_group(backend="nccl" if cuda else "gloo", rank=rank, world_size=world)
        owns = True
    return Dist(rank=rank, world=world, local_rank=local_rank, owns_group=owns)


def resolve_device(device_str: str, ddp: Dist) -> torch.device:
    """The torch device of this process (its local GPU under DDP), made current on CUDA.

    Args:
        device_str: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
        ddp: this process's place.

    Returns:
        The device.
    """
    if device_str == "auto":
        device_str = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_str)
    if device.type == "cuda" and ddp.enabled:
        device = torch.device("cuda", ddp.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def wrap_ddp(model: nn.Module, ddp: Dist, device: torch.device) -> nn.Module:
    """The model wrapped in DistributedDataParallel under DDP, else the model itself.

    Args:
        model: the (possibly compiled) model.
        ddp: this process's place.
        device: its device.

    Returns:
        The module the loop calls.
    """
    if not ddp.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def agree(flag: bool, ddp: Dist, device: torch.device) -> bool:
    """Rank 0's decision, shared with every rank (so all ranks stop at the same step).

    Args:
        flag: this rank's decision (only rank 0's counts).
        ddp: this process's place.
        device: where the collective's tensor lives.

    Returns:
        Rank 0's flag.
    """
    if not ddp.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def all_reduce_sum(value: float, ddp: Dist, device: torch.device) -> float:
    """The sum of a number over all ranks (in float64).

    Args:
        value: this rank's number.
        ddp: this process's place.
        device: where the collective's tensor lives.

    Returns:
        The sum (the value itself outside DDP).
    """
    if not ddp.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


def barrier(ddp: Dist) -> None:
    """Wait for every rank (a no-op outside DDP).

    Args:
        ddp: this process's place.
    """
    if ddp.enabled:
        dist.barrier()
