"""A named problem with a plan: the one type the resolver, the preflight checks, the CLI and the window share.

``str(problem)`` is ``[code] message``; ``severity`` says whether it stops a run (error) or is shown
(warning); ``where`` names the control it is about, so the window can show it there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]
ERROR: Severity = "error"
WARNING: Severity = "warning"


@dataclass(frozen=True)
class Problem:
    """A named problem: ``str()`` gives ``[code] message``."""

    code: str
    message: str
    severity: Severity = WARNING
    where: str = "layers"  # "data", "groups", "train" or "layers": the control it is about
    subject: str = ""  # the group (or layer) it names, for the control to mark

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR
