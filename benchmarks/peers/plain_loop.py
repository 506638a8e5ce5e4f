"""A competent plain PyTorch loop: frozen parameters excluded from the optimizer, frozen BatchNorm in
eval mode, images preloaded as tensors, validation under inference_mode, optional channels_last and
bfloat16 autocast."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402


def main() -> None:
    cfg = c.config()
    strategy, epochs, cl = cfg["strategy"], cfg["epochs"], cfg["channels_last"]
    bf16 = bool(cfg.get("bf16"))
    train_set, val_set = c.load_data(cfg)
    net = c.model(cfg)
    if cl:
        net = net.to(memory_format=torch.channels_last)
    groups = c.group_modules(net)
    train = DataLoader(train_set, batch_size=cfg["batch_size"], shuffle=True,
                       generator=torch.Generator().manual_seed(cfg["seed"]))
    val = DataLoader(val_set, batch_size=cfg["batch_size"])
    optimizer = None
    in_optimizer: set[int] = set()
    c.mark("ready")
    step = 0
    for epoch in range(epochs):
        active = c.trainable_groups(strategy, epoch, epochs)
        for i, mods in enumerate(groups):
            for m in mods:
                m.requires_grad_(i in active)
        new = [{"params": [p for m in groups[i] for p in m.parameters()], "lr": c.group_lr(strategy, i, cfg["lr"])}
               for i in active if i not in in_optimizer]
        if optimizer is None:
            optimizer = torch.optim.AdamW(new, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        else:
            for g in new:
                optimizer.add_param_group(g)
        in_optimizer.update(active)
        net.train()
        c.set_frozen_bn_eval(net)
        for x, y in train:
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step == 1:
                c.mark("step1")
        c.mark("epoch", epoch=epoch, val_acc=c.evaluate(net, val, cl, bf16))


if __name__ == "__main__":
    main()
