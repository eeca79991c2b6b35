"""Data parallelism of the codec trainer: the ``torch.distributed`` group that ``torchrun`` sets
up (NCCL with one GPU per process, gloo on CPUs), or a single process."""

from __future__ import annotations

import torch

__all__ = ["process_group", "barrier", "average_gradients"]


def process_group() -> tuple[int, int]:
    """``(rank, world_size)`` of an initialised ``torch.distributed`` group, else ``(0, 1)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def average_gradients(params: list, loss: float, world_size: int) -> float:
    """Data parallelism: average every gradient (and the logged loss) over the ranks.

    One all-reduce per parameter after the micro-batches, which is what DistributedDataParallel
    does with its hooks; the stages call sub-modules (vision, decoder, channel codec) directly
    rather than one ``forward``, so DDP's wrapper would not see those calls.
    """
    import torch.distributed as dist

    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad)
        param.grad.div_(world_size)
    total = torch.tensor([loss], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total) / world_size
