"""Kubernetes value formats: names, label values and quantities, as the API server checks them."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAME_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def parse_quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity (8, "500m", "1.5", "2Ki", "1e3") as a Decimal; None if it is not one.

    Only what a manifest may hold (an int or a string: `x-kubernetes-int-or-string`) is a
    quantity; the parsing is the kubernetes client's (`kubernetes.utils.parse_quantity`)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    if isinstance(value, str) and value != value.strip():  # Decimal() would forgive the blanks
        return None
    from kubernetes.utils.quantity import parse_quantity as k8s_parse_quantity  # slow import: only when used

    try:
        number = k8s_parse_quantity(value)
    except (ValueError, ArithmeticError):
        return None
    return number if isinstance(number, Decimal) and number.is_finite() else None


def qualified_name_problem(name: str) -> str | None:
    """Why `name` is not a qualified name (`[prefix/]name`, as label keys and resource names are)."""
    prefix, _, local = name.rpartition("/")
    if "/" in name and not prefix:
        return "the prefix before '/' is empty"
    if prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
        return f"prefix {prefix!r} must be a lowercase DNS subdomain (e.g. example.com)"
    if not local or len(local) > 63 or not _NAME_PART.match(local):
        return (
            f"name part {local!r} must be 1-63 characters of letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None


def label_value_problem(value: Any) -> str | None:
    """Why `value` is not a label value (empty is fine), or None."""
    if not isinstance(value, str):
        return f"label value {value!r} must be a string"
    if value and (len(value) > 63 or not _NAME_PART.match(value)):
        return (
            f"label value {value!r} must be at most 63 characters of letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None
