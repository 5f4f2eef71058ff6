"""Which nominal quotas make Kueue enforce what fairshare computed (docs/enforcement.md, "Kueue: what it
does with the numbers").  `kueue_split` is Kueue's fair-sharing rule applied to the generated objects:
in every cohort, each child gets min(what its jobs ask, its subtree's nominal quota + weight x t), never
above nominal quota + borrowingLimit, with the one t that hands out the cohort's quota (one GPU type)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from fairshare.cli import app
from fairshare.connectors import kueue
from fairshare.connectors.source import Published
from fairshare.engine import allocate
from fairshare.scenario.files import loads_scenario

LAB = """
name: cohorts
pools: [{{name: p, gpu: A100, gpus: 20}}]
org:
  name: lab
  children:
    - name: research
      weight: 2
      guarantee: {{A100: 8}}
      children:
        - {{name: vision, guarantee: {{A100: 3}}}}
        - {{name: nlp, weight: 3, guarantee: {{A100: 1}}, limit: {{A100: 9}}}}
    - {{name: product, guarantee: {{A100: 2}}}}
    - {{name: infra, weight: 0.5}}
requests:
  - {{id: v, team: vision, gpus: 9}}
  - {{id: n, team: nlp, gpus: 12}}
  - {{id: p, team: product, gpus: {product}}}
  - {{id: i, team: infra, gpus: 7}}
policy: {{sharing: {sharing}}}
"""


def published(sharing: str, product: int = 8) -> Published:
    scenario = loads_scenario(LAB.format(sharing=sharing, product=product))
    alloc = allocate(scenario)
    gpus = {n.name: {t: int(round(v)) for t, v in n.gpus.items() if v} for n in alloc.nodes}
    return Published(scenario, gpus, "test")


def team_gpus(pub: Published) -> dict[str, float]:
    teams = {r.team for r in pub.scenario.requests}
    return {t: float(pub.node_gpus.get(t, {}).get("A100", 0)) for t in teams}


def quota(obj: dict[str, Any], key: str = "nominalQuota") -> float:
    groups = obj["spec"].get("resourceGroups")
    if not groups:
        return 0.0 if key == "nominalQuota" else float("inf")
    value = groups[0]["flavors"][0]["resources"][0].get(key)
    return float(value) if value is not None else (0.0 if key == "nominalQuota" else float("inf"))


def kueue_split(objects: list[dict[str, Any]], asked: dict[str, float]) -> dict[str, float]:
    """What Kueue's fair sharing admits per ClusterQueue (by node name) when each team's jobs ask `asked`."""
    cohorts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Cohort"}
    queues = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterQueue"}
    children: dict[str, list[str]] = {name: [] for name in cohorts}
    for name, o in cohorts.items():
        if o["spec"].get("parentName"):
            children[o["spec"]["parentName"]].append(name)
    for name, o in queues.items():
        children[o["spec"]["cohortName"]].append(name)
    node_of = {name: o["metadata"]["annotations"]["fairshare/node"] for name, o in {**cohorts, **queues}.items()}

    def subtree_quota(name: str) -> float:
        return quota({**cohorts, **queues}[name]) + sum(subtree_quota(c) for c in children.get(name, []))

    def demand(name: str) -> float:
        if name in queues:
            return asked.get(node_of[name], 0.0)
        return sum(demand(c) for c in children[name])

    out: dict[str, float] = {}

    def share(name: str, amount: float) -> None:
        if name in queues:
            out[node_of[name]] = amount
            return
        kids = children[name]
        objs = [{**cohorts, **queues}[k] for k in kids]
        base = [subtree_quota(k) for k in kids]
        cap = [min(demand(k), b + quota(o, "borrowingLimit")) for k, b, o in zip(kids, base, objs, strict=True)]
        weight = [float(o["spec"]["fairSharing"]["weight"]) for o in objs]

        def given(t: float) -> list[float]:
            return [min(c, b + w * t) for c, b, w in zip(cap, base, weight, strict=True)]

        lo, hi = 0.0, 1e6
        if sum(given(hi)) <= amount:
            parts = given(hi)
        else:
            for _ in range(200):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if sum(given(mid)) <= amount else (lo, mid)
            parts = given(lo)
        for k, part in zip(kids, parts, strict=True):
            share(k, part)

    root = next(name for name, o in cohorts.items() if not o["spec"].get("parentName"))
    share(root, subtree_quota(root))
    return out


def asked(pub: Published) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in pub.scenario.requests:
        out[r.team] = out.get(r.team, 0.0) + r.gpus
    return out


@pytest.mark.parametrize("sharing", ["total", "surplus"])
def test_quotas_from_the_allocation_make_kueue_admit_the_allocation_under_either_policy(sharing: str) -> None:
    pub = published(sharing)
    split = kueue_split(kueue.manifests(pub), asked(pub))
    assert split == pytest.approx(team_gpus(pub), abs=1e-6)


def test_quotas_from_guarantees_make_kueue_compute_the_surplus_split_itself() -> None:
    pub = published("surplus")
    objects = kueue.manifests(pub, kueue.KueueOptions(quotas="guarantee"))
    exact = {r.team: r.total for r in allocate(pub.scenario, fractional=True).requests}
    assert kueue_split(objects, asked(pub)) == pytest.approx(exact, abs=1e-5)


@pytest.mark.parametrize("product", [1, 2, 5, 20])
def test_with_quotas_from_guarantees_kueue_follows_fairshare_when_demand_changes(product: int) -> None:
    """The objects of one round; a team then asks for something else: Kueue's split of those same
    objects is what fairshare's surplus rule gives for the new demand (no new round needed)."""
    objects = kueue.manifests(published("surplus"), kueue.KueueOptions(quotas="guarantee"))
    later = loads_scenario(LAB.format(sharing="surplus", product=product))
    exact = {r.team: r.total for r in allocate(later, fractional=True).requests}
    demand = {r.team: float(r.gpus) for r in later.requests}
    assert kueue_split(objects, demand) == pytest.approx(exact, abs=1e-5)


def test_quotas_from_the_allocation_do_not_follow_a_demand_change_by_fairshares_rule() -> None:
    """Product asks 1 instead of 8: under `total` fairshare gives its GPUs back by weight to the
    whole tree; Kueue lends them to the borrowers by its own rule (above their old allocations)."""
    objects = kueue.manifests(published("total"))
    later = loads_scenario(LAB.format(sharing="total", product=1))
    exact = {r.team: r.total for r in allocate(later, fractional=True).requests}
    demand = {r.team: float(r.gpus) for r in later.requests}
    assert kueue_split(objects, demand) != pytest.approx(exact, abs=1e-3)


def test_quotas_from_guarantees_sum_up_the_tree_and_lend_everything() -> None:
    objects = kueue.manifests(published("surplus"), kueue.KueueOptions(quotas="guarantee"))
    by_name = {o["metadata"]["name"]: o for o in objects if o["kind"] in ("Cohort", "ClusterQueue")}
    assert quota(by_name["vision"]) == 3 and quota(by_name["nlp"]) == 1 and quota(by_name["product"]) == 2
    assert quota(by_name["research"]) == 4  # its guarantee of 8 above its teams' 3 + 1
    assert quota(by_name["lab"]) == 10  # the 20 GPUs beyond research's 8 and product's 2
    assert quota(by_name["nlp"], "borrowingLimit") == 8  # its limit of 9 above its quota of 1
    flavors = [f for o in by_name.values() for g in o["spec"].get("resourceGroups", []) for f in g["flavors"]]
    assert not any("lendingLimit" in f["resources"][0] for f in flavors)


def test_quotas_from_guarantees_are_refused_under_total_sharing() -> None:
    with pytest.raises(kueue.MappingError, match="policy.sharing surplus"):
        kueue.plan(published("total"), kueue.KueueOptions(quotas="guarantee"))


def test_the_cli_refuses_an_unknown_quotas_mode(tmp_path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(LAB.format(sharing="surplus", product=8), encoding="utf-8")
    result = CliRunner().invoke(app, ["sync", "kueue", str(path), "--quotas", "weights"])
    assert result.exit_code == 2
    assert "--quotas" in result.output and "allocation, guarantee" in result.output
