"""An entitlement's fields are the engine's (fairshare.engine.Entitlement): the stored row is its
`asdict`, and the API's EntitlementOut lists the same fields in the same order after the round's."""

from __future__ import annotations

from dataclasses import fields

from fairshare.engine import Entitlement, Sibling
from fairshare.service.api.schemas import EntitlementOut, SiblingOut


def test_the_apis_entitlement_has_the_engines_fields_in_order() -> None:
    engine = [f.name for f in fields(Entitlement)]
    assert list(EntitlementOut.model_fields) == ["round_id", "round_state", "run_id", *engine]


def test_the_apis_sibling_has_the_engines_fields_in_order() -> None:
    assert list(SiblingOut.model_fields) == [f.name for f in fields(Sibling)]
