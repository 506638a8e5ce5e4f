"""Several processes under ``torchrun``: rank, world size, and the few collectives the Trainer needs.

Without ``WORLD_SIZE`` > 1 in the environment there is no process group and every helper
is a no-op, so single-process training pays nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    owns_group: bool  # we created the process group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_max(self, values: list[float], device: torch.device) -> list[float]:
        return self._reduce(values, device, torch.distributed.ReduceOp.MAX)

    def all_sum(self, values: list[float], device: torch.device) -> list[float]:
        return self._reduce(values, device, torch.distributed.ReduceOp.SUM)

    def _reduce(self, values: list[float], device: torch.device, op: Any) -> list[float]:
        # NCCL reduces only GPU tensors; gloo only CPU ones.
        where = device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
        tensor = torch.tensor(values, dtype=torch.float64, device=where)
        torch.distributed.all_reduce(tensor, op=op)
        return tensor.tolist()

    def broadcast_module(self, module: torch.nn.Module, device: torch.device) -> None:
        """Make every rank hold rank 0's parameters and buffers."""
        nccl = torch.distributed.get_backend() == "nccl"
        with torch.no_grad():
            for tensor in module.state_dict().values():
                # Collectives need dense, contiguous tensors on the backend's device: a
                # channels_last weight broadcast in place corrupts memory.
                if tensor.is_contiguous() and (nccl or tensor.device.type == "cpu"):
                    torch.distributed.broadcast(tensor, src=0)
                else:
                    staged = tensor.contiguous() if nccl else tensor.cpu().contiguous()
                    torch.distributed.broadcast(staged, src=0)
                    tensor.copy_(staged)

    def close(self) -> None:
        if self.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def from_environment() -> Distributed | None:
    """Join (or create) the process group ``torchrun`` describes; None when running alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch.distributed as dist

    owns = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        owns = True
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0
