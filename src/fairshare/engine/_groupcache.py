"""Groups of requests solved once, for callers that solve many similar problems (engine/shares.py).

A simulator's consecutive problems differ in one team's demand, so most teams' groups (the
team's requests sharing its allotment) are the same as in an earlier problem: the same
allotment, the same requests' demands and speeds, the same weights.  `GroupCache` gives such a
group the result it got then.  The water-fill of a group is deterministic (a fresh HiGHS
instance per group, the same calls in the same order), so this is bit for bit the result the
LP would give now.  The root's group is kept too: TeamShares solves it first alone and, when
the teams' groups may change the answer, again at the start of the full solve.

Only a model equal to the bit counts: a closed form for groups where every request fits on its
fastest pools was tried and dropped, as it agrees with the LP only to the LP's margins (1e-9),
and a later degenerate LP (the re-placement of a team, engine/_placement.py) can turn that
difference into another vertex (the same effective GPUs, other GPU types).  For callers that
read numbers only (allocate does not use a cache)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fairshare.engine._group import GroupModel
from fairshare.engine._waterfill import GroupResult

MEMO = 4096


class GroupCache:
    """Results of groups (no limit or guarantee rows, no surplus offsets), by model."""

    def __init__(self, size: int = MEMO) -> None:
        self.size = size
        self.memo_hits = 0
        self.solved = 0
        self._memo: dict[tuple, GroupResult] = {}

    def result(
        self,
        model: GroupModel,
        coeff: np.ndarray,
        potential: np.ndarray,
        flags: tuple,
        solve: Callable[[], GroupResult],
    ) -> GroupResult:
        """The group's result: memoised, or `solve()` (the water-fill).  `flags`: whatever else
        chooses how the group is solved (part of the key)."""
        key = (
            flags,
            model.pools.tobytes(),
            model.capacity.tobytes(),
            model.class_unit.tobytes(),
            model.class_demand.tobytes(),
            model.cell_class.tobytes(),
            model.cell_pool.tobytes(),
            model.cell_speed.tobytes(),
            model.weights.tobytes(),
            coeff.tobytes(),
            potential.tobytes(),
        )
        got = self._memo.get(key)
        if got is not None:
            self.memo_hits += 1
            return got
        got = solve()
        self.solved += 1
        if len(self._memo) >= self.size:
            self._memo.pop(next(iter(self._memo)))
        self._memo[key] = got
        return got
