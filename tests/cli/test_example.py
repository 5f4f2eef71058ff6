"""The shipped example scenarios load, and tell the story the README walks through."""

from __future__ import annotations

from pathlib import Path

from fairshare.scenario import Scenario
from fairshare.scenario.files import load_scenario

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def meta() -> Scenario:
    return load_scenario(EXAMPLES / "meta-ai-2023.yaml")


def test_the_meta_example_loads() -> None:
    s = meta()
    assert s.reference_gpu == "A100"
    assert set(s.gpu_types) == {"V100", "A100", "H100"}
    assert {n.name for n in s.nodes()} >= {"meta", "fair", "llama", "opt", "genai", "production-ai"}


def test_the_meta_example_asks_for_more_than_the_lab_has() -> None:
    s = meta()
    assert sum(r.gpus for r in s.requests) > 2 * sum(p.gpus for p in s.pools)


def test_opt_540b_is_too_big_to_fund_next_to_production_guarantees() -> None:
    s = meta()
    opt = next(r for r in s.requests if r.id == "opt-540b")
    guaranteed = sum(sum(n.guarantee.values()) for n in s.nodes() if n.name == "production-ai")
    assert opt.min is not None and opt.min > sum(p.gpus for p in s.pools) - guaranteed


def test_the_drop_540b_variant_differs_only_by_that_request() -> None:
    full = meta()
    drop = load_scenario(EXAMPLES / "meta-ai-2023-drop-540b.yaml")
    kept = [r for r in full.requests if r.id != "opt-540b"]
    assert drop.model_copy(update={"name": full.name}) == full.model_copy(update={"requests": kept})
