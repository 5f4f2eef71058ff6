"""A model re-solved for long keeps its time limit per solve (HiGHS checks `time_limit` against an
instance's total run time: a simulator's cached group failed with "Time limit reached" after
thousands of millisecond solves, ERGO-Code/HiGHS#1477)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fairshare.engine import _highs


def test_many_short_solves_of_one_model_never_hit_the_time_limit(monkeypatch) -> None:
    limit = 0.01
    monkeypatch.setattr(_highs, "TIME_LIMIT", limit)
    rng = np.random.default_rng(0)
    n = 60  # dense enough that every solve from scratch takes simplex iterations
    lp = _highs.LP(
        sp.csc_matrix(rng.random((n, n))),
        rng.random(n),
        np.zeros(n),
        np.full(n, 10.0),
        np.full(n, -_highs.INF),
        n * rng.random(n),
    )
    lp.h.setOptionValue("time_limit", limit)
    assert lp.run()
    optimum = lp.objective()
    solves = 1
    while lp.h.getRunTime() < 5 * limit:  # the instance's clock goes well past one solve's limit
        lp.h.clearSolver()  # no warm start: the solve iterates (and checks the clock)
        assert lp.run(), f"solve {solves} (instance run time {lp.h.getRunTime():.4f} s) did not reach the optimum"
        assert abs(lp.objective() - optimum) < 1e-9 * max(1.0, abs(optimum))
        solves += 1
    assert solves > 5
