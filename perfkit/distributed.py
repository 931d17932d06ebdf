"""One torchrun wrapper for every job that shards work (validate, train).

Without torchrun (``WORLD_SIZE`` unset or 1) every method is a no-op for a world of one, so callers
never branch on "am I distributed".
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Distributed:
    """Rank, world size and local rank of this process; shards are contiguous, with no padding."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "cpu") -> "Distributed":
        """Join the process group torchrun describes (gloo on CPU, nccl on GPU); a world of one when alone."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
        if not dist.is_initialized():
            cuda = str(device).startswith("cuda")
            if cuda:
                torch.cuda.set_device(local)
            dist.init_process_group("nccl" if cuda else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), local)

    def device(self, device: str) -> str:
        """Under torchrun each rank takes the GPU of its local rank."""
        return f"cuda:{self.local_rank}" if self.enabled and str(device).startswith("cuda") else device

    def shard(self, n: int) -> range:
        return range(self.rank * n // self.world, (self.rank + 1) * n // self.world)

    def gather(self, obj) -> list:
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            torch.distributed.all_reduce(t)
        return t

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def close(self, *, finished: bool = True) -> None:
        """Leave the process group. ``finished``: every rank got here normally, so they first meet at a
        barrier — a rank that tears gloo down while another still talks to it aborts ("terminate called
        without an active exception", seen once in 5 loaded runs of the two-process test). After a
        failure no barrier: the other rank may never come."""
        if self.enabled and torch.distributed.is_initialized():
            if finished:
                self._meet()
            torch.distributed.destroy_process_group()

    def _meet(self, seconds: float = 60) -> None:
        """A barrier that gives up after ``seconds`` on gloo (a rank that failed after its work, a gate
        raised on rank 0, never comes; nccl has no monitored barrier)."""
        import datetime

        dist = torch.distributed
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=seconds))
            else:
                dist.barrier()
        except RuntimeError:
            pass  # the other rank did not come: leave anyway, its own failure is what it reports


ALONE = Distributed()
