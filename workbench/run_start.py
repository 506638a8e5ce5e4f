"""A run's record of its start, written before the first step, and the checks made against it.

The starting values of every tensor that can change during the run (parameters trainable at
any epoch, BatchNorm statistics that update) go to ``initial_trainable.safetensors``, and a
SHA-256 fingerprint of every other tensor to ``initial_frozen.json``: no second copy of the
frozen weights, yet their "exactly unchanged" is checked, not assumed (``workbench diff RUN``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.atomic import atomic_path, atomic_write_text
from workbench.errors import WorkbenchError
from workbench.run_folder import RunDir

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from workbench.layer_tree import LayerTree
    from workbench.plan import FinetunePlan
    from workbench.resolve import Resolution

BN_STATS = ("running_mean", "running_var")


def fingerprint(tensor: "torch.Tensor") -> str:
    t = tensor.detach().cpu().contiguous().reshape(-1)
    return hashlib.sha256(t.view(dtype=__import__("torch").uint8).numpy().tobytes()).hexdigest()


def changing_tensors(model: "nn.Module", tree: "LayerTree", plan: "FinetunePlan", resolution: "Resolution") -> set[str]:
    """State-dict keys that may change during the run: parameters trainable at any epoch, updating BN statistics."""
    from workbench.freezing import plan_at_epoch
    from workbench.resolve import resolve_plan

    final_epoch = max([s.epoch for s in plan.unfreeze], default=0)
    ends = [resolution]
    if plan.unfreeze:
        ends.append(resolve_plan(tree, plan_at_epoch(plan, tree, final_epoch)))
    names = {tree.params[p].name for res in ends for p, t in enumerate(res.param_trainable) if t}
    held = set.intersection(*({tree.nodes[i].path for i in res.bn_eval} for res in ends))
    for node in tree.nodes:
        if node.is_batchnorm and node.path not in held:
            names.update(f"{node.path}.{s}" if node.path else s for s in BN_STATS)
    # A tied parameter appears under every name that shares it.
    by_ptr: dict[int, list[str]] = {}
    for key, value in model.state_dict(keep_vars=True).items():
        by_ptr.setdefault(id(value), []).append(key)
    return {k for keys in by_ptr.values() if names.intersection(keys) for k in keys}


def save_run_start(run_dir: Path, model: "nn.Module", tree: "LayerTree", plan: "FinetunePlan",
                   resolution: "Resolution") -> None:
    """Record the run's start: changing tensors' values, every other tensor's fingerprint. Atomic writes."""
    from workbench.safetensors_file import write_safetensors

    changing = changing_tensors(model, tree, plan, resolution)
    state = model.state_dict()
    # Written before training starts, from the live tensors: no copy (a channels_last weight is made
    # contiguous only while it is written).
    saved = {k: v.detach() for k, v in state.items() if k in changing}
    prints = {k: fingerprint(v) for k, v in state.items() if k not in changing and v.is_floating_point()}
    run = RunDir(run_dir)
    with atomic_path(run.start_weights) as tmp:
        write_safetensors(saved, tmp)
    atomic_write_text(run.start_fingerprints, json.dumps({"sha256": prints}, indent=0))


def check_bases_unchanged(module: "nn.Module", run_dir: Path) -> None:
    """Refuse to merge when an adapted base weight no longer matches the run's start (it was edited)."""
    from workbench.adapters import BASE

    prints_file = RunDir(run_dir).start_fingerprints
    if not prints_file.is_file():
        return
    prints = json.loads(prints_file.read_text()).get("sha256", {})
    for name, tensor in module.state_dict().items():
        if f".{BASE}." in name and name in prints and fingerprint(tensor) != prints[name]:
            raise WorkbenchError(f"cannot merge: {name} (an adapted module's base weight) changed since the "
                                 "adapter was trained, so the adapter no longer fits it; export from the run's own "
                                 "weights, or --adapters-only")
