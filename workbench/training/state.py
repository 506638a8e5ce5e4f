"""``TrainState``: what a running training holds; the loop and every callback read and change it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from workbench.apply import AppliedPlan
from workbench.layer_tree import LayerTree
from workbench.plan import FinetunePlan, TrainConfig
from workbench.run_folder import RunDir
from workbench.spec import ModelSpec
from workbench.training.checkpoint_file import Position
from workbench.training.distributed import Distributed
from workbench.training.reports import EpochReport, Report, StepReport
from workbench.training.sampler import EpochSampler

if TYPE_CHECKING:
    from workbench.training.trainer import Trainer

# (images or features, labels, dataset indices) for one batch
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass
class TrainState:
    """One run in progress. Fields marked "per epoch"/"per batch" are valid from that event on."""

    trainer: Trainer
    cfg: TrainConfig
    plan: FinetunePlan  # the plan as it stands now: gradual unfreezing changes its freeze lists
    tree: LayerTree
    model: nn.Module
    spec: ModelSpec
    data: Any  # a workbench.data.DataBundle (train, val, classes, fingerprint)
    run_dir: RunDir
    writes_files: bool  # False on every rank but 0 under torchrun
    dist: Distributed | None
    device: torch.device
    amp_dtype: torch.dtype | None
    precision_why: str  # why the precision differs from what the setting usually gives ("" when it does not)
    channels_last: bool
    workers: int  # loader worker processes
    loader: DataLoader
    sampler: EpochSampler
    batches: int  # per epoch
    total_steps: int
    warmup_steps: int
    applied: AppliedPlan  # requires_grad, BatchNorm modes and groups of ``plan`` on ``model``
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    resumed_at: Position | None  # where the checkpoint this run continues was taken, if any
    epoch: int  # 0-based
    batch: int  # batches done in this epoch (1-based index of the current one)
    global_step: int  # optimizer steps done in the whole run
    phase: str = "setup"  # setup | feature caching | training | validation (named in an out-of-memory error)
    # per epoch
    train_batches: Iterable[Batch] = ()  # the loader's image batches, or cached trunk outputs
    train_module: nn.Module | None = None  # what they go through: the model, or the head above a cached trunk
    val_batches: Iterable[Batch] | None = None  # None: the validation images
    val_loader: DataLoader | None = None  # the validation images' loader, built once per run
    val_module: nn.Module | None = None  # None: the model
    val_inputs: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_top5: float | None = None
    seen: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    epoch_start: float = 0.0
    # per batch
    images: torch.Tensor = field(init=False)
    labels: torch.Tensor = field(init=False)
    index: torch.Tensor = field(init=False)
    loss: torch.Tensor = field(init=False)
    loss_value: float = float("nan")
    accuracy: float = 0.0
    report: StepReport | EpochReport | None = None
    step_times: list[float] = field(default_factory=list)  # the last 20 steps' seconds (throughput, ETA)
    last_step_time: float = 0.0
    pending: list[Report] = field(default_factory=list)

    def emit(self, report: Report) -> None:
        """Report to the consumer (yielded after the current event)."""
        self.pending.append(report)

    def drain(self) -> Iterator[Report]:
        while self.pending:
            yield self.pending.pop(0)

    def request_stop(self) -> None:
        """Stop after the current batch, with a checkpoint (as the GUI's Stop button does)."""
        self.trainer.request_stop()

    def new_epoch(self, epoch: int) -> None:
        """Reset what is per epoch; ``batch`` keeps the resumed position in the first epoch."""
        self.epoch, self.phase = epoch, "feature caching"
        self.train_batches, self.train_module = self.loader, self.model
        self.val_batches = self.val_module = self.val_inputs = None
        self.val_loss = self.val_accuracy = self.val_top5 = None
        self.report = None
        self.seen, self.loss_sum, self.correct = 0, 0.0, 0

    def start_clock(self) -> None:
        self.epoch_start = self.last_step_time = time.perf_counter()
