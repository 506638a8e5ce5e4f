"""``workbench inspect`` output: the layer tree, totals, groups and warnings as text or JSON."""

from __future__ import annotations

from typing import Any

from workbench.resolve import Resolution, percent
from workbench.sources import describe_source_report
from workbench.workspace import Workspace


def inspect_dict(ws: Workspace, resolution: Resolution, depth: int | None = None) -> dict[str, Any]:
    """The JSON shape documented in the README (extra keys allowed)."""
    tree = resolution.tree
    nodes = []
    node_groups = resolution.node_groups()
    adapted = set(tree.adapter_paths)
    for node in tree.nodes:
        if depth is not None and node.depth > depth:
            continue
        group = node_groups[node.index]
        group_index = next((i for i, g in enumerate(resolution.groups) if g.name == group), None)
        nodes.append({
            "path": node.path,
            **({"adapter": "lora"} if node.path in adapted else {}),
            "type": node.type_name,
            "depth": node.depth,
            "own_params": node.own_param_count,
            "params": node.param_count,
            "trainable_params": resolution.node_trainable[node.index],
            "output_shape": list(node.output_shape) if node.output_shape is not None else None,
            "state": resolution.node_state[node.index],
            "group": group,
            "lr": resolution.groups[group_index].lr if group_index is not None and resolution.node_trainable[node.index] else None,
        })
    spec = ws.backbone.spec
    return {
        "model": spec.architecture,
        "source": ws.backbone.source,
        "pretrained": spec.pretrained,
        "weights": ws.backbone.weights,
        "input_size": list(spec.input_size),
        "num_classes": spec.num_classes,
        "classifier": spec.classifier,
        "total_params": resolution.total_params,
        "trainable_params": resolution.trainable_params,
        "frozen_params": resolution.frozen_params,
        "batchnorm_policy": ws.plan.freeze.batchnorm,
        "batchnorm_eval": [tree.nodes[i].path for i in resolution.bn_eval],
        "nodes": nodes,
        "groups": [{"name": g.name, "lr": g.lr, "weight_decay": g.weight_decay, "params": g.numel,
                    "tensors": len(g.params), "modules": tree.cover_paths(g.claimed)} for g in resolution.groups],
        "unfreeze": [{"epoch": s.epoch, "groups": list(s.groups)} for s in ws.plan.unfreeze],
        "warnings": [str(w) for w in resolution.warnings],
        "notices": list(ws.backbone.notices),
        "adapters": _adapters(ws),
        "source_report": ws.backbone.report,
        "timing": {"tree_build_s": round(tree.build_seconds, 4), "forward_s": round(tree.forward_seconds, 4)},
    }


def _adapters(ws: Workspace) -> dict[str, Any] | None:
    """The [adapters] section as applied: method, rank, alpha, adapted modules, adapter and base parameter counts."""
    config = ws.plan.adapters
    if config is None or not ws.tree.adapter_paths:
        return None
    from workbench.adapters import adapter_summary

    return {"method": config.method, "rank": config.rank, "alpha": config.alpha if config.alpha is not None
            else config.rank, "dropout": config.dropout, **adapter_summary(ws.tree)}


def inspect_text(data: dict[str, Any]) -> str:
    rows = [("path", "type", "own", "params", "trainable", "output", "state", "group", "lr")]
    for n in data["nodes"]:
        name = n["path"].rpartition(".")[2] if n["path"] else "(root)"
        shape = "×".join(str(d) for d in n["output_shape"]) if n["output_shape"] else "-"
        rows.append(("  " * n["depth"] + name, n["type"], f"{n['own_params']:,}", f"{n['params']:,}",
                     f"{n['trainable_params']:,}", shape, n["state"], n["group"] or "-",
                     f"{n['lr']:.3g}" if n["lr"] is not None else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {2, 3, 4}
    lines = [f"{data['model']}  ({data['source']}, {data['weights']}, "
             f"input {'×'.join(map(str, data['input_size']))}, {data['num_classes']} classes)"]
    for notice in data["notices"]:
        lines.append(f"note: {notice}")
    lines.append("")
    for r in rows:
        lines.append("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    total, trainable = data["total_params"], data["trainable_params"]
    share = 100.0 * (total - trainable) / total if total else 0.0
    lines += ["", f"{trainable:,} of {total:,} parameters trainable ({data['frozen_params']:,} frozen, {percent(share)} frozen); "
              f"BatchNorm policy: {data['batchnorm_policy']} ({len(data['batchnorm_eval'])} BatchNorm layer(s) held in eval mode)"]
    if data.get("cost"):
        cost = data["cost"]
        lines.append(f"gradients + {cost['optimizer']} state: {cost['grad_bytes'] + cost['optimizer_state_bytes']:,} bytes; "
                     f"{cost['sentence']}")
    if data["groups"]:
        lines += ["", "parameter groups (optimizer):"]
        for g in data["groups"]:
            lines.append(f"  {g['name']:<16} lr={g['lr']:<10.4g} weight_decay={g['weight_decay']:<8.4g} "
                         f"{g['params']:>12,} trainable params  [{', '.join(g['modules'][:4])}{', …' if len(g['modules']) > 4 else ''}]")
    adapters = data.get("adapters")
    if adapters:
        lines += ["", f"adapters: {adapters['method']} rank {adapters['rank']}, alpha {adapters['alpha']:g} on "
                  f"{len(adapters['modules'])} module(s): {adapters['adapter_params']:,} adapter parameters train, "
                  f"their {adapters['base_params']:,} base parameters stay frozen"]
    if data["unfreeze"]:
        lines += ["", "gradual unfreezing:"] + [f"  epoch {s['epoch']}: {', '.join(s['groups'])}" for s in data["unfreeze"]]
    described = describe_source_report(data["source"], data.get("source_report"))
    if described is not None:
        lines += ["", f"{described.title}:"] + [f"  {line}" for line in described.lines]
    if data["warnings"]:
        lines += ["", "warnings:"] + [f"  {w}" for w in data["warnings"]]
    return "\n".join(lines)
