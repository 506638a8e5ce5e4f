"""Change a limit in the schema for one test: set a ``workbench.plan`` constant and rebuild every section."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from workbench import plan as plan_module


@contextmanager
def schema_constant(name: str, value: object) -> Iterator[None]:
    """``MAX_EPOCHS = value`` in the schema while the block runs (validation, JSON Schema, flags, boxes)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plan_module, name, value)
        plan_module.rebuild_sections()
        try:
            yield
        finally:
            patch.undo()
            plan_module.rebuild_sections()
