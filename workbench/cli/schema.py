"""``workbench schema``: print the project file's JSON Schema, for editors that complete and check TOML."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="print the project file's JSON Schema (types, ranges, defaults)")
    p.add_argument("--out", type=Path, help="write the schema to this file instead of printing it")
    p.set_defaults(run=_cmd_schema)


def _cmd_schema(args: argparse.Namespace) -> int:
    from workbench.atomic import atomic_write_text
    from workbench.project import project_schema

    text = json.dumps(project_schema(), indent=2) + "\n"
    if args.out is None:
        print(text, end="")
    else:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
    return 0
