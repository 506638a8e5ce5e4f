"""Callbacks' order and their state in the checkpoint (Lightning's ``Callback.state_dict`` contract)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from workbench.errors import TrainingError
from workbench.training.callbacks import Callback


def in_order(callbacks: Iterable[Callback]) -> list[Callback]:
    """Ascending ``order``; callbacks of equal order keep the order they were given in."""
    return sorted(callbacks, key=lambda callback: callback.order)


def stateful(callbacks: Iterable[Callback]) -> list[Callback]:
    """The callbacks that keep state (they override ``state_dict``)."""
    return [c for c in callbacks if type(c).state_dict is not Callback.state_dict]


def check_state_keys(callbacks: Sequence[Callback]) -> None:
    """Two stateful callbacks under one key would overwrite each other's state: refuse before training."""
    seen: dict[str, Callback] = {}
    for callback in stateful(callbacks):
        key = callback.state_key
        if key in seen:
            raise TrainingError(f"two callbacks keep their state under the same key {key!r} ({type(seen[key]).__module__}."
                                f"{type(seen[key]).__qualname__} and {type(callback).__module__}."
                                f"{type(callback).__qualname__}): give one of them its own `state_key`")
        seen[key] = callback


def collect_states(callbacks: Sequence[Callback], clone: bool) -> dict[str, dict[str, Any]]:
    """Every stateful callback's ``state_dict()``, copied (tensors too when ``clone``) and checked to be loadable."""
    states: dict[str, dict[str, Any]] = {}
    for callback in stateful(callbacks):
        state = callback.state_dict()
        where = f"{type(callback).__qualname__}.state_dict()"
        if not isinstance(state, dict):
            raise TrainingError(f"{where} returned a {type(state).__name__}, not a dict")
        states[callback.state_key] = plain_copy(state, where, clone)
    return states


def restore_states(callbacks: Sequence[Callback], saved: dict[str, dict[str, Any]]) -> list[str]:
    """Hand each stateful callback its saved state; returns notices for states with no callback and the reverse."""
    notices = []
    keys = {callback.state_key for callback in stateful(callbacks)}
    for callback in stateful(callbacks):
        if callback.state_key in saved:
            callback.load_state_dict(saved[callback.state_key])
        else:
            notices.append(f"the checkpoint holds no state for callback {callback.state_key!r}: it starts afresh")
    for key in saved:
        if key not in keys:
            notices.append(f"the checkpoint holds the state of callback {key!r}, which this run does not have: "
                           "it is not restored (add the callback to continue it)")
    return notices


def plain_copy(value: Any, where: str, clone: bool) -> Any:
    """A copy of ``value`` with fresh containers; anything ``torch.load(weights_only=True)`` refuses is an error."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if tensor.device.type != "cpu":
            return tensor.cpu()
        return tensor.clone() if clone else tensor
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TrainingError(f"{where}: key {key!r} is a {type(key).__name__}; checkpoint keys are str or int")
            out[key] = plain_copy(item, f"{where}[{key!r}]", clone)
        return out
    if isinstance(value, (list, tuple)):
        items = [plain_copy(item, f"{where}[{i}]", clone) for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise TrainingError(f"{where} holds a value of type {type(value).__name__}: a checkpoint keeps tensors, dicts, lists, tuples, str, "
                        "int, float, bool and None only (it is read back with torch.load(weights_only=True))")
