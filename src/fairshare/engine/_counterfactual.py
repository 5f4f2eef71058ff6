"""A reason that names a cause is counterfactually true: re-solve without the cause and look.

A reason may name a guarantee that raised the request ("without it, it gets less"), a
guarantee of another node that held it down, a limit that capped it, or a pool that was its
bottleneck ("without that limit / with that guarantee gone / with more GPUs there, it gets
more").  Each cause is one re-solve, whatever the number of requests that name it: every
request's effective GPUs are compared before and after, exact and as published.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from fairshare.engine._problem import Problem
from fairshare.errors import FairshareError

MORE = 0.5  # effective GPUs (half a reference GPU): less is placement noise, not a gain
EXACT_MOVE = 1e-4  # effective GPUs: the exact solve must move at least this much too
CAPACITY_REACH = 2  # a pool is searched up to this many times the request's demand added to it
CHECK_BUDGET = 12_000  # cells x re-solves per allocation; once spent, the claims left are not made
MIN_SOLVES = 8  # a lab too large for this many re-solves (over 1,500 cells) gets its reasons by the rule alone

CauseKind = Literal["guarantee", "limit", "pool"]


@dataclass(frozen=True)
class Cause:
    """What a reason names: a guarantee or a limit (node, GPU type), or a pool (its number)."""

    kind: CauseKind
    index: int  # the node, or the pool
    gpu: int = -1  # the GPU type of a guarantee or a limit
    more: float = 0.0  # a pool: the GPUs added (what explain's capacity lever reaches for the request)


# a solve of a changed problem: each request's exact effective GPUs, and a function that
# rounds that solve and gives them as published (called only when a claim needs it)
Solve = Callable[[Problem], tuple[np.ndarray, Callable[[], np.ndarray]]]


def changed(problem: Problem, cause: Cause) -> Problem:
    """The problem without the guarantee, without the limit, or with `cause.more` GPUs in the pool."""
    if cause.kind == "guarantee":
        kept = [(n, g, v) for n, g, v in problem.guarantees if (n, g) != (cause.index, cause.gpu)]
        return replace(problem, guarantees=kept)
    if cause.kind == "limit":
        return replace(problem, limits=[(n, g, v) for n, g, v in problem.limits if (n, g) != (cause.index, cause.gpu)])
    cap = problem.pool_cap.copy()
    cap[cause.index] += cause.more
    return replace(problem, pool_cap=cap)


def affordable(problem: Problem) -> bool:
    """Whether the lab is small enough for MIN_SOLVES re-solves within CHECK_BUDGET."""
    return max(problem.n_cells, 1) * MIN_SOLVES <= CHECK_BUDGET


class Counterfactuals:
    """The re-solves of one allocation, each made once and only when a claim asks for it."""

    def __init__(
        self,
        problem: Problem,
        solve: Solve,
        exact: np.ndarray,
        published: np.ndarray,
        fractional: bool,
    ):
        self.problem, self.solve = problem, solve
        self.budget = CHECK_BUDGET // max(problem.n_cells, 1)
        self.exact, self.published, self.fractional = exact, published, fractional
        self._solved: dict[Cause, tuple[np.ndarray, Callable[[], np.ndarray]] | None] = {}
        self._rounded: dict[Cause, np.ndarray] = {}

    @property
    def solves(self) -> int:
        return len(self._solved)

    def holds(self, cause: Cause, r: int, sign: int) -> bool:
        """Does request r move by `sign` (+1 more, -1 less) once `cause` is changed, in the exact
        solve and as published (whole GPUs: by at least MORE, what explain's levers count as a
        gain)?  A re-solve that fails, or one beyond the budget, confirms nothing."""
        if cause not in self._solved:
            if len(self._solved) >= self.budget:
                return False
            try:
                self._solved[cause] = self.solve(changed(self.problem, cause))
            except FairshareError:
                self._solved[cause] = None
        solved = self._solved[cause]
        if solved is None or sign * (solved[0][r] - self.exact[r]) < EXACT_MOVE:
            return False
        if self.fractional:
            return True
        if cause not in self._rounded:
            self._rounded[cause] = solved[1]()
        return bool(sign * (self._rounded[cause][r] - self.published[r]) >= MORE)
