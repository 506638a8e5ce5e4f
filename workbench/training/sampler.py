"""Where a run's image batches come from: a seeded order per epoch, items that know their index, the loader.

Every random choice here is a function of (seed, epoch, index), never of the global RNG's
position, so a run that was stopped and resumed sees exactly the batches (and augmentations)
of a run that was not, whatever the number of loader workers.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """A seeded permutation per epoch, optionally starting part-way (for an exact resume)."""

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 drop_lone_last_of: int = 0) -> None:
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0
        # A last batch of one image cannot train BatchNorm ("Expected more than 1 value per channel"):
        # with batches of this size, that one image is left out of the epoch (a different one each epoch).
        self.drop_lone_last_of = drop_lone_last_of
        self.fixed_shards = False

    def _per_rank(self) -> int:
        n = -(-self.size // self.world_size)
        bs = self.drop_lone_last_of
        return n - 1 if bs > 1 and n > 1 and n % bs == 1 else n

    @property
    def drops_lone_last(self) -> bool:
        return self._per_rank() != -(-self.size // self.world_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        """This process's share of the epoch's permutation (all of it when running alone).

        With ``fixed_shards`` (set by the feature cache under DDP) each rank keeps the same images
        every epoch, shuffled among themselves: a rank then caches and reads only its own share.
        """
        if self.world_size > 1 and self.fixed_shards:
            share = self._shard(self._permutation(-1))
            if not self.shuffle:
                return share[:self._per_rank()]
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            return [share[i] for i in torch.randperm(len(share), generator=generator).tolist()][:self._per_rank()]
        order = self._permutation(self.epoch) if self.shuffle else list(range(self.size))
        return self._shard(order)[:self._per_rank()]

    def shard(self) -> list[int]:
        """The images this rank sees in every epoch while ``fixed_shards`` is on (all of them when running alone)."""
        return sorted(set(self._shard(self._permutation(-1)))) if self.world_size > 1 else list(range(self.size))

    def _permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def _shard(self, order: list[int]) -> list[int]:
        if self.world_size == 1:
            return order
        # Pad by wrapping so every rank runs the same number of batches (DDP needs that).
        return (order + order[:(-len(order)) % self.world_size])[self.rank::self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # (epoch, index): the dataset seeds each image's augmentation from them (see WithIndex).
        return iter([(self.epoch, i) for i in self.order()[self.start:]])

    def __len__(self) -> int:
        return self._per_rank() - self.start


class WithIndex(Dataset):
    """Items with their dataset index, so the first cached epoch knows where each feature goes.

    Training keys are ``(epoch, index)``: each image's random augmentation is then seeded from
    ``(seed, epoch, index)`` alone, so it is the same whatever the number of loader workers and
    whether or not the run was stopped and resumed in between (an exact resume needs that).
    """

    def __init__(self, dataset: Any, seed: int = 0) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Any, Any, int]:
        if isinstance(key, tuple) and getattr(self.dataset, "deterministic", False):
            i = key[1]  # nothing random to seed
            image, label = self.dataset[i]
        elif isinstance(key, tuple):
            epoch, i = key
            with seeded((self.seed * 1_000_003 + epoch) * 10_000_019 + i):
                image, label = self.dataset[i]
        else:
            i = key
            image, label = self.dataset[i]
        return image, label, i


class seeded:
    """Seed torch, ``random`` and numpy for one item, then restore them (the training RNG must not move)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed % 2**63

    def __enter__(self) -> None:
        import numpy as np

        self._torch = torch.get_rng_state()
        self._python = random.getstate()
        self._numpy = np.random.get_state()
        torch.manual_seed(self.seed)
        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)

    def __exit__(self, *exc: object) -> None:
        import numpy as np

        torch.set_rng_state(self._torch)
        random.setstate(self._python)
        np.random.set_state(self._numpy)


def make_loader(dataset: Any, sampler: EpochSampler, batch_size: int, seed: int, workers: int,
                device: torch.device) -> DataLoader:
    """The training loader over ``dataset`` in ``sampler``'s order."""
    return DataLoader(WithIndex(dataset, seed), batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None, drop_last=False,
                      # Its own generator: creating an iterator must not consume the global RNG
                      # (dropout's), or a resumed run would diverge from an uninterrupted one.
                      generator=torch.Generator().manual_seed(seed))
