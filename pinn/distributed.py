r"""Data-parallel training over several processes (``torchrun --nproc_per_node=K train.py``).

Each process (rank) samples its own share of the collocation points from its own random
stream and computes the loss on them; after every backward pass the gradients are averaged
over the ranks with one all-reduce, and so is the loss value, so that every rank takes the
identical optimizer step (including L-BFGS's line-search decisions). With equal shares the
averaged gradient is exactly the gradient of the loss over the union of all ranks' points for
every term that is a mean over its points: the equation's residual and most conditions. It is
not for terms that are not such a mean, which each rank computes on its own points: causal
weights (from each rank's mean residual per time chunk), the cavity's pressure gauge (the
square of a mean), and periodic conditions, whose number of face points may differ by rank.

The gradients are all-reduced here rather than by wrapping the network in
``DistributedDataParallel``: a PINN's loss evaluates the network several times per step (the
PDE points, then each condition's points), and the forward engine propagates derivatives
through the layers without calling the wrapper's ``forward``; both break DDP's one-forward,
one-backward bookkeeping. Rank 0 alone writes logs, checkpoints and metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class Communicator:
    """The ranks of a process group; a world of one is the single-process case."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def average_gradients(self, model: nn.Module) -> None:
        """Replace every parameter's gradient by its mean over the ranks (one all-reduce)."""
        if not self.active:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p, g in zip(model.parameters(), grads):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def average(self, values: Tensor) -> Tensor:
        """The mean of a tensor over the ranks (the loss and its terms)."""
        if not self.active:
            return values
        values = values.detach().clone()
        dist.all_reduce(values)
        return values / self.world

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on any."""
        return self.maximum(1 if flag else 0) > 0

    def maximum(self, value: int) -> int:
        """The largest of the ranks' ``value`` (a signal number, say), on every rank."""
        if not self.active:
            return value
        t = torch.tensor([float(value)], device=_device_of_group())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def gather(self, obj):
        """Every rank's ``obj``, in rank order (on every rank)."""
        if not self.active:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


def _device_of_group() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_from_env(device_type: str) -> Communicator:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPUs); a single
    process outside torchrun gets a world of one."""
    if not launched_by_torchrun():
        return Communicator()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Communicator(rank=dist.get_rank(), world=dist.get_world_size())


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


#: The random streams each rank draws from, as indices into :func:`rank_seed`.
POINTS_STREAM, TORCH_STREAM = 0, 1


def rank_seed(seed: int, comm: Communicator, stream: int = POINTS_STREAM) -> int:
    """The seed of one of this rank's random streams: ``seed`` itself in a single process,
    otherwise one of ``2 * world`` independent streams spawned from it, rank ``r`` taking child
    ``r`` for its collocation points (:data:`POINTS_STREAM`) and child ``world + r`` for torch's
    global generator once the network is built (:data:`TORCH_STREAM`: the stochastic engine's
    random directions, which must differ between ranks for their estimates to average out)."""
    if stream not in (POINTS_STREAM, TORCH_STREAM):
        raise ValueError(f"rank_seed: stream must be POINTS_STREAM or TORCH_STREAM; got {stream!r}")
    if not comm.active:
        return seed
    child = np.random.SeedSequence(seed).spawn(2 * comm.world)[stream * comm.world + comm.rank]
    return int(child.generate_state(1, dtype=np.uint64)[0] >> 1)
