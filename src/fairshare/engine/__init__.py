"""The allocation engine: a pure function from a Scenario to an Allocation.  No I/O here.

`__all__` is the contract: callers import from here (or from the public submodules
`overrides`, `whatif` and `entitlements`), never from a `_private` module.
"""

from __future__ import annotations

from fairshare.engine._allocate import allocate
from fairshare.engine._fairness import jain_index
from fairshare.engine._guarantees import InfeasibleGuarantees
from fairshare.engine._highs import SolverError
from fairshare.engine._result import (
    Allocation,
    Fairness,
    NodeResult,
    PoolResult,
    Reason,
    ReasonCode,
    RequestResult,
    Stats,
)
from fairshare.engine.entitlements import Entitlement, Sibling, entitlements
from fairshare.engine.overrides import (
    Absorbed,
    OverrideError,
    Pin,
    absorb,
    allocate_in_order,
    allocate_with_pins,
    place,
)
from fairshare.engine.whatif import Change, Lever, LeverKind, LeverSearch, Loser, apply_lever, diff, levers

__all__ = [
    "allocate",
    "Allocation",
    "RequestResult",
    "NodeResult",
    "PoolResult",
    "Reason",
    "ReasonCode",
    "Fairness",
    "Stats",
    "jain_index",
    "InfeasibleGuarantees",
    "SolverError",
    "Pin",
    "OverrideError",
    "allocate_with_pins",
    "Absorbed",
    "absorb",
    "allocate_in_order",
    "place",
    "Change",
    "Lever",
    "LeverKind",
    "LeverSearch",
    "Loser",
    "apply_lever",
    "diff",
    "levers",
    "Entitlement",
    "Sibling",
    "entitlements",
]
