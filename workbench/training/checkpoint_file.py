"""The training checkpoint (``checkpoints/last.pt``): the ``Checkpoint`` dataclass and its file.

The file is a plain dict of tensors and primitives, loadable with ``weights_only=True``. A
checkpoint written together with the run's weights file (at the end, on stop) holds no weights
itself but names that file (``model_file``, relative to the checkpoint); ``load_checkpoint``
reads them from it. Format 1 (before callbacks kept their own state) is still read: its
``schedule_done`` becomes the ``GradualUnfreezing`` callback's state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from workbench.atomic import atomic_path
from workbench.errors import WorkbenchError

FORMAT = 2
READABLE_FORMATS = (1, 2)


class Position(NamedTuple):
    """Where a resumed run continues: epoch (0-based), batches done in it, optimizer steps done in all."""

    epoch: int
    batch: int
    global_step: int


@dataclass
class Checkpoint:
    """Everything a resumed run needs to continue exactly where this one was."""

    epoch: int
    batch: int
    global_step: int
    model: dict[str, Any]  # the state_dict (read from ``model_file`` when the checkpoint names one)
    optimizer: dict[str, Any]
    optimizer_layout: list[Any]  # which parameters each optimizer group holds (``optimizer_layout``)
    frozen: list[str]  # the freeze state reached (gradual unfreezing changes it): the model's, read by load_run
    unfrozen: list[str]
    classes: list[str]
    rng: dict[str, Any]  # the global generators (``rng_state``)
    scaler: dict[str, Any] | None = None  # the float16 GradScaler's, when enabled
    data_fingerprint: str = ""
    data_counts: list[int] | None = None  # [training images, validation images]
    callbacks: dict[str, dict[str, Any]] = field(default_factory=dict)  # state_key → the callback's state_dict()
    model_file: str | None = None  # on disk only: the weights file holding ``model``

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.batch, self.global_step)

    def to_dict(self) -> dict[str, Any]:
        """The file's dict: ``model`` left out when ``model_file`` names where the weights are."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}  # (asdict would deep-copy every tensor)
        if self.model_file is not None:
            del out["model"]
        else:
            del out["model_file"]
        return {"format": FORMAT, **out}


_REQUIRED = ("epoch", "batch", "global_step", "optimizer", "optimizer_layout", "frozen", "unfrozen", "classes", "rng")


def checkpoint_from_dict(data: dict[str, Any], path: Path) -> Checkpoint:
    """A checkpoint file's dict, of any readable format, as a ``Checkpoint`` (weights not read yet)."""
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise WorkbenchError(f"{path} is damaged: the checkpoint lacks {', '.join(missing)}")
    callbacks = dict(data.get("callbacks") or {})
    if data.get("format") == 1 and "schedule_done" in data:  # format 1 kept the schedule's position itself
        callbacks["GradualUnfreezing"] = {"schedule_done": int(data["schedule_done"])}
    known = {f.name for f in fields(Checkpoint)}
    values = {key: value for key, value in data.items() if key in known}
    values.setdefault("model", {})
    values["callbacks"] = callbacks
    return Checkpoint(**values)


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(checkpoint.to_dict(), tmp)


def load_checkpoint(path: Path) -> Checkpoint:
    import pickle

    import torch

    if not path.is_file():
        raise WorkbenchError(f"no checkpoint at {path} (nothing to resume)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        from workbench.pickle_refusal import describe_load_error

        raise WorkbenchError(f"cannot read checkpoint {path}: {describe_load_error(exc)}") from None
    if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
        if isinstance(data, dict) and isinstance(data.get("format"), int) and data["format"] > FORMAT:
            raise WorkbenchError(f"{path} was written by a newer workbench (checkpoint format {data['format']}; "
                                 f"this one reads up to {FORMAT}): upgrade workbench to resume it")
        raise WorkbenchError(f"{path} is not a workbench training checkpoint")
    checkpoint = checkpoint_from_dict(data, path)
    if "model" not in data and checkpoint.model_file is not None:  # written with the weights file: they are there
        checkpoint.model = _weights(path.parent / checkpoint.model_file, path)
    return checkpoint


def _weights(weights: Path, checkpoint: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not weights.is_file():
        raise WorkbenchError(f"checkpoint {checkpoint} keeps its weights in {weights.resolve()}, which is missing")
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise WorkbenchError(f"cannot read {weights.resolve()} (the weights of checkpoint {checkpoint}): "
                             f"{str(exc).splitlines()[0]}") from None


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuples(state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_as_tuples(v) for v in value)
    if isinstance(value, tuple):
        return tuple(_as_tuples(v) for v in value)
    return value
