"""A thin, typed wrapper over highspy: build an LP from sparse arrays, change bounds, solve.

All LPs of the engine go through here so solver options (deterministic, single thread,
no output) are set in one place.
"""

from __future__ import annotations

from collections.abc import Callable

import highspy
import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from fairshare.errors import SolverError

INF = highspy.kHighsInf
IPM_MIN_COLS = 5000  # below this, cold simplex is as fast
IPM_SOLVER = "ipm"
CROSSOVER = "on"
DEVEX = 1  # HiGHS's simplex_dual_edge_weight_strategy for Devex
DANTZIG = 0  # and for Dantzig
DEFAULT_SCALING = highspy.HighsOptions().simplex_scale_strategy  # HiGHS's own default (teams' groups turn it off)
TIME_LIMIT = 120.0  # seconds per solve; HiGHS's own clock runs over every solve of an instance
_OPTIONS = (("time_limit", TIME_LIMIT), ("threads", 1), ("random_seed", 0), ("presolve", "off"), ("solver", "simplex"))


class LP:
    """A maximisation LP held by one HiGHS instance so re-solves warm-start."""

    def __init__(
        self,
        a: sp.spmatrix,
        cost: np.ndarray,
        col_lower: np.ndarray,
        col_upper: np.ndarray,
        row_lower: np.ndarray,
        row_upper: np.ndarray,
        integer: np.ndarray | None = None,
        cold_ipm: bool = True,
    ):
        """cold_ipm=False keeps simplex for a large model's first solve too (flow-like LPs,
        whose simplex is several times faster than interior point)."""
        if not (sp.issparse(a) and a.format == "csc"):  # converting costs even when it has nothing to do
            a = sp.csc_matrix(a)
        self.n_cols, self.n_rows = a.shape[1], a.shape[0]
        # the model as arrays until the first solve (changes before it are made to these, and
        # the model goes to HiGHS once, at that solve); the arrays go to HiGHS as they are
        # (setting a HighsLp's vectors from Python converts element by element: slow)
        self._model: dict[str, np.ndarray] | None = {
            "cost": np.array(cost, dtype=float),
            "col_lower": np.array(col_lower, dtype=float),
            "col_upper": np.array(col_upper, dtype=float),
            "row_lower": np.array(row_lower, dtype=float),
            "row_upper": np.array(row_upper, dtype=float),
            "start": a.indptr.astype(np.int32),
            "index": a.indices.astype(np.int32),
            "value": a.data.astype(float),
            "integrality": (
                np.zeros(self.n_cols, np.int32)
                if integer is None
                else np.where(
                    np.asarray(integer, bool), int(highspy.HighsVarType.kInteger), int(highspy.HighsVarType.kContinuous)
                ).astype(np.int32)
            ),
        }
        self.h = highspy.Highs()
        self.h.silent()
        for key, value in _OPTIONS:
            self.h.setOptionValue(key, value)
        self.is_mip = integer is not None
        self.cold_ipm = cold_ipm and not self.is_mip
        if self.is_mip:
            self.h.setOptionValue("presolve", "on")
            self.h.setOptionValue("mip_rel_gap", 0.0)
        self.solves = 0
        # a starting basis for the first solve, if the model's owner can find one
        # (engine/_crash.py); None: interior point for a large model, simplex from scratch else
        self.crash: Callable[[], highspy.HighsBasis | None] | None = None
        self._solution: dict[str, np.ndarray] | None = None  # the last solve's solution, fetched from HiGHS once
        self._hsol: highspy.HighsSolution | None = None
        self._coeffs: list[tuple[int, int, float]] = []  # matrix changes not yet sent to HiGHS

    def _pass_model(self) -> None:
        """Hand the model, with every change made so far, to HiGHS (once, at the first solve)."""
        m = self._model
        assert m is not None
        if self._coeffs:
            self._merge_coeffs()
        self._model = None  # HiGHS holds the model from now on
        status = self.h.passModel(
            self.n_cols,
            self.n_rows,
            len(m["value"]),
            int(highspy.MatrixFormat.kColwise),
            int(highspy.ObjSense.kMaximize),
            0.0,
            m["cost"],
            m["col_lower"],
            m["col_upper"],
            m["row_lower"],
            m["row_upper"],
            m["start"],
            m["index"],
            m["value"],
            m["integrality"],
        )
        if status == highspy.HighsStatus.kError:
            raise SolverError("HiGHS rejected the model")

    def prefer_devex(self) -> None:
        """Devex pricing in dual simplex.  A solve that starts from a basis HiGHS did not reach
        itself (after interior point and crossover, or a crash basis) has no dual steepest-edge
        weights, and HiGHS computes them from scratch, one BTRAN per row: seconds on a large
        group, for a re-solve of a few dozen iterations.  For LPs re-solved after small changes."""
        self.h.setOptionValue("simplex_dual_edge_weight_strategy", DEVEX)

    def prefer_dantzig(self) -> None:
        """Dantzig pricing in dual simplex: for a small LP started from a basis that is nearly
        optimal (engine/_crash.py's planned shapes), where a pivot is cheap and the edge weights'
        upkeep is not: about half the time of Devex there."""
        self.h.setOptionValue("simplex_dual_edge_weight_strategy", DANTZIG)

    def set_col_bounds(self, cols: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> None:
        cols = np.asarray(cols, dtype=np.int32)
        if len(cols):
            lower, upper = np.asarray(lower, float), np.asarray(upper, float)
            if self._model is not None:
                self._model["col_lower"][cols] = lower
                self._model["col_upper"][cols] = upper
            else:
                self.h.changeColsBounds(len(cols), cols, lower, upper)

    def set_row_bounds(self, rows: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> None:
        rows = np.asarray(rows, dtype=np.int32)
        if len(rows):
            lower, upper = np.asarray(lower, float), np.asarray(upper, float)
            if self._model is not None:
                self._model["row_lower"][rows] = lower
                self._model["row_upper"][rows] = upper
            else:
                self.h.changeRowsBounds(len(rows), rows, lower, upper)  # type: ignore[attr-defined]  # bound, not in stubs

    def change_coeffs(self, rows: np.ndarray, col: int, values: np.ndarray) -> None:
        """Set entries (row, col) of the matrix (0 removes one).  The changes reach HiGHS at the
        next solve, in the order made (changes no solve sees cost nothing).  Before the first
        solve they are made to the model's arrays: HiGHS's changeCoeff searches the column on
        every call, quadratic in a long column (a large group's level column t).  The matrix
        passed is the one the calls would have made, entry order included (HiGHS appends a
        new entry at the end of its column), so the solver takes the same path.  After a solve
        they go one by one, so the basis is kept."""
        rows = np.asarray(rows).tolist()
        values = np.asarray(values, float).tolist()
        self._coeffs.extend((r, col, v) for r, v in zip(rows, values, strict=True))

    def _send_coeffs(self) -> None:
        """The matrix changes made since the last solve, one by one (the basis is kept)."""
        changes, self._coeffs = self._coeffs, []
        for r, c, v in changes:
            self.h.changeCoeff(r, c, v)

    def _merge_coeffs(self) -> None:
        """The matrix changes made before the first solve, into the model's arrays."""
        changes, self._coeffs = self._coeffs, []
        m = self._model
        assert m is not None
        start = m["start"].astype(np.int64)
        index, value = m["index"], m["value"]
        columns: dict[int, dict[int, float]] = {}
        for r, c, v in changes:  # what changeCoeff does: update in place, append, or remove
            col = columns.get(c)
            if col is None:
                here = slice(start[c], start[c + 1])
                col = columns[c] = dict(zip(index[here].tolist(), value[here].tolist(), strict=True))
            if v != 0:
                col[r] = v
            else:
                col.pop(r, None)
        counts = np.diff(start)
        pieces_i, pieces_v = [], []
        done = 0
        for c in sorted(columns):
            pieces_i.append(index[start[done] : start[c]])
            pieces_v.append(value[start[done] : start[c]])
            pieces_i.append(np.fromiter(columns[c].keys(), np.int32, len(columns[c])))
            pieces_v.append(np.fromiter(columns[c].values(), float, len(columns[c])))
            counts[c] = len(columns[c])
            done = c + 1
        pieces_i.append(index[start[done] :])
        pieces_v.append(value[start[done] :])
        m["start"] = np.r_[0, np.cumsum(counts)].astype(np.int32)
        m["index"] = np.concatenate(pieces_i).astype(np.int32)
        m["value"] = np.concatenate(pieces_v).astype(float)

    def set_cost(self, cost: np.ndarray) -> None:
        cost = np.asarray(cost, float)
        if self._model is not None:
            self._model["cost"] = cost.copy()
        else:
            self.h.changeColsCost(self.n_cols, np.arange(self.n_cols, dtype=np.int32), cost)

    def run(self) -> bool:
        """Solve; True if optimal, False if infeasible; SolverError on anything else.

        The first solve starts from the crash basis if there is one (simplex continues from it
        if it is not optimal); failing that, a large model's uses interior point with
        crossover, several times faster than simplex from scratch; crossover leaves a basis,
        so later solves warm-start with simplex."""
        self._solution = self._hsol = None
        if self._model is not None:
            self._pass_model()
        elif self._coeffs:
            self._send_coeffs()
        cold_ipm = self.cold_ipm and self.solves == 0 and self.n_cols >= IPM_MIN_COLS
        if self.solves == 0 and self.crash is not None and self._run_from_crash():
            self.solves += 1
            return True
        if cold_ipm:
            self.h.setOptionValue("solver", IPM_SOLVER)
            self.h.setOptionValue("run_crossover", CROSSOVER)
            self.h.setOptionValue("presolve", "on")
        self._run_highs()
        if cold_ipm:
            self.h.setOptionValue("solver", "simplex")
            self.h.setOptionValue("presolve", "off")
        self.solves += 1
        status = self.h.getModelStatus()
        if status not in (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kInfeasible):
            self.h.clearSolver()  # a misleading warm start: retry from scratch, scaled
            self.h.setOptionValue("simplex_scale_strategy", DEFAULT_SCALING)
            self._run_highs()
            status = self.h.getModelStatus()
        if status == highspy.HighsModelStatus.kOptimal:
            return True
        if status == highspy.HighsModelStatus.kInfeasible:
            return False
        raise SolverError(f"HiGHS stopped with status {self.h.modelStatusToString(status)}")

    def _run_highs(self) -> None:
        """One HiGHS run with TIME_LIMIT of its own: HiGHS (before 2.0) checks `time_limit`
        against the instance's total run time, so a model re-solved for long (a simulator's
        cached group, re-solved thousands of times) would otherwise stop with "Time limit
        reached" on a solve that takes milliseconds (ERGO-Code/HiGHS#1477)."""
        self.h.setOptionValue("time_limit", self.h.getRunTime() + TIME_LIMIT)
        self.h.run()

    def _run_from_crash(self) -> bool:
        """Simplex from the crash basis; True if that reached the optimum.  Otherwise (no
        basis, or the crash's own LPs failed) the solver is cleared, for interior point from
        scratch."""
        try:
            basis = self.crash() if self.crash is not None else None
        except SolverError:  # a small LP of the crash in numerical trouble: no shortcut, no harm
            basis = None
        if basis is None:
            return False
        if self.h.setBasis(basis) != highspy.HighsStatus.kOk:
            self.h.clearSolver()
            return False
        self._run_highs()
        if self.h.getModelStatus() == highspy.HighsModelStatus.kOptimal:
            return True
        self.h.clearSolver()
        return False

    def _get_solution(self) -> dict[str, np.ndarray]:
        if self._solution is None:
            self._solution = {}
        return self._solution

    def _highs_solution(self) -> highspy.HighsSolution:
        """The last solve's solution as HiGHS gives it, copied out once (every copy converts all
        four of its vectors; the water-fill reads the values and the duals of most solves)."""
        if self._hsol is None:
            self._hsol = self.h.getSolution()
        return self._hsol

    def values(self) -> np.ndarray:
        """The last solve's column values (do not modify the array)."""
        cache = self._get_solution()
        if "col" not in cache:
            cache["col"] = np.array(self._highs_solution().col_value, dtype=float)
        return cache["col"]

    def row_duals(self) -> np.ndarray:
        cache = self._get_solution()
        if "row_dual" not in cache:
            cache["row_dual"] = np.array(self._highs_solution().row_dual, dtype=float)
        return cache["row_dual"]

    def objective(self) -> float:
        return float(self.h.getInfo().objective_function_value)
