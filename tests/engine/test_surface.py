"""The engine's public surface: `fairshare.engine.__all__`, one reason vocabulary (ReasonCode), one
rule for where a request may run, one fairness function, one result assembly (overrides too)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import scenarios

import fairshare.engine as engine
from fairshare.engine import Allocation, Pin, ReasonCode, allocate, allocate_with_pins, jain_index
from fairshare.engine._problem import compile_scenario
from fairshare.scenario import Scenario
from fairshare.scenario.files import loads_scenario

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LAB = loads_scenario("""
name: lab
pools:
  - {name: h100, gpu: H100, site: a, gpus: 8}
  - {name: a100, gpu: A100, site: b, gpus: 40}
  - {name: empty, gpu: A100, site: a, gpus: 0}
org:
  name: lab
  children: [{name: llama, weight: 2}, {name: opt}]
requests:
  - {id: big, team: llama, gpus: 60, speed: {H100: 3, A100: 1}}
  - {id: small, team: opt, gpus: 10, min: 4}
  - {id: here, team: opt, gpus: 4, sites: [a], speed: {A100: 1}}
""")


def test_every_name_in_all_is_exported() -> None:
    assert all(hasattr(engine, name) for name in engine.__all__)
    assert not [name for name in engine.__all__ if name.startswith("_")]


def test_reason_codes_are_the_typed_vocabulary_and_serialise_as_plain_words() -> None:
    alloc = allocate(LAB)
    assert all(type(r.reason.code) is ReasonCode for r in alloc.requests)
    assert json.dumps([r.reason.code for r in alloc.requests]) == json.dumps(
        [r.reason.code.value for r in alloc.requests]
    )
    assert f"{ReasonCode.below_min}" == "below_min"


def test_an_override_reason_is_a_reason_code_too() -> None:
    alloc = allocate_with_pins(LAB, [Pin("small", {"a100": 5}, "launch")])
    assert alloc.request("small").reason.code is ReasonCode.override


def test_a_request_on_empty_pools_only_is_usable_there_but_has_no_cell() -> None:
    """The scenario's rule says where it may run (capacity aside); the engine solves only pools with GPUs."""
    assert [p.name for p in LAB.usable_pools(LAB.requests[2])] == ["empty"]
    alloc = allocate(LAB)
    assert alloc.request("here").reason.code is ReasonCode.no_usable_pool


@SETTINGS
@given(scenarios(limits=True))
def test_the_engine_solves_exactly_the_scenarios_usable_pools_with_gpus(s: Scenario) -> None:
    pr = compile_scenario(s)
    cells = set(zip(pr.cell_req.tolist(), pr.cell_pool.tolist(), strict=True))
    expected = {(r, s.pools.index(p)) for r, req in enumerate(s.requests) for p in s.usable_pools(req) if p.gpus}
    assert cells == expected


def _adds_up(s: Scenario, a: Allocation) -> None:
    """Every pool's and every node's GPUs are those of its requests (its subtree's), whole, as in any allocation."""
    for p in a.pools:
        assert p.allocated == sum(r.gpus.get(p.name, 0) for r in a.requests)
        assert type(p.allocated) is int
    gpu_of = {p.name: p.gpu for p in s.pools}
    subtree: dict[str, dict[str, int]] = {n.name: {} for n in a.nodes}
    for r in a.requests:
        for pool, n in r.gpus.items():
            assert type(n) is int
            node: str | None = r.team
            while node is not None:
                subtree[node][gpu_of[pool]] = subtree[node].get(gpu_of[pool], 0) + n
                node = a.node(node).parent
    for n in a.nodes:
        assert n.gpus == {g: v for g, v in subtree[n.name].items() if v}
        assert all(type(v) is int for v in n.gpus.values())


def test_an_allocation_with_pins_is_assembled_like_any_allocation() -> None:
    a = allocate_with_pins(LAB, [Pin("small", {"a100": 5}, "launch"), Pin("big", {"h100": 8, "a100": 2}, "x")])
    _adds_up(LAB, a)
    assert a.request("big").gpus == {"h100": 8, "a100": 2}
    assert a.request("big").effective == 26
    assert a.node("lab").demand == 74


@SETTINGS
@given(scenarios(limits=True), st.data())
def test_a_random_pin_is_held_and_the_allocation_adds_up(s: Scenario, data: st.DataObject) -> None:
    plain = allocate(s)
    chosen = data.draw(st.sampled_from(plain.requests))
    pinned = allocate_with_pins(s, [Pin(chosen.id, {k: int(v) for k, v in chosen.gpus.items()}, "as is")])
    _adds_up(s, pinned)
    assert pinned.request(chosen.id).reason.code is ReasonCode.override
    assert pinned.request(chosen.id).gpus == chosen.gpus


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], 1.0),
        ([0.0, 0.0], 1.0),
        ([2.0, 2.0, 2.0], 1.0),
        ([5.0, 0.0, 0.0, 0.0], 0.25),
        ([1.0, 3.0], 0.8),
    ],
)
def test_jain_index(values: list[float], expected: float) -> None:
    assert jain_index(values) == pytest.approx(expected)
