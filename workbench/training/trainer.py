"""The Trainer: a plain-Python generator that trains a workspace's plan and yields reports.

One report at least per batch, so pause/stop requests (thread-safe) are honoured within
one batch. Guarantees (each has a test): frozen parameters are bit-identical after
training, have no ``.grad`` and no optimizer state; frozen BatchNorm statistics do not
move under the ``freeze`` policy; resuming gives the same next-step loss as not stopping.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Sampler

from workbench.apply import AppliedPlan, apply_plan
from workbench.atomic import atomic_path, atomic_write_text
from workbench.errors import TrainingError, WorkbenchError  # noqa: F401  (TrainingError re-exported)
from workbench.finite import nonfinite_tensors
from workbench.freezing import unfreeze_groups
from workbench.plan import FinetunePlan
from workbench.resolve import resolve_plan
from workbench.spec import ModelSpec
from workbench.training import run_folder as rf
from workbench.training.checkpoint import load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from workbench.training.devices import pick_amp, pick_device
from workbench.training.distributed import from_environment
from workbench.training.reports import EpochReport, Report, StateReport, StepReport
from workbench.training.schedule import lr_factor
from workbench.workspace import Workspace

CHECKPOINT = Path("checkpoints") / "last.pt"
TINY_HEAD_PARAMS = 1_000_000  # cached epochs of heads up to this size run on one intra-op thread
WEIGHTS = "model.safetensors"


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, optionally starting part-way (for an exact resume)."""

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 drop_lone_last_of: int = 0) -> None:
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0
        # A last batch of one image cannot train BatchNorm ("Expected more than 1 value per channel"):
        # with batches of this size, that one image is left out of the epoch (a different one each epoch).
        self.drop_lone_last_of = drop_lone_last_of

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
        """This process's share of the epoch's permutation (all of it when running alone)."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        if self.world_size > 1:
            # Pad by wrapping so every rank runs the same number of batches (DDP needs that).
            order = (order + order[:(-len(order)) % self.world_size])[self.rank::self.world_size]
        return order[:self._per_rank()]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # (epoch, index): the dataset seeds each image's augmentation from them (see _WithIndex).
        return iter([(self.epoch, i) for i in self.order()[self.start:]])

    def __len__(self) -> int:
        return self._per_rank() - self.start


class Trainer:
    """Train ``workspace.plan`` on ``data`` (a ``workbench.data.DataBundle``).

    ``run()`` is the generator; ``request_pause/resume/stop`` may be called from any thread.
    """

    CHECKPOINT_INTERVAL_S = 2.0  # at most this much training is lost to a crash between epoch checkpoints
    CHECKPOINT_COPY_LIMIT_BYTES = 32 << 20  # larger snapshots are written from the live tensors, waited for

    def __init__(self, workspace: Workspace, data: Any, run_dir: Path | None = None, resume: bool = False,
                 overwrite: bool = False, allow_data_change: bool = False) -> None:
        self.ws = workspace
        self.data = data
        self.plan: FinetunePlan = workspace.plan
        self.run_dir = Path(run_dir) if run_dir else default_run_dir(self.plan)
        self.resume = resume
        self.overwrite = overwrite
        self.allow_data_change = allow_data_change
        self._compiled_modules: dict[int, Any] = {}
        self._writer: threading.Thread | None = None
        self._last_checkpoint = float("-inf")
        self._writer_error: BaseException | None = None
        self._dist: Any = None
        self._ddp: Any = None
        self._ddp_key: Any = None
        self._cache_key: Any = None
        self._sampler: EpochSampler | None = None
        self._cache: Any = None
        self._val_batches: DataLoader | None = None
        self._stop = threading.Event()
        self._pause = threading.Event()
        self._wake = threading.Event()

    # --- requests from other threads -------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def request_pause(self) -> None:
        self._pause.set()

    def request_resume(self) -> None:
        self._pause.clear()
        self._wake.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    # --- the generator ---------------------------------------------------------------
    def run(self) -> Iterator[Report]:
        """Train, holding the run folder's lock throughout (one training per folder)."""
        self._dist = from_environment()
        lock = None
        if self._writes_files:
            lock = self._claim_run_dir()
        outcome: dict[str, Any] = {"state": "failed", "message": "ended without a final report"}
        try:
            self._write_status({"state": "running"})
            for report in self._run():
                if isinstance(report, StateReport) and report.kind in ("finished", "stopped"):
                    outcome = {"state": report.kind, "message": report.message}
                yield report
        except GeneratorExit:
            outcome = {"state": "stopped", "message": "the consumer stopped reading reports"}
            raise
        except BaseException as exc:
            outcome = {"state": "failed", "message": str(exc) or type(exc).__name__}
            raise
        finally:
            self._write_status(outcome)
            if lock is not None:
                lock.release()

    def _write_status(self, status: dict[str, Any]) -> None:
        """``status.json``: running / finished / stopped / failed (a kill leaves "running" with no lock: crashed)."""
        if not self._writes_files or not self.run_dir.is_dir():
            return
        try:
            atomic_write_text(self.run_dir / rf.STATUS,
                              json.dumps({**status, "time": datetime.now().isoformat(timespec="seconds")}) + "\n")
        except WorkbenchError:
            pass  # a full disk must not hide the training error being raised

    def _claim_run_dir(self) -> rf.RunLock:
        """Lock the folder; refuse to mix a new run into an old one; sweep debris of a killed run."""
        rf.check_writable_run_dir(self.run_dir)
        lock = rf.RunLock(self.run_dir)
        lock.acquire()
        try:
            if not self.resume and rf.holds_run(self.run_dir):
                if not self.overwrite:
                    raise TrainingError(f"{self.run_dir} already holds a run; continue it with --resume "
                                        f"{_quoted(self.run_dir)}, choose another --out folder, or pass --overwrite "
                                        "to replace it")
                rf.clear_run(self.run_dir)
            rf.remove_stale_temp_files(self.run_dir)
        except BaseException:
            lock.release()
            raise
        return lock

    def _run(self) -> Iterator[Report]:
        cfg = self.plan.train
        model = self.ws.backbone.module
        spec = self.ws.backbone.spec
        tree = self.ws.tree
        classes = list(self.data.classes)
        if spec.num_classes != len(classes):
            raise TrainingError(f"the data has {len(classes)} classes but the model's head has {spec.num_classes} "
                                f"outputs; set [model] num_classes = {len(classes)} (or --adapt-head)")
        if self.ws.backbone.source == "onnx" and self.plan.head is None:  # timm models always end in logits
            _check_logits(model, spec)
        spec.label_names = classes
        dist = self._dist
        device = pick_device(cfg.device)
        if dist is not None and device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
            torch.cuda.set_device(device)
        amp_dtype = pick_amp(cfg.amp, device)
        state = load_checkpoint(self.run_dir / CHECKPOINT) if self.resume else None
        if state is not None and list(state["classes"]) != classes:
            raise TrainingError(f"cannot resume {self.run_dir}: it was trained on classes {state['classes'][:5]}…, "
                                f"the data now has {classes[:5]}…")
        if state is not None:
            self._check_same_data(state)
            if self._writes_files:
                rf.trim_metrics(self.run_dir / rf.METRICS, state["global_step"], state["epoch"])
        if state is None:
            _seed_everything(cfg.seed)
        if self._writes_files:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        current = self.plan.copy()
        if state is not None:
            current.freeze = replace(current.freeze, frozen=list(state["frozen"]), unfrozen=list(state["unfrozen"]))
        if self._writes_files:
            self._write_run_files(current, state is None)

        loader, sampler = self._loader(device)
        batches = len(loader) if sampler.size else 0
        if batches == 0:
            raise TrainingError("the training set is empty")
        total_steps = cfg.epochs * batches
        warmup = int(cfg.warmup_epochs * batches)

        model.to(device)
        # Measured on CPU too (oneDNN): resnet18 steps 1.25x, mobilenetv3 1.7x faster in channels_last.
        channels_last = device.type in ("cuda", "cpu") and any(isinstance(m, nn.Conv2d) for m in model.modules())
        if channels_last:
            model.to(memory_format=torch.channels_last)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        if dist is not None:
            dist.broadcast_module(model, device)  # frozen weights too: DDP only syncs what it wraps
        applied = apply_plan(model, resolve_plan(tree, current, self.ws.default_groups()))
        if state is None and self._writes_files:  # what `workbench diff RUN` compares the result with
            from workbench.drift import save_run_start

            save_run_start(self.run_dir, model, tree, self.plan, applied.resolution)
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer = _build_optimizer(cfg, _groups_from_layout(model, state["optimizer_layout"]))
            optimizer.load_state_dict(state["optimizer"])
        else:
            optimizer = _build_optimizer(cfg, [_with_base(g) for g in applied.param_groups])
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        if state is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

        start_epoch = state["epoch"] if state else 0
        start_batch = state["batch"] if state else 0
        global_step = state["global_step"] if state else 0
        schedule_done = state["schedule_done"] if state else -1
        if state is not None:
            restore_rng_state(state["rng"])
        metrics = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") if self._writes_files else io.StringIO()
        processes = f" × {dist.world_size} processes" if dist is not None else ""
        yield StateReport("started" if state is None else "resumed",
                          f"{'resuming' if state else 'training'} {spec.architecture} on {device}{processes} "
                          f"({'amp ' + str(amp_dtype).split('.')[-1] if amp_dtype else 'float32'}): "
                          f"{applied.resolution.summary()}; {len(loader.dataset):,} training images",
                          start_epoch, {"run_dir": str(self.run_dir), "device": str(device)})
        step_times: list[float] = []
        where: dict[str, Any] = {"phase": "setup", "epoch": start_epoch, "batch": 0}
        if sampler.drops_lone_last:
            yield StateReport("notice", f"{len(self.data.train):,} training images at batch size {cfg.batch_size} "
                              "leave a last batch of 1 image, which BatchNorm cannot train on: each epoch leaves "
                              "that one image out (a different one each epoch, as the order is shuffled)", start_epoch)
        use_cache, why_not = self._cache_mode()
        if why_not:
            yield StateReport("cache", why_not, start_epoch)
        threads = torch.get_num_threads()
        try:
            for epoch in range(start_epoch, cfg.epochs):
                steps = [s for s in self.plan.unfreeze if s.epoch == epoch and s.epoch > schedule_done]
                if steps:
                    names = [n for s in steps for n in s.groups]
                    unfreeze_groups(current, tree, names)
                    applied, added = _extend_optimizer(model, optimizer, current, self.ws, epoch)
                    schedule_done = epoch
                    yield StateReport("unfrozen", f"epoch {epoch}: unfroze {', '.join(names)} "
                                      f"(+{added:,} trainable parameters); {applied.resolution.summary()}", epoch)
                cached: _Cache | None = None
                where.update(phase="feature caching", epoch=epoch, batch=0)
                for report in self._prepare_cache(model, applied, device, current, use_cache, channels_last):
                    yield report
                cached = self._cache
                applied.set_train_mode(model)
                sampler.set_epoch(epoch, start_batch * cfg.batch_size)
                # Three ways through an epoch: images through the whole model; images through the
                # trunk into the cache (the first cached epoch), then the head; cached features.
                filling = cached is not None and cached.train is not None and not cached.train.complete
                if cached is None or cached.train is None:
                    batches_source: Any = loader
                elif filling:
                    batches_source = cached.fill_loader or loader
                else:
                    batches_source = _cached_batches(cached.train, sampler, cfg.batch_size)
                # Measured on 2 busy cores: a linear probe's cached epoch takes 0.5 s with one intra-op thread
                # and 10 s with two (OpenMP threads wait for each other): tiny heads get one thread.
                tiny = cached is not None and batches_source is not loader and not filling and device.type == "cpu" \
                    and sum(p.numel() for p in cached.split.head_train.parameters()) <= TINY_HEAD_PARAMS
                torch.set_num_threads(1 if tiny else threads)
                forward = self._parallel(model if cached is None else cached.split.head_train, device, current)
                if cfg.compile:
                    forward = self._compiled(forward)
                epoch_start = time.perf_counter()
                seen, loss_sum, correct = 0, 0.0, 0
                last = time.perf_counter()
                batch_index = start_batch
                for images, labels, index in batches_source:
                    batch_index += 1
                    images = images.to(device, non_blocking=True)
                    labels = labels.to(device, non_blocking=True)
                    if channels_last and images.dim() == 4:  # cached features are not images
                        images = images.contiguous(memory_format=torch.channels_last)
                    factor = lr_factor(cfg.scheduler, global_step, total_steps, warmup)
                    for group in optimizer.param_groups:
                        group["lr"] = group["base_lr"] * factor
                    where.update(phase="training", epoch=epoch, batch=batch_index)
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        if cached is not None and (filling or cached.train is None):
                            with torch.inference_mode():  # the frozen trunk: no autograd, BN folded
                                features = cached.trunk(images)
                            if filling:
                                cached.train.put(index, features, labels)
                            images = features.clone()  # an inference tensor cannot be saved for backward
                        logits = forward(images)
                        loss = loss_fn(logits.float(), labels)
                    loss_value, acc = torch.stack([loss.detach(), (logits.argmax(1) == labels).float().mean()]).tolist()
                    bad = not math.isfinite(loss_value)
                    if dist is not None:  # every rank must take the same decision, or one hangs in backward
                        bad = dist.all_max([float(bad)], device)[0] > 0
                        loss_value = loss_value if math.isfinite(loss_value) else float("nan")
                    if bad:
                        raise TrainingError(self._nan_message(loss_value, epoch, batch_index, global_step + 1))
                    scaler.scale(loss).backward()
                    if cfg.grad_clip:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                                       cfg.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    global_step += 1
                    now = time.perf_counter()
                    step_times = (step_times + [now - last])[-20:]
                    last = now
                    n = labels.shape[0]
                    seen += n
                    loss_sum += loss_value * n
                    correct += round(acc * n)
                    avg = sum(step_times) / len(step_times)
                    report = StepReport(epoch, batch_index, batches, global_step, loss_value, acc,
                                        {g["name"]: g["lr"] for g in optimizer.param_groups},
                                        n / max(step_times[-1], 1e-9), avg * (total_steps - global_step))
                    metrics.write(json.dumps({"type": "step", **_as_dict(report)}) + "\n")
                    yield report
                    if self._pause.is_set() and not self._stop.is_set():
                        yield StateReport("paused", f"paused at epoch {epoch}, batch {batch_index}", epoch)
                        while self._pause.is_set() and not self._stop.is_set():
                            self._wake.wait(0.2)
                            self._wake.clear()
                        if not self._stop.is_set():
                            yield StateReport("resumed", f"resumed at epoch {epoch}, batch {batch_index}", epoch)
                        last = time.perf_counter()
                    if self._stop_agreed(device):
                        at_end = batch_index == batches
                        self._check_finite(model, epoch, batch_index, global_step)
                        self._checkpoint(model, optimizer, scaler, current,
                                         epoch + 1 if at_end else epoch, 0 if at_end else batch_index,
                                         global_step, schedule_done, wait=True)
                        metrics.flush()
                        yield StateReport("stopped", f"stopped at epoch {epoch}, batch {batch_index}; checkpoint "
                                          f"written to {self.run_dir / CHECKPOINT} (resume with --resume {_quoted(self.run_dir)})",
                                          epoch, {"checkpoint": str(self.run_dir / CHECKPOINT)})
                        return
                if filling:  # rows this epoch did not see (other ranks' shares, pre-resume batches)
                    self._fill_missing(cached, cached.train, cached.fill_loader_dataset or self.data.train, device)
                    cached.train.finish()
                    yield StateReport("cache", f"cached the trunk's output for {cached.train.count:,} training images "
                                      "during this epoch; later epochs train only the layers above the cut", epoch)
                start_batch = 0
                where.update(phase="validation", epoch=epoch, batch=0)
                val_loss, val_acc, val_top5 = self._validate(model, device, amp_dtype, loss_fn, len(classes), cached,
                                                             channels_last)
                if val_loss is not None and not math.isfinite(val_loss):
                    raise TrainingError(self._nan_message(val_loss, epoch, batch_index, global_step, "validation loss"))
                self._check_finite(model, epoch, batch_index, global_step)
                saved = self._checkpoint(model, optimizer, scaler, current, epoch + 1, 0, global_step,
                                         schedule_done, required=epoch + 1 == cfg.epochs,
                                         final=epoch + 1 == cfg.epochs)
                report = EpochReport(epoch, cfg.epochs, loss_sum / max(seen, 1), correct / max(seen, 1),
                                     val_loss, val_acc, val_top5, time.perf_counter() - epoch_start,
                                     str(self.run_dir / CHECKPOINT) if saved else None)
                metrics.write(json.dumps({"type": "epoch", **_as_dict(report)}) + "\n")
                metrics.flush()
                yield report
            self._join_writer()
            if self._writes_files and not (self.run_dir / WEIGHTS).exists():  # resumed after a kill in the last write
                self._check_finite(model, cfg.epochs, 0, global_step)
                self._write_weights(_snapshot_model(model))
            yield StateReport("finished", f"finished {cfg.epochs} epochs; weights in {self.run_dir / WEIGHTS}",
                              cfg.epochs, {"run_dir": str(self.run_dir), "weights": str(self.run_dir / WEIGHTS)})
        except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
            optimizer.zero_grad(set_to_none=True)
            memory = "GPU" if isinstance(exc, torch.cuda.OutOfMemoryError) else "host"
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch = f", batch {where['batch']}" if where["batch"] else ""
            raise TrainingError(f"out of {memory} memory at batch size {cfg.batch_size} during {where['phase']} "
                                f"(epoch {where['epoch']}{batch}); the last good checkpoint is kept. Try --batch-size "
                                f"{max(1, cfg.batch_size // 2)}" + (" or [train] amp = \"bf16\"" if memory == "GPU" else "")) from None
        finally:
            torch.set_num_threads(threads)
            if self._cache is not None:
                self._cache.discard_incomplete()
            self._join_writer(raise_errors=False)
            metrics.close()
            if dist is not None:
                dist.close()
            model.to("cpu")
            if channels_last:
                model.to(memory_format=torch.contiguous_format)

    # --- pieces ----------------------------------------------------------------------
    def _workers(self, dataset: Any = None) -> int:
        cfg = self.plan.train
        if cfg.num_workers is not None:
            return cfg.num_workers
        if getattr(dataset, "keep_decoded", False):  # read from memory after the first pass: workers only compete
            return 0
        return min(4, max(0, (os.cpu_count() or 1) - 1))

    @property
    def _writes_files(self) -> bool:
        return self._dist is None or self._dist.is_main

    def _stop_agreed(self, device: torch.device) -> bool:
        """A stop request, agreed by every rank so all stop after the same batch."""
        if self._dist is None:
            return self._stop.is_set()
        return self._dist.all_max([float(self._stop.is_set())], device)[0] > 0

    def _parallel(self, module: nn.Module, device: torch.device, current: FinetunePlan) -> Any:
        """The module wrapped in DistributedDataParallel when running under torchrun.

        Rebuilt whenever the set of trainable parameters changes (gradual unfreezing):
        DDP fixes its gradient buckets when it is created.
        """
        if self._dist is None or not any(p.requires_grad for p in module.parameters()):
            return module
        key = (id(module), tuple(current.freeze.frozen), tuple(current.freeze.unfrozen))
        if self._ddp_key != key:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self._ddp, self._ddp_key = DistributedDataParallel(module, device_ids=ids), key
        return self._ddp

    def _compiled(self, module: nn.Module) -> Any:
        """torch.compile once per module (recompiling every epoch would cost more than it saves)."""
        if id(module) not in self._compiled_modules:
            self._compiled_modules[id(module)] = torch.compile(module)
        return self._compiled_modules[id(module)]

    def _cache_mode(self) -> tuple[bool, str | None]:
        """Whether to try the feature cache, and why not when not."""
        setting = self.plan.train.cache_features
        if setting is False or setting in ("false", "off"):
            return False, "feature cache not used: [train] cache_features = false"
        if setting == "auto" and self.plan.train.augment:
            return False, ("feature cache not used: augmentation is on, so the frozen trunk's output changes every "
                           "epoch (set [train] augment = false, or cache_features = true to cache without augmentation)")
        return True, None

    def _fill_missing(self, cached: "_Cache", store: Any, dataset: Any, device: torch.device) -> None:
        """Run the trunk over the rows a store still lacks, so it can be marked complete."""
        missing = store.missing()
        if len(missing) == 0:
            return
        subset = torch.utils.data.Subset(_WithIndex(dataset), missing.tolist())
        loader = DataLoader(subset, batch_size=self.plan.train.batch_size, shuffle=False,
                            num_workers=self._workers(dataset), generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            for images, labels, index in loader:
                images = images.to(device, non_blocking=True)
                if images.dim() == 4 and cached.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                store.put(index, cached.trunk(images), labels)

    def _prepare_cache(self, model: nn.Module, applied: AppliedPlan, device: torch.device,
                       current: FinetunePlan, use_cache: bool, channels_last: bool) -> Iterator[Report]:
        """Split the model at its frozen trunk (once per freeze state); open the feature stores.

        With caching on, nothing is computed here: the first cached epoch fills the stores as it
        trains. Without it, the split is used only when a BatchNorm-folded copy of the trunk can
        run under inference mode (measured: resnet18 with its first 3 stages frozen steps ~1.3x
        faster); otherwise the whole model runs as usual.
        """
        from workbench.training import feature_cache as fc

        key = (tuple(current.freeze.frozen), tuple(current.freeze.unfrozen), current.freeze.batchnorm)
        if self._cache_key == key:
            return
        if self._cache is not None:
            self._cache.discard_incomplete()
        self._cache_key, self._cache = key, None
        try:
            split = fc.split_frozen_trunk(model, applied.set_train_mode)
        except fc.CacheUnavailable as exc:
            if use_cache:
                yield StateReport("cache", f"feature cache not used: {exc}")
            return
        folded = fc.folded_trunk(split, channels_last)
        trunk, fold_note = split.trunk, ""
        if folded is not None:
            trunk = folded[0]
            fold_note = (f"; BatchNorm folded into {folded[1]} convolution(s) of a {_human(folded[2])} "
                         "inference copy of the trunk")
        if not use_cache:
            if folded is not None:
                self._cache = _Cache(split, None, None, None, None, trunk, channels_last)
                yield StateReport("trunk", f"frozen trunk runs without autograd: {split.describe()}{fold_note}")
            return
        train_set, fill_loader, fill_dataset = self.data.train, None, None
        if self.plan.train.augment:  # cache_features = true with augmentation on
            from workbench.data import ImageDataset, build_transform

            eval_tf = build_transform(self.ws.backbone.spec, train=False, augment=False)
            train_set = ImageDataset(train_set.items, eval_tf, getattr(train_set, "mode", "RGB"))
            fill_loader = self._make_loader(train_set, self._sampler, device)
            fill_dataset = train_set
            yield StateReport("notice", "cache_features = true: the cached training images use the deterministic "
                              "eval transform (no augmentation)")
        applied.set_train_mode(model)
        fingerprint = str(getattr(self.data, "fingerprint", ""))
        if self._dist is not None:  # ranks must not write the same cache file at once
            fingerprint += f"|rank{self._dist.rank}"
        shape = fc.feature_shape(split, train_set[0][0][None].to(device))
        train_store = fc.open_store(split, len(train_set), shape, fingerprint, "train")
        val_store = None
        if self.data.val is not None and len(self.data.val):
            val_store = fc.open_store(split, len(self.data.val), shape, fingerprint, "val")
        self._cache = _Cache(split, train_store, val_store, fill_loader, fill_dataset, trunk, channels_last)
        total = train_store.nbytes + (val_store.nbytes if val_store else 0)
        where = "on disk (memory-mapped)" if train_store.disk_path is not None else "in memory"
        if train_store.complete:
            plan = f"reusing the complete cache in {train_store.disk_path.parent}"
        else:
            plan = "filled during this epoch, as the trunk runs once per image"
        yield StateReport("cache", f"caching the frozen trunk: {split.describe()}; {len(train_set):,} train + "
                          f"{len(self.data.val) if val_store else 0:,} val images × "
                          f"{'×'.join(map(str, train_store.shape))} floats = {_human(total)} {where}; {plan}"
                          f"{fold_note}",
                          details={"bytes": total, "cut": split.cut})

    def _loader(self, device: torch.device) -> tuple[DataLoader, EpochSampler]:
        cfg = self.plan.train
        dist = self._dist
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.ws.backbone.module.modules())
        self._sampler = EpochSampler(len(self.data.train), cfg.seed, rank=dist.rank if dist else 0,
                                     world_size=dist.world_size if dist else 1,
                                     drop_lone_last_of=cfg.batch_size if has_bn else 0)
        return self._make_loader(self.data.train, self._sampler, device), self._sampler

    def _make_loader(self, dataset: Any, sampler: EpochSampler, device: torch.device) -> DataLoader:
        cfg = self.plan.train
        workers = self._workers(dataset)
        loader = DataLoader(_WithIndex(dataset, cfg.seed), batch_size=cfg.batch_size, sampler=sampler,
                            num_workers=workers,
                            pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                            prefetch_factor=4 if workers > 0 else None, drop_last=False,
                            # Its own generator: creating an iterator must not consume the global RNG
                            # (dropout's), or a resumed run would diverge from an uninterrupted one.
                            generator=torch.Generator().manual_seed(cfg.seed))
        return loader

    def _val_loader(self, device: torch.device) -> DataLoader:
        """One validation loader for the whole run: its workers (if any) start once, not every epoch."""
        if self._val_batches is None:
            dist = self._dist
            val_set: Any = _WithIndex(self.data.val)
            if dist is not None:  # each rank scores its share; the sums are added in _validate
                val_set = torch.utils.data.Subset(val_set, range(len(self.data.val))[dist.rank::dist.world_size])
            workers = self._workers(self.data.val)
            self._val_batches = DataLoader(val_set, batch_size=self.plan.train.batch_size, shuffle=False,
                                           num_workers=workers, pin_memory=device.type == "cuda",
                                           persistent_workers=workers > 0,
                                           generator=torch.Generator().manual_seed(0))
        return self._val_batches

    def _validate(self, model: nn.Module, device: torch.device, amp_dtype: torch.dtype | None,
                  loss_fn: nn.Module, num_classes: int, cached: Any = None, channels_last: bool = False
                  ) -> tuple[float | None, float | None, float | None]:
        if self.data.val is None or len(self.data.val) == 0:
            return None, None, None
        cfg = self.plan.train
        model.eval()
        dist = self._dist
        shard = slice(dist.rank, None, dist.world_size) if dist is not None else slice(None)
        # Cached features → head; images → trunk (filling the store when caching) → head; images → model.
        fill, run_trunk = None, False
        if cached is not None and cached.val is not None and cached.val.complete:
            index_all = torch.arange(len(self.data.val))[shard]
            batches: Any = [(cached.val.features[i], cached.val.labels[i], i) for i in index_all.split(cfg.batch_size)]
            forward: Any = cached.split.head_eval
        else:
            batches = self._val_loader(device)
            forward = model
            if cached is not None:
                fill, forward, run_trunk = cached.val, cached.split.head_eval, True
        loss_sum, top1, top5, seen = 0.0, 0, 0, 0
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            for images, labels, index in batches:
                images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                if channels_last and images.dim() == 4 and (cached is None or run_trunk):
                    images = images.contiguous(memory_format=torch.channels_last)
                if run_trunk:
                    images = cached.trunk(images)
                    if fill is not None:
                        fill.put(index, images, labels)
                logits = forward(images).float()
                loss_sum += loss_fn(logits, labels).item() * labels.shape[0]
                top = logits.topk(min(5, num_classes), dim=1).indices
                top1 += (top[:, 0] == labels).sum().item()
                top5 += (top == labels[:, None]).any(dim=1).sum().item()
                seen += labels.shape[0]
        if fill is not None:
            if dist is not None:  # validation is sharded the same way every epoch: only this share is read
                fill.filled[:] = True
            fill.finish()
        if dist is not None:
            loss_sum, top1, top5, seen = dist.all_sum([loss_sum, top1, top5, seen], device)
        return loss_sum / seen, top1 / seen, (top5 / seen if num_classes > 5 else None)

    def _checkpoint(self, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any, current: FinetunePlan,
                    epoch: int, batch: int, global_step: int, schedule_done: int, wait: bool = False,
                    required: bool = True, final: bool = False) -> bool:
        """Snapshot the training state now; write it (checkpoint + weights) on a background thread.

        Only what can still change is copied: frozen parameters never change, so the live
        tensors are a valid snapshot. ``wait`` blocks until the files are on disk. A checkpoint
        that is not ``required`` is skipped while the previous one is still being written, or
        when one was taken less than ``CHECKPOINT_INTERVAL_S`` ago (epochs of a few
        milliseconds on cached features): training never waits for the disk. Nothing is copied
        when the write is waited for, after the last step (``final``), or when the copy would
        exceed ``CHECKPOINT_COPY_LIMIT_BYTES`` (then the write is waited for: a full fine-tune's
        weights + AdamW state would otherwise sit in memory twice).
        """
        if not self._writes_files:
            return False
        now = time.monotonic()
        if not required and ((self._writer is not None and self._writer.is_alive())
                             or now - self._last_checkpoint < self.CHECKPOINT_INTERVAL_S):
            return False
        self._last_checkpoint = now
        self._join_writer()
        names = {id(p): n for n, p in model.named_parameters()}
        live = wait or final or _copy_bytes(model, optimizer) > self.CHECKPOINT_COPY_LIMIT_BYTES
        state = {
            "model": _snapshot_model(model, copy=not live),
            "optimizer": optimizer.state_dict() if live else _clone_tensors(optimizer.state_dict()),
            "optimizer_layout": [{"name": g["name"], "params": [names[id(p)] for p in g["params"]]}
                                 for g in optimizer.param_groups],
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "epoch": epoch, "batch": batch, "global_step": global_step, "schedule_done": schedule_done,
            "frozen": list(current.freeze.frozen), "unfrozen": list(current.freeze.unfrozen),
            "classes": list(self.data.classes), "rng": rng_state(),
            "data_fingerprint": str(getattr(self.data, "fingerprint", "")),
            "data_counts": [len(self.data.train), len(self.data.val) if self.data.val is not None else 0],
        }
        # The weights file is for export: written at the end and on stop; last.pt holds them meanwhile.
        self._writer = threading.Thread(target=self._write_files, args=(state, required), name="workbench-checkpoint")
        self._writer.start()
        if live and not final:  # the live tensors change with the next step
            self._join_writer()
        return True

    def _write_files(self, state: dict[str, Any], weights: bool) -> None:
        try:
            save_checkpoint(self.run_dir / CHECKPOINT, state)
            if weights:
                self._write_weights(state["model"])
        except BaseException as exc:  # reported on the training thread by _join_writer
            self._writer_error = exc

    def _write_weights(self, tensors: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        with atomic_path(self.run_dir / WEIGHTS) as tmp:
            save_file({k: v.contiguous() for k, v in _untied(tensors).items()}, str(tmp))

    def _check_same_data(self, state: dict[str, Any]) -> None:
        """Resuming on other images (or another split or transform) is refused unless asked for."""
        was, now = state.get("data_fingerprint"), str(getattr(self.data, "fingerprint", ""))
        if not was or was == now or self.allow_data_change:
            return
        counts = state.get("data_counts")
        change = ""
        if counts:
            now_counts = [len(self.data.train), len(self.data.val) if self.data.val is not None else 0]
            if list(counts) != now_counts:
                change = (f" ({counts[0]:,} → {now_counts[0]:,} training images, "
                          f"{counts[1]:,} → {now_counts[1]:,} validation images)")
        raise TrainingError(f"cannot resume {self.run_dir}: the data changed since its checkpoint{change}: images, "
                            "split or preprocessing differ, so the resumed run would not continue the same "
                            "training. Pass --allow-data-change to continue on the new data anyway")

    def _join_writer(self, raise_errors: bool = True) -> None:
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        error, self._writer_error = self._writer_error, None
        if error is not None and raise_errors:
            raise TrainingError(f"cannot write the checkpoint in {self.run_dir}: {error}") from None

    def _write_run_files(self, plan: FinetunePlan, fresh: bool) -> None:
        import tomli_w

        from workbench.project import plan_to_dict

        spec = self.ws.backbone.spec
        recorded = plan.copy() if fresh else self.plan.copy()
        recorded.model.num_classes = spec.num_classes
        recorded.model.label_names = list(spec.label_names or [])
        if recorded.model.source != "timm":
            recorded.model.name = str(self.plan.resolve_path(recorded.model.name))
        for key in ("path", "val_path"):
            value = getattr(recorded.data, key)
            if value is not None:
                setattr(recorded.data, key, str(self.plan.resolve_path(value)))
        if fresh or not (self.run_dir / "project.toml").exists():
            atomic_write_text(self.run_dir / "project.toml", tomli_w.dumps(plan_to_dict(recorded)))
        atomic_write_text(self.run_dir / "spec.json", json.dumps(spec.to_dict(), indent=2))

    def _nan_message(self, value: float | str, epoch: int, batch: int, step: int, what: str = "loss") -> str:
        self._join_writer(raise_errors=False)  # the epoch's checkpoint may still be on its way to disk
        ckpt = self.run_dir / CHECKPOINT
        kept = f"the last good checkpoint is {ckpt}" if ckpt.exists() else "no checkpoint had been written yet"
        return (f"{what} became {value} at epoch {epoch}, batch {batch} (step {step}); training stopped and {kept}. "
                "Lower the learning rate or set [train] grad_clip")

    def _check_finite(self, model: nn.Module, epoch: int, batch: int, step: int) -> None:
        """Stop before a checkpoint or weights file could hold NaN/inf (the loss can stay finite meanwhile)."""
        bad = nonfinite_tensors(model)
        if self._dist is not None:
            bad_any = self._dist.all_max([float(bool(bad))], next(model.parameters()).device)[0] > 0
            if bad_any and not bad:
                bad = ["(on another process)"]
        if bad:
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise TrainingError(self._nan_message(f"non-finite in {len(bad)} tensor(s) ({shown})", epoch, batch,
                                                  step, "the weights"))


@dataclass
class _Cache:
    """The trunk/head split for the current freeze state and its feature stores."""

    split: Any
    train: Any
    val: Any
    fill_loader: DataLoader | None
    fill_loader_dataset: Any = None
    trunk: Any = None  # what computes trunk outputs: the split trunk or its BatchNorm-folded copy
    channels_last: bool = False

    def discard_incomplete(self) -> None:
        for store in (self.train, self.val):
            if store is not None:
                store.discard()


class _WithIndex(torch.utils.data.Dataset):
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
            with _seeded((self.seed * 1_000_003 + epoch) * 10_000_019 + i):
                image, label = self.dataset[i]
        else:
            i = key
            image, label = self.dataset[i]
        return image, label, i


class _seeded:
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


def _cached_batches(store: Any, sampler: EpochSampler, batch_size: int
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The same batches the image loader would give, read from cached trunk outputs."""
    order = torch.tensor(sampler.order()[sampler.start:], dtype=torch.long)
    for index in order.split(batch_size):
        yield store.features.index_select(0, index), store.labels.index_select(0, index), index


def _human(nbytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{nbytes} B"
        nbytes /= 1024
    return f"{nbytes:.1f} GB"


def _quoted(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))


def default_run_dir(plan: FinetunePlan) -> Path:
    base = plan.base_dir or Path.cwd()
    return base / "runs" / datetime.now().strftime("%Y%m%d-%H%M%S")


def _check_logits(model: nn.Module, spec: ModelSpec) -> None:
    """Refuse a module whose output is not (N, classes) logits (a detector's map, probabilities)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(3 * torch.randn(3, *spec.input_size, generator=torch.Generator().manual_seed(2)))
    finally:
        model.train(was_training)
    head_hint = "cut the graph and attach a new head ([head] in the project file)"
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise TrainingError(f"the model's output has shape {shape}, not (N, classes) logits: to train it, {head_hint}")
    if out.shape[1] > 1 and bool((out >= 0).all()) and torch.allclose(out.sum(dim=1), torch.ones(3), atol=1e-4):
        raise TrainingError("the model's output rows sum to 1 (probabilities, not logits): cross-entropy on them "
                            f"would train the wrong thing; {head_hint}")


def _seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _with_base(group: dict[str, Any]) -> dict[str, Any]:
    return {**group, "base_lr": group["lr"]}


def _build_optimizer(cfg: Any, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        # On CPU torch's default AdamW loops over the tensors one by one; the fused kernel (the same
        # update, in one pass) measured 0.35 -> 0.13 CPU-s per resnet18 step.
        on_cpu = all(p.device.type == "cpu" and p.is_floating_point() for g in groups for p in g["params"])
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=on_cpu or None)
    raise WorkbenchError(f"unknown optimizer {cfg.optimizer!r} (adamw, sgd)")


def _groups_from_layout(model: nn.Module, layout: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Optimizer groups in the exact order a checkpoint recorded (LRs come back with its state)."""
    named = dict(model.named_parameters())
    return [{"name": g["name"], "params": [named[n] for n in g["params"]], "base_lr": 0.0} for g in layout]


def _extend_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer, current: FinetunePlan, ws: Workspace,
                      epoch: int) -> tuple[AppliedPlan, int]:
    """Apply the (more unfrozen) plan and add newly trainable parameters as new optimizer groups."""
    applied = apply_plan(model, resolve_plan(ws.tree, current, ws.default_groups()))
    present = {id(p) for g in optimizer.param_groups for p in g["params"]}
    used = {g["name"] for g in optimizer.param_groups}
    added = 0
    for group in applied.param_groups:
        new = [p for p in group["params"] if id(p) not in present]
        if not new:
            continue
        name = group["name"] if group["name"] not in used else f"{group['name']}@{epoch}"
        used.add(name)
        optimizer.add_param_group({**group, "params": new, "name": name, "base_lr": group["lr"]})
        added += sum(p.numel() for p in new)
    return applied, added


def _snapshot_model(model: nn.Module, copy: bool = True) -> dict[str, torch.Tensor]:
    """state_dict tensors on the CPU, copied (``copy``) unless they are frozen parameters (which never change)."""
    out = {}
    for key, value in model.state_dict(keep_vars=True).items():
        tensor = value.detach()
        frozen = isinstance(value, nn.Parameter) and not value.requires_grad
        if tensor.device.type != "cpu":
            out[key] = tensor.cpu()
        else:
            out[key] = tensor if frozen or not copy else tensor.clone()
    return out


def _copy_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Bytes a background snapshot copies: what can change in the model, and the optimizer state."""
    frozen = {id(p) for p in model.parameters() if not p.requires_grad}
    total = sum(t.numel() * t.element_size() for t in model.state_dict(keep_vars=True).values()
                if id(t) not in frozen)
    for per_param in optimizer.state.values():
        total += sum(v.numel() * v.element_size() for v in per_param.values() if isinstance(v, torch.Tensor))
    return total


def _clone_tensors(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone() if value.device.type == "cpu" else value.detach().cpu()
    if isinstance(value, dict):
        return {k: _clone_tensors(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone_tensors(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_clone_tensors(v) for v in value)
    return value


def _untied(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory; clone the later ones."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else id(v)
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def _as_dict(report: Any) -> dict[str, Any]:
    return dict(vars(report))  # reports hold plain values only: no deep copy needed
