"""The Trainer: a plain-Python generator that trains a workspace's plan and yields reports.

It trains a copy of the workspace's model (``trainer.model``; ``trainer.trained`` after the
run), so the workspace is never changed and several runs can start from one workspace.
One report at least per batch, so pause/stop requests (thread-safe) are honoured within
one batch. The loop (``Trainer.run``) fires named events (``workbench.training.callbacks``);
gradual unfreezing, the feature cache, the NaN/inf guard, checkpoints and metrics are
callbacks on them. Guarantees (each has a test): frozen parameters are bit-identical after
training, have no ``.grad`` and no optimizer state; frozen BatchNorm statistics do not move
under the ``freeze`` policy; resuming gives the same next-step loss as not stopping.
"""

from __future__ import annotations

import copy
import shlex
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from workbench.atomic import disk_full, disk_full_message
from workbench.errors import DiskFullError, TrainingError
from workbench.plan import FinetunePlan
from workbench.run_folder import RunClaim, RunDir
from workbench.training.callback_states import check_state_keys, in_order
from workbench.training.callbacks import Callback, installed_callbacks
from workbench.training.checkpoint_callback import Checkpointing
from workbench.training.checkpoint_writer import CheckpointWriter, state_bytes
from workbench.training.distributed import Distributed, from_environment
from workbench.training.feature_cache_callback import FeatureCaching
from workbench.training.metrics import MetricsWriter
from workbench.training.nonfinite import NonFiniteGuard
from workbench.training.reports import EpochReport, Report, StateReport, StepReport
from workbench.training.schedule import lr_factor
from workbench.training.startup import recipe_toml, recorded_plan, start_run
from workbench.training.state import TrainState
from workbench.training.unfreeze import GradualUnfreezing
from workbench.training.validation import validate
from workbench.workspace import TrainedModel, Workspace

__all__ = ["Trainer", "TrainingError", "default_run_dir"]


class Trainer:
    """Train ``workspace.plan`` on ``data`` (a ``workbench.data.DataBundle``).

    ``run()`` is the generator; ``request_pause/resume/stop`` may be called from any thread.
    ``callbacks`` (``workbench.training.callbacks.Callback``) run with the built-in ones in ascending ``order``.
    The workspace is left as it is: the model, its spec and the plan are copied here (the data is not).
    """

    CHECKPOINT_INTERVAL_S = 2.0  # at most this much training is lost to a crash between epoch checkpoints

    def __init__(self, workspace: Workspace, data: Any, run_dir: Path | None = None, resume: bool = False,
                 overwrite: bool = False, allow_data_change: bool = False,
                 callbacks: Sequence[Callback] = (), copy_model: bool = True) -> None:
        """``copy_model=False``: train the workspace's model itself, not a copy (for a caller that made the
        workspace only for this run, like ``workbench train``: a copy would hold every weight twice)."""
        self.ws = workspace
        self.data = data
        self.plan: FinetunePlan = workspace.plan.copy()
        self.model: nn.Module = copy.deepcopy(workspace.backbone.module) if copy_model else workspace.backbone.module
        self.spec = copy.deepcopy(workspace.backbone.spec)  # gets the data's class names
        self._plan_now = self.plan  # the freeze state reached (gradual unfreezing), after a run
        self.run_dir = Path(run_dir) if run_dir else default_run_dir(self.plan)
        self.run_folder = RunDir(self.run_dir)
        self.resume = resume
        self.overwrite = overwrite
        self.allow_data_change = allow_data_change
        self.dist: Distributed | None = None
        self._writer = writer = CheckpointWriter(self.run_folder, self.CHECKPOINT_INTERVAL_S)
        self.callbacks: list[Callback] = in_order([GradualUnfreezing(), FeatureCaching(), NonFiniteGuard(writer),
                                                   Checkpointing(writer), MetricsWriter(),
                                                   *installed_callbacks(self.plan.train.callbacks), *callbacks])
        check_state_keys(self.callbacks)
        self._compiled_modules: dict[int, Any] = {}
        self._ddp: Any = None
        self._ddp_key: Any = None
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

    @property
    def trained(self) -> TrainedModel:
        """The model as trained (after ``run()``; before it, the starting weights), its spec and recipe.

        The plan's freeze state is the one reached (gradual unfreezing); ``recipe_toml`` is the
        recipe as the run folder records it. The GUI adopts this into its workspace after a run.
        """
        recipe = recorded_plan(self.plan, self.plan, self.spec)
        plan = recipe.copy()
        plan.freeze = copy.deepcopy(self._plan_now.freeze)
        return TrainedModel(self.model, self.spec, plan, recipe_toml(recipe))

    @property
    def writes_files(self) -> bool:
        """Only rank 0 writes the run folder under torchrun."""
        return self.dist is None or self.dist.is_main

    # --- the loop --------------------------------------------------------------------
    def run(self) -> Iterator[Report]:
        """Train, holding the run folder (its lock and ``status.json``) throughout."""
        self.dist = from_environment()
        with RunClaim(self.run_folder, resume=self.resume, overwrite=self.overwrite,
                      writes=self.writes_files) as claim:
            t = start_run(self)
            claim.started()
            try:
                yield from self._fire("before_fit", t)
                for epoch in range(t.epoch, t.cfg.epochs):
                    t.new_epoch(epoch)
                    yield from self._fire("before_epoch", t)
                    t.applied.set_train_mode(t.model)
                    t.sampler.set_epoch(epoch, t.batch * t.cfg.batch_size)
                    forward = self._forward(t)
                    t.start_clock()
                    for images, labels, index in t.train_batches:
                        yield from self._train_batch(t, forward, images, labels, index)
                        yield from self._pause_point(t)
                        if self._stop_agreed(t):
                            yield from self._fire("on_stop", t)
                            report = StateReport("stopped", f"stopped at epoch {epoch}, batch {t.batch}; checkpoint "
                                                 f"written to {t.run_dir.checkpoint} (resume with --resume "
                                                 f"{shlex.quote(str(self.run_dir))})", epoch,
                                                 {"checkpoint": str(t.run_dir.checkpoint)})
                            claim.ended(report.kind, report.message)
                            yield report
                            return
                    yield from self._fire("before_validate", t)
                    t.phase = "validation"
                    t.val_loss, t.val_accuracy, t.val_top5 = validate(t)
                    yield from self._fire("after_validate", t)
                    t.report = epoch_report = EpochReport(
                        epoch, t.cfg.epochs, t.loss_sum / max(t.seen, 1), t.correct / max(t.seen, 1), t.val_loss,
                        t.val_accuracy, t.val_top5, time.perf_counter() - t.epoch_start)
                    yield from self._fire("after_epoch", t)
                    yield t.report or epoch_report  # (Checkpointing names the epoch's checkpoint in it)
                    t.batch = 0
                yield from self._fire("after_fit", t)
                report = StateReport("finished", f"finished {t.cfg.epochs} epochs; weights in {t.run_dir.weights}",
                                     t.cfg.epochs, {"run_dir": str(self.run_dir), "weights": str(t.run_dir.weights)})
                claim.ended(report.kind, report.message)
                yield report
            except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
                raise self._out_of_memory(t, exc) from None
            except (OSError, DiskFullError) as exc:
                if not disk_full(exc, self.run_dir):
                    raise
                raise self._disk_full(t) from None
            finally:
                self._teardown(t)

    # --- pieces of the loop ----------------------------------------------------------
    def _train_batch(self, t: TrainState, forward: Any, images: torch.Tensor, labels: torch.Tensor,
                     index: torch.Tensor) -> Iterator[Report]:
        """One optimizer step; yields what callbacks reported, then its StepReport."""
        cfg = t.cfg
        t.batch += 1
        t.phase = "training"
        t.images = images.to(t.device, non_blocking=True)
        t.labels = labels.to(t.device, non_blocking=True)
        t.index = index
        if t.channels_last and t.images.dim() == 4:
            t.images = t.images.contiguous(memory_format=torch.channels_last)
        factor = lr_factor(cfg.scheduler, t.global_step, t.total_steps, t.warmup_steps)
        for group in t.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        with torch.autocast(t.device.type, dtype=t.amp_dtype, enabled=t.amp_dtype is not None):
            self._call("before_batch", t)  # (no yield under autocast: the consumer would run inside it)
            logits = forward(t.images)
            t.loss = t.loss_fn(logits.float(), t.labels)
        t.loss_value, t.accuracy = torch.stack([t.loss.detach(), (logits.argmax(1) == t.labels).float().mean()]).tolist()
        self._call("after_loss", t)
        t.scaler.scale(t.loss).backward()
        if cfg.grad_clip:
            t.scaler.unscale_(t.optimizer)
            torch.nn.utils.clip_grad_norm_([p for g in t.optimizer.param_groups for p in g["params"]], cfg.grad_clip)
        t.scaler.step(t.optimizer)
        t.scaler.update()
        t.optimizer.zero_grad(set_to_none=True)
        t.global_step += 1
        self._call("after_step", t)
        now = time.perf_counter()
        t.step_times = (t.step_times + [now - t.last_step_time])[-20:]
        t.last_step_time = now
        n = t.labels.shape[0]
        t.seen += n
        t.loss_sum += t.loss_value * n
        t.correct += round(t.accuracy * n)
        avg = sum(t.step_times) / len(t.step_times)
        t.report = report = StepReport(t.epoch, t.batch, t.batches, t.global_step, t.loss_value, t.accuracy,
                                       {g["name"]: g["lr"] for g in t.optimizer.param_groups},
                                       n / max(t.step_times[-1], 1e-9), avg * (t.total_steps - t.global_step))
        yield from self._fire("after_batch", t)
        yield report

    def _fire(self, event: str, t: TrainState) -> Iterator[Report]:
        """Call ``event`` on every callback in order, yielding what each reported right after it."""
        for callback in self.callbacks:
            getattr(callback, event)(t)
            yield from t.drain()

    def _call(self, event: str, t: TrainState) -> None:
        """Call ``event`` on every callback; what they report is yielded after the next fired event."""
        for callback in self.callbacks:
            getattr(callback, event)(t)

    def _pause_point(self, t: TrainState) -> Iterator[Report]:
        """Wait here while paused; a stop request ends the wait."""
        if not self._pause_agreed(t):
            return
        yield StateReport("paused", f"paused at epoch {t.epoch}, batch {t.batch}", t.epoch)
        while self._pause_agreed(t):
            self._wake.wait(0.2)
            self._wake.clear()
        if not self._stop.is_set():
            yield StateReport("resumed", f"resumed at epoch {t.epoch}, batch {t.batch}", t.epoch)
        t.last_step_time = time.perf_counter()

    def _pause_agreed(self, t: TrainState) -> bool:
        """A pause request and no stop request; under torchrun one rank's pause holds every rank at this batch.

        (A rank left running would wait in its next collective, and NCCL ends such a wait after 10 minutes.)
        """
        if self.dist is None:
            return self._pause.is_set() and not self._stop.is_set()
        pause, stop = self.dist.all_max([float(self._pause.is_set()), float(self._stop.is_set())], t.device)
        return pause > 0 and stop == 0

    def _stop_agreed(self, t: TrainState) -> bool:
        """A stop request, agreed by every rank so all stop after the same batch."""
        if self.dist is None:
            return self._stop.is_set()
        return self.dist.all_max([float(self._stop.is_set())], t.device)[0] > 0

    def _forward(self, t: TrainState) -> Any:
        """What this epoch's batches go through: DDP-wrapped under torchrun, compiled when asked."""
        module = t.train_module if t.train_module is not None else t.model
        forward = self._parallel(module, t)
        if t.cfg.compile:  # once per module: recompiling every epoch would cost more than it saves
            if id(forward) not in self._compiled_modules:
                self._compiled_modules[id(forward)] = torch.compile(forward)
            forward = self._compiled_modules[id(forward)]
        return forward

    def _parallel(self, module: nn.Module, t: TrainState) -> Any:
        """The module wrapped in DistributedDataParallel when running under torchrun.

        Rebuilt whenever the set of trainable parameters changes (gradual unfreezing):
        DDP fixes its gradient buckets when it is created.
        """
        if self.dist is None or not any(p.requires_grad for p in module.parameters()):
            return module
        key = (id(module), tuple(t.plan.freeze.frozen), tuple(t.plan.freeze.unfrozen))
        if self._ddp_key != key:
            from torch.nn.parallel import DistributedDataParallel

            ids = [t.device.index] if t.device.type == "cuda" else None
            self._ddp, self._ddp_key = DistributedDataParallel(module, device_ids=ids), key
        return self._ddp

    def _out_of_memory(self, t: TrainState, exc: BaseException) -> TrainingError:
        t.optimizer.zero_grad(set_to_none=True)
        memory = "GPU" if isinstance(exc, torch.cuda.OutOfMemoryError) else "host"
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        batch = f", batch {t.batch}" if t.phase == "training" else ""
        size = t.cfg.batch_size
        return TrainingError(f"out of {memory} memory at batch size {size} during {t.phase} (epoch {t.epoch}{batch}); "
                             f"the last good checkpoint is kept. Try --batch-size {max(1, size // 2)}"
                             + (" or [train] amp = \"bf16\"" if memory == "GPU" else ""))

    def _disk_full(self, t: TrainState) -> TrainingError:
        """A full disk is a clean stop: where, how much is needed, what is kept, how to go on."""
        needed = state_bytes(t.model, t.optimizer)  # what one checkpoint holds
        batch = f", batch {t.batch}" if t.phase == "training" else ""
        self._writer.join(raise_errors=False)  # a write in flight decides what is kept
        kept = self._writer.written
        if kept is not None or t.run_dir.checkpoint.is_file():
            at = f" (it resumes at epoch {kept[0]}, batch {kept[1]})" if kept is not None else ""
            then = (f"the last good checkpoint is kept in {t.run_dir.checkpoint}{at}; free some space, then continue "
                    f"with: workbench train --resume {shlex.quote(str(self.run_dir))}")
        else:
            then = "no checkpoint had been written yet; free some space and train again"
        return TrainingError(f"{disk_full_message(self.run_dir, needed)} (one checkpoint): training stopped during "
                             f"{t.phase} of epoch {t.epoch}{batch}; {then}")

    def _teardown(self, t: TrainState) -> None:
        self._plan_now = t.plan
        self._call("teardown", t)
        if self.dist is not None:
            self.dist.close()
        t.model.to("cpu")
        if t.channels_last:
            t.model.to(memory_format=torch.contiguous_format)


def default_run_dir(plan: FinetunePlan) -> Path:
    """``runs/<time>`` beside the project file (or the working folder)."""
    return RunDir.timestamped((plan.base_dir or Path.cwd()) / "runs").path
