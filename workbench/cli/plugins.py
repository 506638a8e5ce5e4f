"""``workbench plugins``: what is installed in each plugin group, and what failed to load (and why)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from typing import Any

from workbench.plugins import (
    CALLBACKS,
    DATASETS,
    EXPORTERS,
    MODEL_SOURCES,
    SourceCapabilities,
    registry,
    source_capabilities,
)

GROUPS = (MODEL_SOURCES, DATASETS, EXPORTERS, CALLBACKS)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("plugins", help="list installed model sources, datasets, exporters and training callbacks, and any that failed to load")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(run=_cmd_plugins)


def describe(plugin: Any, group: str | None = None) -> dict[str, Any]:
    """The fields a plugin declares about itself (what the CLI and GUI list); a model source's capabilities."""
    info: dict[str, Any] = {"name": plugin.name, "class": f"{type(plugin).__module__}.{type(plugin).__qualname__}"}
    for attr in ("description", "output_kind", "suffix", "suffixes"):
        value = getattr(plugin, attr, None)
        if value not in (None, "", ()):
            info[attr] = list(value) if isinstance(value, tuple) else value
    if group == MODEL_SOURCES:
        caps = source_capabilities(plugin)
        info["capabilities"] = [f.name for f in fields(SourceCapabilities) if getattr(caps, f.name) is True]
    return info


def _cmd_plugins(args: argparse.Namespace) -> int:
    reg = registry()
    listing = {group: [describe(p, group) for _, p in sorted(reg.plugins(group).items())] for group in GROUPS}
    failures = [{"group": f.group, "name": f.name, "target": f.target, "error": f.error} for f in reg.failures]
    if args.json:
        json.dump({"plugins": listing, "failed": failures}, sys.stdout, indent=2)
        print()
        return 0
    for group, items in listing.items():
        print(f"{group}:")
        for info in items:
            extra = info.get("description") or ", ".join(info.get("suffixes", []) + info.get("capabilities", []))
            print(f"  {info['name']:<14} {info['class']}" + (f"  ({extra})" if extra else ""))
        if not items:
            print("  (none)")
    if failures:
        print("failed to load:")
        for f in reg.failures:
            print(f"  {f}")
    return 0
