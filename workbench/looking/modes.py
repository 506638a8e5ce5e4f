"""Running the user's model to look at it without changing it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch.nn as nn


# One look at a time: the window draws in background threads, and two threads saving and restoring the
# modes of one model interleave (one restores train mode while the other's forward runs: statistics move).
LOOK_LOCK = threading.RLock()


@contextlib.contextmanager
def evaluation_mode(model: "nn.Module") -> Iterator[None]:
    """Every module in eval mode inside, each module's own train/eval flag back afterwards.

    Trap: a forward pass in train mode updates BatchNorm running statistics even under no_grad, so
    looking at a model (shapes for the graph, activations, a probe pass) would move frozen statistics.
    ``model.train(flag)`` afterwards is not enough either: it overwrites a mix of modes (BatchNorm kept in
    eval inside a training model) with one flag.
    """
    with LOOK_LOCK:
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            yield
        finally:
            for m, mode in modes:
                m.training = mode
