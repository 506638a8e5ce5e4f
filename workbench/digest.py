"""A SHA-256 over length-prefixed parts, for data fingerprints: no two different part sequences hash alike."""

from __future__ import annotations

import hashlib


class PartsDigest:
    def __init__(self, version: str) -> None:
        self._hash = hashlib.sha256()
        self.put(version)

    def put(self, part: str | bytes) -> None:
        data = part.encode() if isinstance(part, str) else part
        self._hash.update(len(data).to_bytes(8, "little"))
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
