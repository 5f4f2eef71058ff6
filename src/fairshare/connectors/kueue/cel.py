"""The CRDs' own CEL rules (`x-kubernetes-validations`), evaluated offline as the API server would.

The rule texts are read from the CRD files and run by cel-python (`celpy`), so a Kueue upgrade
brings its new rules with it: nothing here knows any particular rule.  Kubernetes adds functions
to standard CEL; the ones registered here are its quantity library (`quantity()`,
`isQuantity()`, `.isLessThan()`, ...), backed by `kubernetes.utils.parse_quantity`.  A rule that
calls a function this environment lacks is reported as *unchecked* (the CLI names it), never as
a violation: the object is not at fault.

Transition rules (those reading `oldSelf`) compare an update with the stored object; the API
server skips them when an object is created, and so does this module.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from fairshare.connectors.kueue.formats import parse_quantity

if TYPE_CHECKING:
    from collections.abc import Callable

_OLD_SELF = re.compile(r"\boldSelf\b")
_UNDECLARED = "undeclared reference"  # celpy's error for a function or variable it does not know
_MACROS = {"has", "all", "exists", "exists_one", "map", "filter"}


def is_transition_rule(rule: str) -> bool:
    """Rules reading `oldSelf` compare an update with the stored object: nothing to check offline."""
    return _OLD_SELF.search(rule) is not None


def normalised(rule: str) -> str:
    """A rule's text on one line (the CRD files wrap long rules), as messages quote it."""
    return " ".join(rule.split())


@dataclass(frozen=True)
class Outcome:
    """One rule on one value: it holds, it is violated (with the message to show), or it cannot be
    evaluated offline (`unchecked`)."""

    holds: bool
    message: str = ""
    unchecked: bool = False


def evaluate(rule: dict[str, Any], value: Any) -> Outcome:
    """Run one `x-kubernetes-validations` entry (`rule`, `message`, `messageExpression`) on `value`,
    the data at the rule's schema node with defaults filled in, bound to `self`."""
    import celpy

    text = normalised(str(rule.get("rule", "")))
    if not checkable(text):
        return Outcome(True, unchecked=True)
    program = _program(text)
    activation = {"self": celpy.json_to_cel(value)}
    try:
        result = program.evaluate(activation)
    except celpy.CELEvalError as e:
        if str(e.args[0] if e.args else e).startswith(_UNDECLARED):
            return Outcome(True, unchecked=True)
        result = False  # as on the API server: an evaluation error rejects the object
    if isinstance(result, celpy.celtypes.BoolType) and bool(result):
        return Outcome(True)
    return Outcome(False, _message(rule, activation, text))


def _message(rule: dict[str, Any], activation: dict[str, Any], text: str) -> str:
    """`messageExpression` if it evaluates to a non-empty string, else `message`, else the rule."""
    import celpy

    expression = rule.get("messageExpression")
    if expression:
        try:
            shown = _program(normalised(str(expression))).evaluate(activation)
        except (celpy.CELParseError, celpy.CELEvalError):
            shown = None
        if isinstance(shown, str) and shown.strip():
            return str(shown)
    return str(rule.get("message") or f"failed rule: {text}")


@functools.lru_cache(maxsize=256)
def checkable(rule: str) -> bool:
    """Whether `rule` compiles and calls only functions this environment has (standard CEL, its
    macros and the Kubernetes libraries registered below)."""
    import celpy

    try:
        _program(normalised(rule))
    except celpy.CELParseError:  # a rule that does not compile cannot be checked offline
        return False
    return not missing_functions(rule)


def missing_functions(rule: str) -> set[str]:
    """The functions and methods `rule` calls that this environment lacks."""
    from celpy.evaluation import base_functions

    called = set()
    for node in _environment().compile(normalised(rule)).iter_subtrees():
        if node.data == "ident_arg":  # f(x)
            called.add(str(node.children[0]))
        elif node.data == "member_dot_arg":  # x.f(y)
            called.add(str(node.children[1]))
    return called - set(base_functions) - _MACROS - set(_functions())


@functools.lru_cache(maxsize=256)
def _program(text: str) -> Any:
    """The compiled rule; raises celpy.CELParseError if it does not compile."""
    env = _environment()
    return env.program(env.compile(text), functions=_functions())


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import celpy

    return celpy.Environment()  # builds the parser: about 0.1 s, once


# --- Kubernetes' quantity library (k8s.io/apiserver/pkg/cel/library/quantity.go) ------------------------


class Quantity:
    """A CEL value of Kubernetes' `Quantity` type: "500m", "2Ki", 8 ... as an exact Decimal."""

    def __init__(self, value: Decimal) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"quantity({self.value})"


def _quantity(text: Any) -> Quantity:
    value = parse_quantity(str(text))
    if value is None:
        raise ValueError(f"invalid quantity {text!r}")
    return Quantity(value)


def _operand(other: Any) -> Decimal:
    return other.value if isinstance(other, Quantity) else Decimal(int(other))


def _functions() -> dict[str, Callable[..., Any]]:
    """Kubernetes' CEL quantity functions; celpy calls `q.f(x)` as `f(q, x)`."""
    from celpy import celtypes as ct

    def as_integer(q: Quantity) -> Any:
        if q.value != q.value.to_integral_value() or abs(q.value) >= 2**63:
            raise ValueError(f"{q} is not an int64")
        return ct.IntType(int(q.value))

    return {
        "quantity": _quantity,
        "isQuantity": lambda text: ct.BoolType(parse_quantity(str(text)) is not None),
        "sign": lambda q: ct.IntType((q.value > 0) - (q.value < 0)),
        "isInteger": lambda q: ct.BoolType(q.value == q.value.to_integral_value() and abs(q.value) < 2**63),
        "asInteger": as_integer,
        "asApproximateFloat": lambda q: ct.DoubleType(float(q.value)),
        "add": lambda q, other: Quantity(q.value + _operand(other)),
        "sub": lambda q, other: Quantity(q.value - _operand(other)),
        "isLessThan": lambda q, other: ct.BoolType(q.value < _operand(other)),
        "isGreaterThan": lambda q, other: ct.BoolType(q.value > _operand(other)),
        "compareTo": lambda q, other: ct.IntType((q.value > _operand(other)) - (q.value < _operand(other))),
    }
