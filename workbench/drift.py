"""What changed after training: per-module relative drift ‖W′ − W‖ / ‖W‖ of parameters and BatchNorm statistics.

Inputs are state dicts of the same architecture: run folders, ``.safetensors`` files,
export folders or ``.pt``/``.pth`` checkpoints. Bit-identical tensors give exactly 0.0
(compared with ``torch.equal`` first, never through floating-point subtraction).

A run's final weights are compared with the start it recorded (``workbench.run_start``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError
from workbench.run_folder import RunDir
from workbench.run_start import BN_STATS, fingerprint

if TYPE_CHECKING:
    import torch

    from workbench.layer_tree import LayerTree

START_WEIGHTS, START_FINGERPRINTS = RunDir.START_WEIGHTS, RunDir.START_FINGERPRINTS


class DriftError(WorkbenchError):
    """The two sides cannot be compared (missing, unreadable, or different architectures)."""


@dataclass
class ModuleDrift:
    """One module's own tensors. ``params``/``stats`` are None when it has none of that kind."""

    path: str
    depth: int
    params: float | None
    stats: float | None
    numel: int
    tensors: int
    changed: int
    sq_diff: float = 0.0  # Σ‖W′ − W‖² and Σ‖W‖² over its parameters, to aggregate subtrees
    sq_base: float = 0.0
    adapter: bool = False  # a LoRA-adapted module: ``params`` is its effective change ‖scale·B·A‖ / ‖W‖

    @property
    def value(self) -> float:
        """The figure shown in the tree: parameter drift, or the statistics' when it has no parameters."""
        return self.params if self.params is not None else (self.stats or 0.0)


@dataclass
class DriftReport:
    a: str
    b: str
    modules: list[ModuleDrift]
    tensors: dict[str, float]
    fingerprint_checked: int = 0  # frozen tensors verified unchanged against their run-start hash
    problems: list[str] = field(default_factory=list)

    def by_path(self) -> dict[str, ModuleDrift]:
        return {m.path: m for m in self.modules}

    def to_dict(self) -> dict[str, Any]:
        moved = [m for m in self.modules if m.changed]
        return {
            "a": self.a, "b": self.b,
            "modules": [{"path": m.path, "depth": m.depth, "param_drift": m.params, "bn_stats_drift": m.stats,
                         "numel": m.numel, "tensors": m.tensors, "changed_tensors": m.changed,
                         **({"lora_effective_change": m.params} if m.adapter else {})} for m in self.modules],
            "tensors": self.tensors,
            "modules_changed": len(moved), "modules_unchanged": len(self.modules) - len(moved),
            "fingerprint_checked": self.fingerprint_checked, "problems": self.problems,
        }

    def text(self) -> str:
        rows = [("module", "params", "bn stats", "numel")]
        for m in self.modules:
            label = (m.path or "(root)") + ("  [LoRA ‖scale·B·A‖/‖W‖]" if m.adapter else "")
            rows.append(("  " * (m.depth - 1) + label, _fmt(m.params), _fmt(m.stats), f"{m.numel:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [f"drift ‖W′ − W‖ / ‖W‖ from {self.a} to {self.b}", ""]
        for r in rows:
            lines.append("  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]).rstrip())
        moved = sum(1 for m in self.modules if m.changed)
        lines += ["", f"{moved} of {len(self.modules)} modules changed; {len(self.modules) - moved} exactly unchanged"
                  + (f" ({self.fingerprint_checked} frozen tensors verified against their run-start fingerprint)"
                     if self.fingerprint_checked else "")]
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return "0 (exact)" if value == 0.0 else f"{value:.3g}"


def tensor_drift(a: "torch.Tensor", b: "torch.Tensor") -> tuple[float, float, float]:
    """(relative drift, ‖b − a‖², ‖a‖²); exactly 0 for bit-identical tensors. ‖a‖ = 0 gives the absolute change."""
    import torch

    if a.shape != b.shape:
        raise DriftError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if torch.equal(a, b):
        return 0.0, 0.0, float(a.double().pow(2).sum())
    diff = float((b.double() - a.double()).pow(2).sum())
    base = float(a.double().pow(2).sum())
    return math.sqrt(diff / base) if base > 0 else math.sqrt(diff), diff, base


def compare_states(a: dict[str, "torch.Tensor"], b: dict[str, "torch.Tensor"], a_label: str = "A",
                   b_label: str = "B", param_names: set[str] | None = None,
                   adapter_scale: float | None = None) -> DriftReport:
    """Per-module drift between two state dicts of one architecture (floating-point tensors only).

    ``adapter_scale`` (alpha / rank of a LoRA run): each adapted module also gets its effective change
    ‖scale·B·A‖ / ‖W‖, which is what its subtree and ancestors aggregate (its base stays exactly 0).
    """
    missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if missing or extra:
        raise DriftError(f"{a_label} and {b_label} are not the same architecture: "
                         f"{len(missing)} tensor(s) only in {a_label} ({', '.join(missing[:3])}), "
                         f"{len(extra)} only in {b_label} ({', '.join(extra[:3])})")
    sums: dict[str, dict[str, list[tuple[float, float]]]] = {}
    tensors: dict[str, float] = {}
    counts: dict[str, list[int]] = {}
    for key, ta in a.items():
        tb = b[key]
        if not (ta.is_floating_point() and tb.is_floating_point()):
            continue  # num_batches_tracked and other counters
        module, _, name = key.rpartition(".")
        kind = "stats" if name in BN_STATS else "params"
        if param_names is not None and kind == "params" and key not in param_names:
            continue  # a buffer that is neither a parameter nor a BatchNorm statistic
        try:
            rel, diff, base = tensor_drift(ta, tb)
        except DriftError as exc:
            raise DriftError(f"{key}: {exc}: {a_label} and {b_label} are not the same architecture") from None
        tensors[key] = rel
        entry = sums.setdefault(module, {"params": [], "stats": []})
        entry[kind].append((diff, base))
        c = counts.setdefault(module, [0, 0, 0])
        c[0] += ta.numel()
        c[1] += 1
        c[2] += rel != 0.0
    modules = []
    for module, entry in sums.items():
        values: dict[str, float | None] = {}
        for kind, pairs in entry.items():
            if not pairs:
                values[kind] = None
                continue
            diff = sum(d for d, _ in pairs)
            base = sum(s for _, s in pairs)
            values[kind] = 0.0 if diff == 0 else (math.sqrt(diff / base) if base > 0 else math.sqrt(diff))
        c = counts[module]
        pairs = entry["params"]
        modules.append(ModuleDrift(module, module.count(".") + 1 if module else 0, values["params"], values["stats"],
                                   c[0], c[1], c[2], sum(d for d, _ in pairs), sum(b for _, b in pairs)))
    if adapter_scale is not None:
        _add_adapter_changes(modules, b, adapter_scale)
    return DriftReport(a_label, b_label, modules, tensors)


def _add_adapter_changes(modules: list[ModuleDrift], state: dict[str, "torch.Tensor"], scale: float) -> None:
    from workbench.adapters import BASE, effective_changes

    changes = effective_changes(state, scale)
    heads = set(changes)
    out: list[ModuleDrift] = []
    for m in modules:  # the adapted module's own entry (before its parts) stands for its base and adapter together
        head = m.path.split(f".{BASE}")[0].split(".lora_")[0]
        if head in heads and head != m.path:
            m.sq_diff = m.sq_base = 0.0
        if head in changes and head != m.path:
            diff, base = changes.pop(head)
            value = 0.0 if diff == 0 else (math.sqrt(diff / base) if base > 0 else math.sqrt(diff))
            out.append(ModuleDrift(head, head.count(".") + 1, value, None, 0, 0, int(diff > 0), diff, base, adapter=True))
        out.append(m)
    modules[:] = out


def tree_drift(report: DriftReport, tree: "LayerTree") -> list[float | None]:
    """Parameter drift of each tree node's whole subtree (None where it has no parameters)."""
    own = report.by_path()
    diff = [0.0] * len(tree.nodes)
    base = [0.0] * len(tree.nodes)
    has = [False] * len(tree.nodes)
    for node in reversed(tree.nodes):  # children before parents
        m = own.get(node.path)
        if m is not None and m.params is not None:
            diff[node.index] += m.sq_diff
            base[node.index] += m.sq_base
            has[node.index] = True
        if node.parent is not None:
            diff[node.parent] += diff[node.index]
            base[node.parent] += base[node.index]
            has[node.parent] = has[node.parent] or has[node.index]
    return [None if not has[i] else 0.0 if diff[i] == 0 else math.sqrt(diff[i] / base[i]) if base[i] else
            math.sqrt(diff[i]) for i in range(len(tree.nodes))]


def load_state(source: str | Path) -> dict[str, "torch.Tensor"]:
    """A state dict from a run folder, export folder, ``.safetensors`` file or ``.pt``/``.pth`` checkpoint."""
    import torch

    path = Path(source).expanduser()
    if path.is_dir():
        found = RunDir(path).weights_file()
        if found is not None:
            return load_state(found)
        raise DriftError(f"{path} holds no weights (no {RunDir.WEIGHTS} or {RunDir.CHECKPOINT})")
    if not path.is_file():
        raise DriftError(f"not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise DriftError(f"{path} is not a readable .safetensors file ({exc})") from None
    if path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            from workbench.pickle_refusal import describe_load_error

            raise DriftError(f"{path} is not a readable PyTorch checkpoint: {describe_load_error(exc)}") from None
        for key in ("model", "state_dict"):
            if isinstance(data, dict) and isinstance(data.get(key), dict):
                data = data[key]
                break
        if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
            raise DriftError(f"{path} holds no state dict of tensors")
        return data
    raise DriftError(f"{path}: expected a run folder, a .safetensors file or a .pt/.pth checkpoint")


def diff_sources(a: str | Path, b: str | Path | None = None) -> DriftReport:
    """``a`` vs ``b``; with ``b`` None, ``a`` is a run folder compared with its own start."""
    if b is None:
        return diff_run_from_start(Path(a))
    scale = _adapter_scale(Path(b).expanduser()) or _adapter_scale(Path(a).expanduser())
    return compare_states(load_state(a), load_state(b), str(a), str(b), adapter_scale=scale)


def _adapter_scale(path: Path) -> float | None:
    """alpha / rank of a run folder trained with [adapters] (None for anything else)."""
    project = RunDir(path).project
    if not path.is_dir() or not project.is_file():
        return None
    from workbench.project import load_project

    try:
        adapters = load_project(project).adapters
    except WorkbenchError:
        return None
    return adapters.scale if adapters is not None else None


def diff_run_from_start(run_dir: Path) -> DriftReport:
    """The run's final weights against the start it recorded (saved tensors + fingerprints of the rest)."""
    run_dir = Path(run_dir).expanduser()
    start_file, prints_file = RunDir(run_dir).start_weights, RunDir(run_dir).start_fingerprints
    if not start_file.is_file() or not prints_file.is_file():
        raise DriftError(f"{run_dir} has no record of its start ({START_WEIGHTS}, {START_FINGERPRINTS}); "
                         "give two weight files to compare instead")
    final = load_state(run_dir)
    start = dict(load_state(start_file))  # (a truncated or damaged record is one clear error there)
    try:
        prints: dict[str, str] = json.loads(prints_file.read_text())["sha256"]
        if not isinstance(prints, dict):
            raise TypeError("sha256 is not a table")
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise DriftError(f"{prints_file} is unreadable ({exc})") from None
    problems = []
    tampered: set[str] = set()
    checked = 0
    for key, digest in prints.items():
        if key not in final:
            continue
        if fingerprint(final[key]) == digest:
            start[key] = final[key]  # verified bit-identical: drift exactly 0
            checked += 1
        else:
            tampered.add(key)
            problems.append(f"{key} was frozen for the whole run but no longer matches its starting fingerprint")
    unknown = sorted(k for k in set(final) - set(start) if final[k].is_floating_point() and k not in tampered)
    if unknown:
        raise DriftError(f"{run_dir}: {len(unknown)} tensor(s) have no starting record ({', '.join(unknown[:3])})")
    # A tampered frozen tensor has no starting value to measure against: it is left out and named in problems.
    report = compare_states({k: v for k, v in start.items() if k in final}, {k: final[k] for k in start if k in final},
                            f"{run_dir} (start)", f"{run_dir} (final)", adapter_scale=_adapter_scale(run_dir))
    report.fingerprint_checked, report.problems = checked, problems
    return report
