"""Fairness metrics: Jain's index, and the summary an allocation reports over its teams."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fairshare.engine._problem import Problem
from fairshare.engine._result import Fairness


def jain_index(values: Sequence[float] | np.ndarray) -> float:
    """Jain's index of `values`: 1 when all are equal, 1/n when one holds everything; 1 for no
    values or all zeros (nothing to be unfair about)."""
    v = np.asarray(values, dtype=float)
    squares = (v**2).sum()
    return float(v.sum() ** 2 / (len(v) * squares)) if len(v) and squares > 0 else 1.0


def team_fairness(pr: Problem, x: np.ndarray, e_req: np.ndarray, below_min: list[str]) -> Fairness:
    """Over the teams that have requests: Jain's index of their effective GPUs per unit of weight,
    and the team with the smallest share of its demand."""
    teams = sorted(set(pr.req_node.tolist()))
    got = np.bincount(pr.cell_req, weights=x, minlength=pr.n_requests)
    ratios, shares = [], []
    for t in teams:
        mine = pr.req_node == t
        ratios.append(e_req[mine].sum() / pr.node_weight[t])
        asked = pr.req_demand[mine].sum()
        shares.append((got[mine].sum() / asked if asked else 1.0, pr.node_names[t]))
    least = min(shares) if shares else None
    return Fairness(
        jain_index=round(jain_index(ratios), 6),
        least_satisfied_team=least[1] if least else None,
        least_satisfied_share=round(float(least[0]), 6) if least else None,
        below_min=below_min,
    )
