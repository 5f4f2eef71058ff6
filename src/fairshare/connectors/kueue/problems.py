"""What is wrong with a generated Kueue object: one `Problem` per finding, all raised together."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fairshare.errors import UserError

Loc = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one object: where, what, and which rule says so."""

    obj: str  # "ClusterQueue/llama", "LocalQueue/llama/llama" (namespace/name)
    path: str  # "spec.resourceGroups[0].flavors[1].resources[0].nominalQuota"; "" = the object
    message: str
    rule: str  # "schema: pattern", "CEL: <rule>", "webhook: ...", "metadata", "reference"

    def __str__(self) -> str:
        where = f"{self.obj}: {self.path}" if self.path else self.obj
        return f"{where}: {self.message} [{self.rule}]"


class InvalidManifest(UserError, ValueError):
    """Generated objects that Kueue would reject; `problems` lists every reason found."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def format_path(loc: Iterable[str | int]) -> str:
    """`("spec", "resourceGroups", 0, "flavors")` as `spec.resourceGroups[0].flavors`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def object_id(obj: Any, index: int = 0) -> str:
    """ "Kind/name" or "Kind/namespace/name" for messages; "object #N" when there is no telling."""
    if not isinstance(obj, dict):
        return f"object #{index + 1}"
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    kind = obj.get("kind") or "object"
    name = meta.get("name") or f"#{index + 1}"
    return f"{kind}/{meta['namespace']}/{name}" if meta.get("namespace") else f"{kind}/{name}"
