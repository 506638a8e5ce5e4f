"""Training checkpoints: plain dicts of tensors and primitives, loadable with ``weights_only=True``.

A checkpoint written together with the run's weights file (at the end, on stop) holds no weights
itself but names that file (``model_file``, relative to the checkpoint); ``load_checkpoint``
reads them from it.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from workbench.atomic import atomic_path
from workbench.errors import WorkbenchError

FORMAT = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    import pickle

    import torch

    if not path.is_file():
        raise WorkbenchError(f"no checkpoint at {path} (nothing to resume)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        from workbench.pickle_refusal import describe_load_error

        raise WorkbenchError(f"cannot read checkpoint {path}: {describe_load_error(exc)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise WorkbenchError(f"{path} is not a workbench training checkpoint")
    if "model" not in state and "model_file" in state:  # written with the weights file: the weights are there
        state["model"] = _weights(path.parent / str(state["model_file"]), path)
    return state


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
