"""The Layers tab's info line: what was loaded, how, and anything its source wants the user to know."""

from __future__ import annotations

import html
from typing import Any

from workbench.sources import describe_source_report


def describe_model(ws: Any, weights: str = "") -> str:
    """One rich-text paragraph: what was loaded, how, and anything the source wants the user to know.

    ``weights``: what the module holds when it is no longer what was loaded (a run's weights, a cut of them).
    """
    spec, backbone = ws.backbone.spec, ws.backbone
    c, h, w = spec.input_size
    parts = [f"<b>{html.escape(spec.architecture)}</b> ({html.escape(backbone.source)}, "
             f"{html.escape(weights or backbone.weights)}) · "
             f"{ws.tree.total_params:,} parameters · {len(ws.tree.nodes):,} modules · input {c}×{h}×{w} · "
             f"{spec.num_classes} outputs · stages from {html.escape(ws.tree.stage_source or 'n/a')}"]
    described = describe_source_report(backbone.source, backbone.report)
    if described is not None and described.facts:
        parts.append(html.escape(f"{described.title}: {', '.join(described.facts)}"))
    parts += [f"<span style='color:#9a6700'>ℹ {html.escape(n)}</span>" for n in backbone.notices]
    return "<br>".join(parts)
