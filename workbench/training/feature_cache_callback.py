"""The ``FeatureCaching`` callback: train only what is above the frozen trunk.

For each freeze state the model is split where its frozen, deterministic prefix ends
(``workbench.training.trunk_features``). With caching on, the first epoch fills a store with
the trunk's output for every image as it trains (through a BatchNorm-folded copy of the trunk
when that one pass sends enough image pixels through it, ``FOLD_MIN_PIXELS``), and later epochs
train the head on the stored features. A freeze state of one epoch followed by another (gradual unfreezing) stores the
output at the cut where the *next* state's trunk ends, and that state trains from it. With
caching off (or a last state of one epoch, whose store no epoch would read), the split is still
used when a BatchNorm-folded copy of the trunk can run under inference mode and enough image
pixels go through it to pay for the split and the fold (``FOLD_MIN_PIXELS``); otherwise the
whole model runs as usual. A state that may train from the previous state's stores never folds,
so a run resumed there without them computes the same trunk outputs (exact resume).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from workbench.training.callbacks import Callback
from workbench.training.freeze_spans import previous_state_span, state_span
from workbench.training.reports import StateReport
from workbench.training.sampler import EpochSampler, WithIndex, make_loader
from workbench.training.state import Batch, TrainState
from workbench.training.trunk_features import FeatureStore, TrunkSplit


@dataclass
class TrunkCache:
    """The trunk/head split for the current freeze state and its feature stores."""

    split: TrunkSplit
    train: FeatureStore | None  # None: the trunk runs every step (folded, without autograd), nothing is stored
    val: FeatureStore | None
    fill_loader: DataLoader | None  # cache_features = true with augmentation on: the eval transform's images
    fill_dataset: Any
    trunk: torch.nn.Module  # what computes trunk outputs: the split trunk or its BatchNorm-folded copy
    channels_last: bool
    for_next_state: bool = False  # cut where the next freeze state's trunk ends: that state reads the stores

    def discard_incomplete(self) -> None:
        for store in (self.train, self.val):
            if store is not None:
                store.discard()

    @property
    def complete(self) -> bool:
        return self.train is not None and self.train.complete and (self.val is None or self.val.complete)


TINY_HEAD_PARAMS = 1_000_000  # cached epochs of heads up to this size run on one intra-op thread


class FeatureCaching(Callback):
    """Keeps no state across ``--resume``: its stores are found again on disk by content (``cache_key``), and
    every choice it makes follows from the plan and the epoch, so a resumed run makes the same ones."""

    order = -200  # after GradualUnfreezing: it splits the model at this epoch's frozen trunk

    def __init__(self) -> None:
        self.cache: TrunkCache | None = None
        self._key: Any = None
        self._use = False
        self._filling = False  # this epoch fills the training store
        self._val_fill: FeatureStore | None = None  # this validation fills the validation store
        self._threads = torch.get_num_threads()
        self._head_threads = self._threads

    def before_fit(self, t: TrainState) -> None:
        self._threads = torch.get_num_threads()
        self._use, why_not = cache_mode(t)
        if why_not:
            t.emit(StateReport("cache", why_not, t.epoch))

    def before_epoch(self, t: TrainState) -> None:
        self._split(t)
        cache = self.cache
        self._filling = cache is not None and cache.train is not None and not cache.train.complete
        # Under DDP a cached state keeps each rank on the same images every epoch: a rank caches only its share.
        t.sampler.fixed_shards = cache is not None and cache.train is not None and t.dist is not None
        if cache is None:  # nothing frozen to cache (any more): every thread again, after a tiny cached head's one
            self._head_threads = self._threads
            torch.set_num_threads(self._threads)
            return
        t.train_module = cache.split.head_train
        # Three ways through an epoch: images through the whole model; images through the
        # trunk into the cache (the first cached epoch), then the head; cached features.
        if cache.train is not None and self._filling:
            t.train_batches = cache.fill_loader or t.loader
        elif cache.train is not None:
            t.train_batches = cached_batches(cache.train, t.sampler, t.cfg.batch_size)
        # Measured on 2 busy cores: a linear probe's cached epoch takes 0.5 s with one intra-op thread
        # and 10 s with two (OpenMP threads wait for each other): tiny heads get one thread. The head gets
        # it in the epoch that fills the store too (the trunk runs with every thread): results depend on
        # the thread count, and a run resumed mid-state fills where an unbroken one read (exact resume).
        tiny = (cache.train is not None and t.device.type == "cpu"
                and sum(p.numel() for p in cache.split.head_train.parameters()) <= TINY_HEAD_PARAMS)
        self._head_threads = 1 if tiny else self._threads
        torch.set_num_threads(self._head_threads)

    def before_batch(self, t: TrainState) -> None:
        cache = self.cache
        if cache is None or not (self._filling or cache.train is None):
            return
        with torch.inference_mode(), all_threads(self._threads, self._head_threads):  # the frozen trunk
            features = cache.trunk(t.images)
        if self._filling and cache.train is not None:
            cache.train.put(t.index, features, t.labels)
        # The head gets what the store holds (float32, also under bf16 autocast), the same in the epoch that
        # fills the store as in the epochs that read it: a run resumed mid-state computes exactly as one that
        # was never stopped. (A copy: an inference tensor cannot be saved for backward.)
        t.images = features.to(torch.float32, copy=True)

    def before_validate(self, t: TrainState) -> None:
        cache = self.cache
        if cache is None:
            return
        if self._filling and cache.train is not None:  # rows this epoch did not see (other ranks', pre-resume)
            share = self._fill_missing(t, cache, cache.train, cache.fill_dataset or t.data.train)
            cache.train.finish()
            later = ("the next freeze state trains" if cache.for_next_state
                     else "later epochs train")
            whose = f" (this process's share of {cache.train.count:,})" if t.dist is not None else ""
            t.emit(StateReport("cache", f"cached the trunk's output for {share:,} training images{whose} "
                               f"during this epoch; {later} only the layers above the cut", t.epoch))
        # Cached features → head; images → trunk (filling the store when caching) → head.
        t.val_module = cache.split.head_eval
        self._val_fill = None
        if cache.val is not None and cache.val.complete:
            t.val_batches = stored_val_batches(t, cache.val)
            return
        self._val_fill = cache.val

        def inputs(images: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            with all_threads(self._threads, self._head_threads):
                features = cache.trunk(images)
            if self._val_fill is not None:
                self._val_fill.put(index, features, labels)
            return features.float()  # as the store gives them in later epochs

        t.val_inputs = inputs

    def after_validate(self, t: TrainState) -> None:
        fill, self._val_fill = self._val_fill, None
        if fill is None:  # (a validation store exists only when there is a validation set)
            return
        if t.dist is not None:  # validation is sharded the same way every epoch: only this share is read
            fill.filled[:] = True
        fill.finish()

    def teardown(self, t: TrainState) -> None:
        torch.set_num_threads(self._threads)
        if self.cache is not None:
            self.cache.discard_incomplete()

    # --- pieces ------------------------------------------------------------------------
    def _split(self, t: TrainState) -> None:
        """Split the model at its frozen trunk (once per freeze state); open the feature stores.

        With caching on, nothing is computed here: the first cached epoch fills the stores as it trains.
        """
        from workbench.training import trunk_features as fc

        freeze = t.plan.freeze
        key = (tuple(freeze.frozen), tuple(freeze.unfrozen), freeze.batchnorm)
        if self._key == key:
            return
        previous, self._key, self.cache = self.cache, key, None
        carried = previous if previous is not None and previous.for_next_state and previous.complete else None
        if previous is not None and carried is None:
            previous.discard_incomplete()
        if carried is not None and self._reuse(t, carried):
            return
        # A state of one epoch reads images: cache where the next state's trunk ends. (Its whole span, not the
        # epochs left: a run resumed in the last epoch of a longer state must not change how it computes.)
        if self._use and state_span(t) == 1:
            ahead = self._next_state_split(t)
            if ahead is not None:
                self._open_stores(t, ahead, ahead.trunk, "", for_next_state=True)
                return
        # Its whole span again: resumed in the last epoch of a longer state, this epoch computes as the stored
        # epochs of an unbroken run did (it fills the stores anew and trains from their values).
        once = self._use and t.cfg.cache_features == "auto" and state_span(t) <= 1
        # Decided on the whole freeze state, not on the epochs left: a run resumed in a cached state's
        # last epoch must compute its trunk outputs the way the stored ones were computed (exact resume).
        cached_state = self._use and (t.cfg.cache_features != "auto" or state_span(t) > 1)
        if not cached_state and trunk_pixels(t) < FOLD_MIN_PIXELS:
            # Nothing stored: the split would only serve a BatchNorm-folded copy, which does not pay here.
            if once:
                t.emit(StateReport("cache", f"feature cache not used for epoch {t.epoch + 1}: this freeze state "
                                   "lasts one epoch, so the frozen trunk runs once per image either way; it runs "
                                   "as part of the model (a BatchNorm-folded copy of it pays for its set-up only "
                                   f"above ~{FOLD_MIN_PIXELS / 1e6:.0f} M image pixels, this state has "
                                   f"{trunk_pixels(t) / 1e6:.1f} M)", t.epoch))
            return
        try:
            split = fc.split_frozen_trunk(t.model, t.applied.set_train_mode)
        except fc.CacheUnavailable as exc:
            if self._use:
                t.emit(StateReport("cache", f"feature cache not used: {exc}"))
            return
        # After a one-epoch state the trunk's outputs may come from that state's stores, computed unfolded;
        # a run resumed here without them must compute the same values (exact resume): no folding.
        # A cached state runs its trunk over the images once (the epoch that fills the stores): the fold must
        # pay for itself in that one pass.
        runs = 1 if cached_state else state_span(t)
        fold = trunk_pixels(t, runs) >= FOLD_MIN_PIXELS and not (self._use and previous_state_span(t) == 1)
        folded = fc.folded_trunk(split, t.channels_last, t.amp_dtype) if fold else None
        trunk: torch.nn.Module = split.trunk
        fold_note = ""
        if folded is not None:
            trunk = folded[0]
            fold_note = (f"; BatchNorm folded into {folded[1]} convolution(s) of a {_human(folded[2])} "
                         "inference copy of the trunk")
        if once:  # a store read by no later epoch only costs memory and copies
            t.emit(StateReport("cache", f"feature cache not used for epoch {t.epoch + 1}: this freeze state lasts one "
                               f"epoch, so the frozen trunk runs once per image either way; {split.describe()}"
                               f"{fold_note}", t.epoch))
        if not self._use or once:
            if folded is not None:
                self.cache = TrunkCache(split, None, None, None, None, trunk, t.channels_last)
                if not once:
                    t.emit(StateReport("trunk", f"frozen trunk runs without autograd: {split.describe()}{fold_note}"))
            return
        self._open_stores(t, split, trunk, fold_note)

    def _reuse(self, t: TrainState, carried: TrunkCache) -> bool:
        """Train this state from the stores the previous (one-epoch) state filled, if its trunk ends at their cut."""
        from workbench.training import trunk_features as fc

        try:
            split = fc.split_frozen_trunk(t.model, t.applied.set_train_mode)
        except fc.CacheUnavailable:
            split = None
        if split is None or not split.same_trunk(carried.split):
            carried.discard_incomplete()
            return False
        self.cache = TrunkCache(split, carried.train, carried.val, None, None, split.trunk, t.channels_last)
        t.emit(StateReport("cache", f"epoch {t.epoch + 1} trains from the trunk outputs cached during epoch "
                           f"{t.epoch}: {split.describe()}", t.epoch, details={"cut": split.cut}))
        return True

    def _next_state_split(self, t: TrainState) -> Any:
        """The split at the cut where the next freeze state's trunk ends, if that state begins next epoch."""
        from workbench.freezing import plan_at_epoch
        from workbench.resolve import resolve_plan
        from workbench.training import trunk_features as fc

        following = t.epoch + 1
        if following >= t.cfg.epochs or not any(s.epoch == following for s in t.plan.unfreeze):
            return None
        resolution = resolve_plan(t.tree, plan_at_epoch(t.plan, t.tree, following))
        names = {t.tree.params[i].name for i, trains in enumerate(resolution.param_trainable) if trains}
        will_train = [p for name, p in t.model.named_parameters() if name in names and not p.requires_grad]
        if not will_train:
            return None
        try:
            return fc.split_frozen_trunk(t.model, t.applied.set_train_mode, will_train=will_train)
        except fc.CacheUnavailable:
            return None

    def _open_stores(self, t: TrainState, split: Any, trunk: torch.nn.Module, fold_note: str,
                     for_next_state: bool = False) -> None:
        """Open the stores this epoch fills with ``split``'s trunk outputs (or finds complete on disk)."""
        from workbench.training import trunk_features as fc

        train_set, fill_loader, fill_dataset = t.data.train, None, None
        if augments(t):  # cache_features = true with augmentation on
            from workbench.data import build_transform
            from workbench.image_dataset import ImageDataset

            eval_tf = build_transform(t.spec, train=False, augment=False)
            train_set = ImageDataset(train_set.items, eval_tf, getattr(train_set, "mode", "RGB"))
            fill_loader = make_loader(train_set, t.sampler, t.cfg.batch_size, t.cfg.seed, t.workers, t.device)
            fill_dataset = train_set
            t.emit(StateReport("notice", "cache_features = true: the cached training images use the deterministic "
                               "eval transform (no augmentation)"))
        t.applied.set_train_mode(t.model)
        # Features computed in bf16 differ from float32 ones: a cache on disk is reused only at the same precision.
        fingerprint = f"{getattr(t.data, 'fingerprint', '')}|{t.amp_dtype or 'float32'}"
        if t.dist is not None:  # a rank's store holds its own share (EpochSampler.fixed_shards) and only that
            fingerprint += f"|rank{t.dist.rank}of{t.dist.world_size}|seed{t.cfg.seed}"
        shape = fc.feature_shape(split, train_set[0][0][None].to(t.device))
        train_store = fc.open_store(split, len(train_set), shape, fingerprint, "train")
        val_store = None
        if t.data.val is not None and len(t.data.val):
            val_store = fc.open_store(split, len(t.data.val), shape, fingerprint, "val")
        self.cache = TrunkCache(split, train_store, val_store, fill_loader, fill_dataset, trunk, t.channels_last,
                                for_next_state)
        total = train_store.nbytes + (val_store.nbytes if val_store else 0)
        where = "on disk (memory-mapped)" if train_store.disk_path is not None else "in memory"
        if train_store.complete and train_store.disk_path is not None:
            plan = f"reusing the complete cache in {train_store.disk_path.parent}"
        else:
            plan = "filled during this epoch, as the trunk runs once per image"
        what = ("caching the frozen trunk where the next freeze state's trunk ends (this one lasts one epoch; the "
                "layers between run frozen above the cut)" if for_next_state else "caching the frozen trunk")
        t.emit(StateReport("cache", f"{what}: {split.describe()}; {len(train_set):,} train + "
                           f"{len(t.data.val) if val_store else 0:,} val images × "
                           f"{'×'.join(map(str, train_store.shape))} floats = {_human(total)} {where}; {plan}"
                           f"{fold_note}",
                           details={"bytes": total, "cut": split.cut}))

    def _fill_missing(self, t: TrainState, cache: TrunkCache, store: FeatureStore, dataset: Any) -> int:
        """Run the trunk over the rows of this rank's share a store still lacks, so it can be marked complete.

        Returns the number of rows this rank holds (all of them when running alone). Under DDP the
        other ranks' rows are marked filled without being computed: this rank never reads them.
        """
        if t.dist is not None:
            mine = torch.zeros(store.count, dtype=torch.bool)
            mine[torch.tensor(t.sampler.shard(), dtype=torch.long)] = True
            store.filled[~mine] = True
            held = int(mine.sum())
        else:
            held = store.count
        missing = store.missing()
        if len(missing) == 0:
            return held
        subset = Subset(WithIndex(dataset), missing.tolist())
        loader = DataLoader(subset, batch_size=t.cfg.batch_size, shuffle=False, num_workers=t.workers,
                            generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            for images, labels, index in loader:
                images = images.to(t.device, non_blocking=True)
                if images.dim() == 4 and cache.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                with all_threads(self._threads, self._head_threads):
                    store.put(index, cache.trunk(images), labels)
        return held


def augments(t: TrainState) -> bool:
    """[train] augment, unless the data has no augmentation at all (a feature table's rows)."""
    return t.cfg.augment and getattr(t.data, "augments", True)


def cache_mode(t: TrainState) -> tuple[bool, str | None]:
    """Whether to try the feature cache, and why not when not."""
    setting: Any = t.cfg.cache_features
    if setting is False or setting in ("false", "off"):
        return False, "feature cache not used: [train] cache_features = false"
    if setting == "auto" and augments(t):
        return False, ("feature cache not used: augmentation is on, so the frozen trunk's output changes every "
                       "epoch (set [train] augment = false, or cache_features = true to cache without augmentation)")
    return True, None


# Splitting the model (fx tracing) and folding BatchNorm into a copy of its frozen trunk cost resnet18
# 0.05-0.11 CPU-s and save 0.03-0.08 ms per 64×64 image, 0.7-1.4 ms per 160×160 one: break-even at 1.5-7.3 M
# image pixels (`python benchmarks/bench_fold.py`). Below this, a trunk that is not cached runs as part of
# the model, and a cached one fills its stores unfolded.
FOLD_MIN_PIXELS = 4_000_000


def trunk_pixels(t: TrainState, epochs: int | None = None) -> int:
    """Image pixels (train + val) the frozen trunk sees in ``epochs`` epochs (default: every epoch of this state)."""
    images = len(t.data.train) + (len(t.data.val) if t.data.val is not None else 0)
    pixels = 1
    for side in t.spec.input_size[1:]:
        pixels *= int(side)
    return images * pixels * (state_span(t) if epochs is None else epochs)


@contextmanager
def all_threads(threads: int, after: int) -> Iterator[None]:
    """The trunk runs with every intra-op thread, then the head's count is set back."""
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(after)


def cached_batches(store: FeatureStore, sampler: EpochSampler, batch_size: int) -> Iterator[Batch]:
    """The same batches the image loader would give, read from cached trunk outputs."""
    order = torch.tensor(sampler.order()[sampler.start:], dtype=torch.long)
    for index in order.split(batch_size):
        yield store.features.index_select(0, index), store.labels.index_select(0, index), index


def stored_val_batches(t: TrainState, store: FeatureStore) -> list[Batch]:
    """This process's share of the validation set, from its complete store."""
    shard = slice(t.dist.rank, None, t.dist.world_size) if t.dist is not None else slice(None)
    index_all = torch.arange(len(t.data.val))[shard]
    return [(store.features[i], store.labels[i], i) for i in index_all.split(t.cfg.batch_size)]


def _human(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{nbytes} B"
        nbytes /= 1024
    return f"{nbytes:.1f} GB"
