"""fastai: a Learner over the same model and data, groups from a splitter, ``freeze_to`` + ``fit``
(constant LR), frozen BatchNorm kept in eval mode (``train_bn=False`` + ``BnFreeze``), fastai's own
Adam set up as AdamW (decoupled weight decay 0.01 on every parameter, betas 0.9/0.999, eps 1e-8)."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402
import torch  # noqa: E402
from fastai.callback.core import Callback  # noqa: E402
from fastai.callback.progress import ProgressCallback  # noqa: E402
from fastai.callback.training import BnFreeze  # noqa: E402
from fastai.data.core import DataLoaders  # noqa: E402
from fastai.learner import Learner  # noqa: E402
from fastai.losses import CrossEntropyLossFlat  # noqa: E402
from fastai.metrics import accuracy  # noqa: E402
from fastai.optimizer import Adam  # noqa: E402


class Markers(Callback):
    order = 100

    def __init__(self, offset: int = 0) -> None:
        self.steps, self.offset = 0, offset

    def before_fit(self) -> None:
        if self.offset == 0:
            c.mark("ready")

    def after_batch(self) -> None:
        if self.training:
            self.steps += 1
            if self.steps == 1 and self.offset == 0:
                c.mark("step1")

    def after_epoch(self) -> None:
        c.mark("epoch", epoch=self.offset + self.epoch, val_acc=float(self.recorder.values[-1][-1]))


class ChannelsLast(Callback):
    def before_batch(self) -> None:
        self.learn.xb = tuple(x.contiguous(memory_format=torch.channels_last) for x in self.xb)


def main() -> None:
    cfg = c.config()
    strategy, epochs, lr = cfg["strategy"], cfg["epochs"], cfg["lr"]
    train_set, val_set = c.load_data(cfg)
    net = c.model(cfg)
    cbs: list = [BnFreeze()]
    if cfg["channels_last"]:
        net = net.to(memory_format=torch.channels_last)
        cbs.append(ChannelsLast())
    dls = DataLoaders.from_dsets(train_set, val_set, bs=cfg["batch_size"], device=torch.device("cpu"),
                                 num_workers=0)

    def splitter(m):
        return [[p for mod in group for p in mod.parameters()] for group in c.group_modules(m)]

    opt = partial(Adam, mom=0.9, sqr_mom=0.999, eps=1e-8, wd=cfg["weight_decay"], decouple_wd=True)
    learn = Learner(dls, net, loss_func=CrossEntropyLossFlat(), opt_func=opt, metrics=accuracy,
                    splitter=splitter, train_bn=False, wd_bn_bias=True, cbs=cbs)
    learn.remove_cb(ProgressCallback)
    n = len(c.GROUPS)
    lrs = [c.group_lr(strategy, i, lr) for i in range(n)] if strategy == "discriminative" else lr
    if strategy == "gradual":
        for epoch in range(epochs):
            learn.freeze_to(-(epoch + 1))  # the head, then one group more per epoch
            with learn.added_cbs(Markers(offset=epoch)):
                learn.fit(1, lr=lr)
        return
    first = min(c.trainable_groups(strategy, 0, epochs))
    if first > 0:
        learn.freeze_to(first)
    else:
        learn.unfreeze()
    with learn.added_cbs(Markers()):
        learn.fit(epochs, lr=lrs)


if __name__ == "__main__":
    main()
