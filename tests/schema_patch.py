"""Change a limit in the schema for one test: set a ``workbench.plan`` constant and rebuild every section."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from workbench import plan as plan_module
from workbench.schema_sections import rebuild_sections


@contextmanager
def schema_constant(name: str, value: object) -> Iterator[None]:
    """``MAX_EPOCHS = value`` in the schema while the block runs (validation, JSON Schema, flags, boxes)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plan_module, name, value)
        rebuild_sections()
        try:
            yield
        finally:
            patch.undo()
            rebuild_sections()
