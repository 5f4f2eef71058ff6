"""Placement serves the requests below (issue 16): a team's share placed where one of its own
requests cannot run is placed again within the team's value, at no cost to any other node.

The May and August cases of the README lab's six-month run, reduced to two teams: LLaMA
(a big run anywhere, fastest on H100, and a Paris-only ablation) and OPT (runs anywhere)."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import yaml
from pytest import approx

from fairshare.engine import allocate
from fairshare.scenario import OrgNode, Pool, Request, Scenario


def lab(slack: float | None, h100: int, opt_h100_speed: float, menlo_a100: int = 0) -> Scenario:
    pools = [Pool(name="paris-a100", gpu="A100", site="paris", gpus=256)]
    if menlo_a100:
        pools.append(Pool(name="menlo-a100", gpu="A100", site="menlo", gpus=menlo_a100))
    pools.append(Pool(name="menlo-h100", gpu="H100", site="menlo", gpus=h100))
    return Scenario(
        name="six-months",
        reference_gpu="A100",
        pools=pools,
        org=OrgNode(name="lab", children=[OrgNode(name="llama"), OrgNode(name="opt")]),
        requests=[
            Request(id="llama-2", team="llama", gpus=1000, speed={"A100": 1, "H100": 3}),
            Request(id="llama-2-ablations", team="llama", gpus=64, sites=["paris"], speed={"A100": 1, "H100": 3}),
            Request(id="opt-175b-chat", team="opt", gpus=1000, speed={"A100": 1, "H100": opt_h100_speed}),
        ],
        policy={} if slack is None else {"placement_slack": slack},  # type: ignore[arg-type]
    )


def may(slack: float | None = None) -> Scenario:
    """Paris A100s and Menlo H100s; OPT nearly as fast on H100 as LLaMA relative to A100, so each
    Paris GPU handed to the ablation costs LLaMA about 0.07 effective GPUs."""
    return lab(slack, h100=256, opt_h100_speed=2.8)


def august(slack: float | None = None, h100: int = 256) -> Scenario:
    """A100s in Paris and Menlo; then 256 H100s arrive in Menlo (nothing else changes)."""
    return lab(slack, h100=h100, opt_h100_speed=1.0, menlo_a100=256)


def node_effective(a, name: str) -> float:  # noqa: ANN001
    return next(n.effective for n in a.nodes if n.name == name)


def test_may_the_paris_request_gets_gpus_in_paris_within_llamas_slack() -> None:
    strict, slack = allocate(may(0.0), fractional=True), allocate(may(), fractional=True)
    assert strict.request("llama-2-ablations").total == approx(0, abs=1e-3)  # exact: any Paris GPU costs LLaMA
    got = slack.request("llama-2-ablations")
    assert got.total > 1 and set(got.gpus) == {"paris-a100"}
    # LLaMA pays at most its 2% and OPT keeps its value
    assert node_effective(slack, "llama") >= 0.98 * node_effective(strict, "llama") - 1e-6
    assert node_effective(slack, "opt") == approx(node_effective(strict, "opt"), rel=1e-6)


def test_may_the_reason_says_what_llama_gave_up() -> None:
    reason = allocate(may()).request("llama-2-ablations").reason
    assert "placed in paris within llama's share: llama gives up" in reason.text


def test_august_more_capacity_no_longer_takes_everything_from_the_paris_request() -> None:
    before = allocate(august(h100=0))
    after = allocate(august())
    assert before.request("llama-2-ablations").total == 64
    got = after.request("llama-2-ablations")
    assert got.total > 0 and set(got.gpus) == {"paris-a100"}
    strict = allocate(august(0.0), fractional=True)
    assert node_effective(allocate(august(), fractional=True), "opt") == approx(node_effective(strict, "opt"), rel=0.01)


def test_a_larger_slack_gives_the_paris_request_at_least_as_much() -> None:
    totals = [allocate(may(s), fractional=True).request("llama-2-ablations").total for s in (0.0, 0.005, 0.02, 0.1)]
    assert totals == sorted(totals) and totals[-1] == approx(64)


@pytest.mark.parametrize("bad", [-0.1, 0.6])
def test_placement_slack_out_of_range_is_refused_naming_the_field(bad: float) -> None:
    with pytest.raises(pydantic.ValidationError, match="placement_slack"):
        may(bad)


# --- the README lab itself (examples/meta-ai-2023.yaml) in May: its H100 pool arrived, OPT runs a
# chat model anywhere, and the Paris ablations ask for 128 GPUs ----------------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "meta-ai-2023.yaml"


def readme_may(
    slack: float | None = None, more_h100: int = 0, chat: tuple[int, float] = (3000, 2.6), paris_v100: bool = True
) -> Scenario:
    doc = yaml.safe_load(EXAMPLE.read_text())
    if not paris_v100:
        doc["pools"] = [p for p in doc["pools"] if p["name"] != "paris-v100"]
    doc["pools"].append({"name": "menlo-park-h100-b", "gpu": "H100", "site": "menlo-park", "gpus": 1024})
    if more_h100:
        doc["pools"].append({"name": "menlo-park-h100-c", "gpu": "H100", "site": "menlo-park", "gpus": more_h100})
    for r in doc["requests"]:
        if r["id"] == "llama-2-70b":
            r["speed"] = {"A100": 1.0, "H100": 3.5}
            r.pop("min")
        if r["id"] == "llama-2-ablations":
            r.update(gpus=128, speed={"A100": 1.0, "H100": 3.0, "V100": 0.4})
    doc["requests"].append(
        {"id": "opt-175b-chat", "team": "opt", "gpus": chat[0], "speed": {"A100": 1.0, "H100": chat[1], "V100": 0.4}}
    )
    if slack is not None:
        doc["policy"]["placement_slack"] = slack
    return Scenario.model_validate(doc)


def test_readme_may_a_paris_request_starved_to_a_small_share_is_repaired() -> None:
    strict, slack = allocate(readme_may(0.0), fractional=True), allocate(readme_may(), fractional=True)
    assert strict.request("llama-2-ablations").total < 64  # the top-down pass leaves it a third of its ask
    got = slack.request("llama-2-ablations")
    assert got.total == approx(128) and set(got.gpus) == {"paris-a100"}
    assert node_effective(slack, "llama") >= 0.98 * node_effective(strict, "llama") - 1e-6
    for other in ("opt", "genai", "production-ai"):  # the other branches keep their values
        assert node_effective(slack, other) == approx(node_effective(strict, other), rel=0.01)
    reason = allocate(readme_may()).request("llama-2-ablations").reason.text
    assert "placed in paris within llama's share: llama gives up" in reason


def test_readme_may_more_h100_in_menlo_park_never_takes_the_paris_gpus_away() -> None:
    lab = {"chat": (500, 3.0), "paris_v100": False}  # the top-down pass alone drops it from 128 to 67
    before = allocate(readme_may(**lab), fractional=True).request("llama-2-ablations").total  # type: ignore[arg-type]
    after = allocate(readme_may(more_h100=256, **lab), fractional=True).request("llama-2-ablations")  # type: ignore[arg-type]
    assert before > 0 and after.total >= before - 1e-6 and set(after.gpus) == {"paris-a100"}
