"""Checkpoints written on a background thread, from a snapshot taken on the training thread.

Only what can still change is copied: frozen parameters never change, so the live tensors
are a valid snapshot. A write error is raised on the training thread at the next ``join``.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from workbench.atomic import atomic_path
from workbench.errors import DiskFullError, TrainingError
from workbench.run_folder import RunDir
from workbench.safetensors_file import write_safetensors
from workbench.training.callback_states import collect_states
from workbench.training.checkpoint_file import Checkpoint, rng_state, save_checkpoint
from workbench.training.optimizer import optimizer_layout

if TYPE_CHECKING:
    from workbench.training.state import TrainState


class CheckpointWriter:
    """Snapshots the training state and writes ``checkpoints/last.pt`` (+ the weights file) off-thread."""

    COPY_LIMIT_BYTES = 32 << 20  # larger snapshots are written from the live tensors, waited for
    # Epoch checkpoints take at most this share of training time: one is skipped until the training since the
    # last (or since the start) is at least the write's cost / this share. The cost is the last write's, or
    # before any was written, its size at ESTIMATED_BYTES_PER_S. (Measured on 2 cores: resnet18's full
    # fine-tune checkpoint, 132 MB, costs 0.3-0.4 CPU-s, as much as one epoch of a 160-image job.)
    MAX_WRITE_SHARE = 0.05
    ESTIMATED_BYTES_PER_S = 400e6

    def __init__(self, run_dir: RunDir, interval_s: float) -> None:
        self.run_dir = run_dir
        self.interval_s = interval_s
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._last = float("-inf")
        self._since = time.monotonic()  # the last checkpoint, or the start of training
        self._cost: float | None = None  # seconds the last checkpoint took, snapshot to disk
        self.written: tuple[int, int] | None = None  # (epoch, batch) of the last checkpoint on disk, this session

    def begin(self) -> None:
        """Training starts now (the first epoch checkpoint's share is counted from here)."""
        self._since = time.monotonic()

    def save(self, t: TrainState, epoch: int, batch: int, *, wait: bool = False, required: bool = True,
             final: bool = False) -> bool:
        """Snapshot now, write in the background; returns whether a checkpoint was taken.

        ``epoch``/``batch`` are where a resume continues. ``wait`` blocks until the files are on
        disk. A checkpoint that is not ``required`` is skipped while the previous one is still
        being written, or when one was taken less than ``interval_s`` ago (epochs of a few
        milliseconds on cached features): training never waits for the disk. Nothing is copied
        when the write is waited for, after the last step (``final``), or when the copy would
        exceed ``COPY_LIMIT_BYTES`` (then the write is waited for: a full fine-tune's weights +
        AdamW state would otherwise sit in memory twice).
        """
        if not t.writes_files:
            return False
        now = time.monotonic()
        if not required and ((self._thread is not None and self._thread.is_alive())
                             or now - self._last < self.interval_s
                             or now - self._since < self._write_cost(t) / self.MAX_WRITE_SHARE):
            return False
        self._last = now
        self.join()
        data = t.data
        live = wait or final or state_bytes(t.model, t.optimizer, frozen=False) > self.COPY_LIMIT_BYTES
        checkpoint = Checkpoint(
            epoch=epoch, batch=batch, global_step=t.global_step,
            model=snapshot_model(t.model, copy=not live),
            optimizer=t.optimizer.state_dict() if live else clone_tensors(t.optimizer.state_dict()),
            optimizer_layout=optimizer_layout(t.model, t.optimizer),
            scaler=t.scaler.state_dict() if t.scaler.is_enabled() else None,
            frozen=list(t.plan.freeze.frozen), unfrozen=list(t.plan.freeze.unfrozen),
            classes=list(data.classes), rng=rng_state(),
            data_fingerprint=str(getattr(data, "fingerprint", "")),
            data_counts=[len(data.train), len(data.val) if data.val is not None else 0],
            callbacks=collect_states(t.trainer.callbacks, clone=not live))
        # The weights file is for export: written at the end and on stop; last.pt holds them meanwhile.
        self._thread = threading.Thread(target=self._write, args=(checkpoint, required, now), name="workbench-checkpoint")
        self._thread.start()
        if live and not final:  # the live tensors change with the next step
            self.join()
        return True

    def _write_cost(self, t: TrainState) -> float:
        if self._cost is not None:
            return self._cost
        return state_bytes(t.model, t.optimizer) / self.ESTIMATED_BYTES_PER_S

    def _write(self, checkpoint: Checkpoint, weights: bool, started: float) -> None:
        try:
            if weights:  # the weights file first: the checkpoint then names it instead of holding every weight twice
                self.write_weights(checkpoint.model)
                checkpoint = replace(checkpoint, model={}, model_file=os.path.relpath(
                    self.run_dir.weights, self.run_dir.checkpoint.parent))
            save_checkpoint(self.run_dir.checkpoint, checkpoint)
            self.written = (checkpoint.epoch, checkpoint.batch)
            self._since = time.monotonic()
            self._cost = self._since - started
        except BaseException as exc:  # reported on the training thread by join()
            self._error = exc

    def write_weights(self, tensors: dict[str, torch.Tensor]) -> None:
        """``model.safetensors``, atomically (what export and ``load_run`` read)."""
        with atomic_path(self.run_dir.weights) as tmp:
            write_safetensors(tensors, tmp)

    def join(self, raise_errors: bool = True) -> None:
        """Wait for the write in flight; raise its error (as a TrainingError) unless told not to."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None and raise_errors:
            if isinstance(error, DiskFullError):
                raise DiskFullError(str(error)) from None  # the Trainer turns it into a clean stop
            raise TrainingError(f"cannot write the checkpoint in {self.run_dir}: {error}") from None


def snapshot_model(model: nn.Module, copy: bool = True) -> dict[str, torch.Tensor]:
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


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer, frozen: bool = True) -> int:
    """Bytes of the model's weights and buffers (without frozen parameters unless ``frozen``) and the optimizer state.

    With ``frozen``: what a checkpoint holds. Without: what a background snapshot copies (frozen
    parameters never change, so the live tensors serve).
    """
    skip = set() if frozen else {id(p) for p in model.parameters() if not p.requires_grad}
    total = sum(t.numel() * t.element_size() for t in model.state_dict(keep_vars=True).values() if id(t) not in skip)
    for per_param in optimizer.state.values():
        total += sum(v.numel() * v.element_size() for v in per_param.values() if isinstance(v, torch.Tensor))
    return total


def clone_tensors(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone() if value.device.type == "cpu" else value.detach().cpu()
    if isinstance(value, dict):
        return {k: clone_tensors(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone_tensors(v) for v in value]
    if isinstance(value, tuple):
        return tuple(clone_tensors(v) for v in value)
    return value
