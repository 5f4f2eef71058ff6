"""A thin, typed wrapper over highspy: build an LP from sparse arrays, change bounds, solve.

All LPs of the engine go through here so solver options (deterministic, single thread,
no output) are set in one place.
"""

from __future__ import annotations

import highspy
import numpy as np
import scipy.sparse as sp

INF = highspy.kHighsInf
IPM_MIN_COLS = 5000  # below this, cold simplex is as fast
IPM_SOLVER = "ipm"
CROSSOVER = "on"
_OPTIONS = (("time_limit", 120.0), ("threads", 1), ("random_seed", 0), ("presolve", "off"), ("solver", "simplex"))


class SolverError(RuntimeError):
    """HiGHS did not reach an optimum on a model that should have one (numerical trouble)."""


class LP:
    """A maximisation LP held by one HiGHS instance so re-solves warm-start."""

    def __init__(self, a: sp.spmatrix, cost: np.ndarray, col_lower: np.ndarray, col_upper: np.ndarray,
                 row_lower: np.ndarray, row_upper: np.ndarray, integer: np.ndarray | None = None):
        a = sp.csc_matrix(a)
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = a.shape[1], a.shape[0]
        lp.col_cost_ = np.asarray(cost, dtype=float)
        lp.col_lower_ = np.asarray(col_lower, dtype=float)
        lp.col_upper_ = np.asarray(col_upper, dtype=float)
        lp.row_lower_ = np.asarray(row_lower, dtype=float)
        lp.row_upper_ = np.asarray(row_upper, dtype=float)
        lp.sense_ = highspy.ObjSense.kMaximize
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = a.indptr.astype(np.int32)
        lp.a_matrix_.index_ = a.indices.astype(np.int32)
        lp.a_matrix_.value_ = a.data.astype(float)
        if integer is not None:
            lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous for i in integer]
        self.h = highspy.Highs()
        self.h.silent()
        for key, value in _OPTIONS:
            self.h.setOptionValue(key, value)
        self.is_mip = integer is not None
        if self.is_mip:
            self.h.setOptionValue("presolve", "on")
            self.h.setOptionValue("mip_rel_gap", 0.0)
        self.h.passModel(lp)
        self.n_cols, self.n_rows = a.shape[1], a.shape[0]
        self.solves = 0
        self._solution = None  # the last solve's solution, fetched from HiGHS once

    def set_col_bounds(self, cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        cols = np.asarray(cols, dtype=np.int32)
        if len(cols):
            self.h.changeColsBounds(len(cols), cols, np.asarray(lower, float), np.asarray(upper, float))

    def set_row_bounds(self, rows: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int32)
        if len(rows):
            self.h.changeRowsBounds(len(rows), rows, np.asarray(lower, float), np.asarray(upper, float))

    def set_cost(self, cost: np.ndarray) -> None:
        self.h.changeColsCost(self.n_cols, np.arange(self.n_cols, dtype=np.int32), np.asarray(cost, float))

    def run(self) -> bool:
        """Solve; True if optimal, False if infeasible; SolverError on anything else.

        A large model's first (cold) solve uses interior point with crossover, several times
        faster than simplex from scratch; crossover leaves a basis, so later solves warm-start
        with simplex."""
        self._solution = None
        cold_ipm = self.solves == 0 and self.n_cols >= IPM_MIN_COLS and not self.is_mip
        if cold_ipm:
            self.h.setOptionValue("solver", IPM_SOLVER)
            self.h.setOptionValue("run_crossover", CROSSOVER)
            self.h.setOptionValue("presolve", "on")
        self.h.run()
        if cold_ipm:
            self.h.setOptionValue("solver", "simplex")
            self.h.setOptionValue("presolve", "off")
        self.solves += 1
        status = self.h.getModelStatus()
        if status not in (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kInfeasible):
            self.h.clearSolver()  # a misleading warm start: retry from scratch
            self.h.run()
            status = self.h.getModelStatus()
        if status == highspy.HighsModelStatus.kOptimal:
            return True
        if status == highspy.HighsModelStatus.kInfeasible:
            return False
        raise SolverError(f"HiGHS stopped with status {self.h.modelStatusToString(status)}")

    def _get_solution(self) -> dict[str, np.ndarray]:
        if self._solution is None:
            self._solution = {}
        return self._solution

    def values(self) -> np.ndarray:
        """The last solve's column values (do not modify the array)."""
        cache = self._get_solution()
        if "col" not in cache:
            cache["col"] = np.array(self.h.getSolution().col_value, dtype=float)
        return cache["col"]

    def row_duals(self) -> np.ndarray:
        cache = self._get_solution()
        if "row_dual" not in cache:
            cache["row_dual"] = np.array(self.h.getSolution().row_dual, dtype=float)
        return cache["row_dual"]

    def objective(self) -> float:
        return float(self.h.getInfo().objective_function_value)
