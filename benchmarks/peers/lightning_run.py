"""PyTorch Lightning: a LightningModule over the same model and data; gradual unfreezing through
Lightning's ``BaseFinetuning`` (the base of ``BackboneFinetuning``), one group per epoch like the others."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402
import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from lightning.pytorch.callbacks import BaseFinetuning, Callback  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402


class Module(L.LightningModule):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = c.model(cfg)
        self.groups = c.group_modules(self.net)
        self.cl = cfg["channels_last"]
        if self.cl:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.correct = self.seen = 0

    def forward(self, x):
        if self.cl:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def on_train_epoch_start(self) -> None:
        c.set_frozen_bn_eval(self.net)  # after the finetuning callback (callbacks run first)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.correct += int((self(x).argmax(1) == y).sum())
        self.seen += len(y)

    def configure_optimizers(self):
        strategy = self.cfg["strategy"]
        active = c.trainable_groups(strategy, 0, self.cfg["epochs"])
        groups = [{"params": [p for m in self.groups[i] for p in m.parameters()],
                   "lr": c.group_lr(strategy, i, self.cfg["lr"])} for i in active]
        return torch.optim.AdamW(groups, lr=self.cfg["lr"], weight_decay=self.cfg["weight_decay"])


class Freezing(BaseFinetuning):
    """Freeze what the strategy keeps frozen; gradual: unfreeze one more group at each epoch start."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.cfg = cfg

    def freeze_before_training(self, pl_module) -> None:
        active = c.trainable_groups(self.cfg["strategy"], 0, self.cfg["epochs"])
        frozen = [m for i, mods in enumerate(pl_module.groups) if i not in active for m in mods]
        if frozen:
            self.freeze(frozen, train_bn=False)

    def finetune_function(self, pl_module, epoch, optimizer) -> None:
        if self.cfg["strategy"] != "gradual" or epoch == 0:
            return
        before = set(c.trainable_groups("gradual", epoch - 1, self.cfg["epochs"]))
        for i in c.trainable_groups("gradual", epoch, self.cfg["epochs"]):
            if i not in before:
                self.unfreeze_and_add_param_group(pl_module.groups[i], optimizer, lr=self.cfg["lr"], train_bn=True)


class Markers(Callback):
    def __init__(self) -> None:
        self.steps = 0

    def on_train_start(self, trainer, pl_module) -> None:
        c.mark("ready")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += 1
        if self.steps == 1:
            c.mark("step1")

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        pl_module.correct = pl_module.seen = 0

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            c.mark("epoch", epoch=trainer.current_epoch, val_acc=pl_module.correct / max(pl_module.seen, 1))


def main() -> None:
    cfg = c.config()
    train_set, val_set = c.load_data(cfg)
    module = Module(cfg)
    train = DataLoader(train_set, batch_size=cfg["batch_size"], shuffle=True,
                       generator=torch.Generator().manual_seed(cfg["seed"]))
    val = DataLoader(val_set, batch_size=cfg["batch_size"])
    trainer = L.Trainer(max_epochs=cfg["epochs"], accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, callbacks=[Freezing(cfg), Markers()])
    trainer.fit(module, train, val)


if __name__ == "__main__":
    main()
