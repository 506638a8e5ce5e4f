"""A rank's view of a run, for the DDP tests: ``torchrun … -m tests.ddp_probe PROJECT RUN OUT [--resume]``.

Trains the project as ``workbench train`` does (``prepare_training``), and records what only the
rank itself can see: its trainable parameters at every epoch's first batch, its weights and
BatchNorm statistics at the start and at the end, and its reports. Each rank writes
``OUT/rank<N>.pt``. ``PROBE_HANG_AT=epoch:batch`` makes every rank write ``OUT/hanging<N>`` there and
wait, so the test can ``kill -9`` the whole job at a known place.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

from workbench.project import load_project
from workbench.training.callbacks import Callback
from workbench.training.prepare import prepare_training
from workbench.training.state import TrainState


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}


class Probe(Callback):
    def __init__(self, out: Path, hang_at: tuple[int, int] | None) -> None:
        self.out, self.hang_at = out, hang_at
        self.trainable: dict[int, list[str]] = {}
        self.start: dict[str, torch.Tensor] = {}
        self.frozen_grads: list[str] = []

    def before_fit(self, t: TrainState) -> None:
        self.start = _snapshot(t.model)

    def before_batch(self, t: TrainState) -> None:
        if t.epoch not in self.trainable:
            self.trainable[t.epoch] = sorted(n for n, p in t.model.named_parameters() if p.requires_grad)
        if self.hang_at == (t.epoch, t.batch):
            t.trainer._writer.join()  # the last epoch checkpoint is on disk before the kill
            (self.out / f"hanging{t.dist.rank if t.dist else 0}").write_text(str(os.getpid()))
            while True:
                time.sleep(1)

    def after_step(self, t: TrainState) -> None:
        self.frozen_grads += [n for n, p in t.model.named_parameters() if not p.requires_grad and p.grad is not None]


def main(argv: list[str]) -> None:
    project, run_dir, out = Path(argv[0]), Path(argv[1]), Path(argv[2])
    resume = "--resume" in argv
    hang = os.environ.get("PROBE_HANG_AT")
    probe = Probe(out, tuple(map(int, hang.split(":"))) if hang and not resume else None)  # type: ignore[arg-type]
    plan = load_project(run_dir / "project.toml" if resume else project)
    trainer = prepare_training(plan, run_dir, resume=resume).trainer
    trainer.callbacks.append(probe)
    if os.environ.get("PROBE_CHECKPOINT_EVERY_EPOCH"):  # no epoch checkpoint skipped for being too cheap to matter
        trainer._writer.interval_s, trainer._writer.MAX_WRITE_SHARE = 0.0, float("inf")
    reports = [(type(r).__name__, getattr(r, "kind", ""), getattr(r, "message", "")) for r in trainer.run()]
    rank = int(os.environ.get("RANK", "0"))
    torch.save({"trainable": probe.trainable, "start": probe.start, "end": _snapshot(trainer.model),
                "frozen_grads": probe.frozen_grads, "reports": reports}, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1:])
