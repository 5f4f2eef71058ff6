"""What one HiGHS run costs on an LP the size of a simulator's group (issue 19): the floor under any
LP-per-change design of the fairshare and gavel policies.

    python bench/bench_highs_run.py [--cols 61] [--rows 40] [--runs 3000]

Times, on one warm HiGHS instance with the engine's options (single thread, no presolve, simplex):
a re-run with nothing changed, a re-run after one row bound changed, a re-run after one matrix
coefficient changed (the engine's level column), and building a `Highs()` object.  Prints
microseconds per run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import highspy
import numpy as np
import scipy.sparse as sp

OPTIONS = (("threads", 1), ("presolve", "off"), ("solver", "simplex"), ("random_seed", 0))


def model(cols: int, rows: int) -> highspy.HighsLp:
    a = sp.csc_matrix(sp.random(rows, cols, density=0.1, random_state=0, format="csc") + sp.eye(rows, cols))
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = cols, rows
    lp.col_cost_ = np.ones(cols)
    lp.col_lower_, lp.col_upper_ = np.zeros(cols), np.full(cols, 10.0)
    lp.row_lower_, lp.row_upper_ = np.full(rows, -highspy.kHighsInf), np.full(rows, 5.0)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr, a.indices, a.data
    lp.sense_ = highspy.ObjSense.kMaximize
    return lp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cols", type=int, default=61, help="a team's ~20 kinds x 3 types, and the level t")
    ap.add_argument("--rows", type=int, default=40)
    ap.add_argument("--runs", type=int, default=3000)
    args = ap.parse_args()
    cols, rows, n = args.cols, args.rows, args.runs
    h = highspy.Highs()
    h.silent()
    for key, value in OPTIONS:
        h.setOptionValue(key, value)
    h.passModel(model(cols, rows))
    h.run()

    def per_run(change: Callable[[int], object]) -> float:
        t = time.perf_counter()
        for i in range(n):
            change(i)
            h.run()
        return (time.perf_counter() - t) / n * 1e6

    same = per_run(lambda i: None)
    bound = per_run(lambda i: h.changeRowBounds(i % rows, -highspy.kHighsInf, 5.0 + 0.1 * (i % 7)))
    coeff = per_run(lambda i: h.changeCoeff(i % rows, cols - 1, -0.5 - 0.1 * (i % 7)))
    t = time.perf_counter()
    for _ in range(500):
        highspy.Highs().silent()
    new = (time.perf_counter() - t) / 500 * 1e6
    print(
        f"{cols} columns x {rows} rows, {n} runs each: nothing changed {same:.0f} us; "
        f"one row bound changed {bound:.0f} us; one coefficient changed {coeff:.0f} us; Highs() {new:.0f} us"
    )


if __name__ == "__main__":
    main()
