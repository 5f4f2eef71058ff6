"""Issue 15's "Done when": six monthly rounds of the README's lab (examples/meta-ai-2023.yaml), March to
August, run through the REST API as a committee would, on SQLite and PostgreSQL.

March: the lab is imported and the first round runs.  April: a round with its own date, copied forward;
its appeal is ruled late (after May's pool arrived).  May: a new H100 pool; May's round closes with it;
an appeal on May stays open.  June: a new team; June's round.  July: OPT winds down (refused while a
live request holds it); July's round.  August: capacity grows; then May's appeal is ruled, previewed first.

What the committee relies on: an old round ruled late keeps its own capacity, org and unappealed numbers;
the schedulers keep the newest round; a preview changes nothing; the team that left is retired in Slurm and
Kueue.  And the smallest override case (a separate tiny lab) gives 40 / 10 / 50.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.service.conftest import Clock, Lab

from fairshare import workflow as wf
from fairshare.connectors import kueue, slurm
from fairshare.connectors.source import Published, from_round, newest_published
from fairshare.scenario.files import loads_scenario
from fairshare.service.api.app import create_app
from fairshare.service.ops.sync_hooks import hooks_from_env
from fairshare.store.db import session_factory
from fairshare.store.repo import create_token, ensure_member, grant, import_scenario

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "meta-ai-2023.yaml"
FILE: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
MARCH_CAPACITY = sum(p["gpus"] for p in FILE["pools"])  # 4,864
NEW_H100 = {"name": "menlo-park-h100-b", "gpu": "H100", "site": "menlo-park", "gpus": 1024}  # May: 5,888
NEW_TEAM = {"name": "agents"}  # June, under genai
AUGUST_GROWTH = {"paris-a100": 768}  # was 256: 6,400 in August
DAY_ONE = "name: meta\npools: [{name: menlo-park-a100, gpu: A100, site: menlo-park, gpus: 1024}]\norg: {name: meta}\n"
TEAMS = ["llama", "opt", "assistants", "media", "ads", "feed", "reels"]


def lab_file(*, h100: bool = False, agents: bool = False, opt: bool = True, august: bool = False) -> dict[str, Any]:
    """The lab as the admin's file says it in a given month (without requests: teams file their own)."""
    doc = copy.deepcopy(FILE)
    doc.pop("requests")
    doc["policy"]["date"] = str(doc["policy"]["date"])
    if h100:
        doc["pools"].append(dict(NEW_H100))
    if august:
        for p in doc["pools"]:
            p["gpus"] = AUGUST_GROWTH.get(p["name"], p["gpus"])
    fair, genai = doc["org"]["children"][0], doc["org"]["children"][1]
    if agents:
        genai["children"].append(dict(NEW_TEAM))
    if not opt:
        fair["children"] = [c for c in fair["children"] if c["name"] != "opt"]
    return doc


def file_requests(team: str) -> list[dict[str, Any]]:
    """The example's requests of one team, as JSON the API takes."""
    out = []
    for r in FILE["requests"]:
        if r["team"] == team:
            body = {k: (str(v) if isinstance(v, dt.date) else v) for k, v in r.items()}
            out.append(body)
    return out


# --- the service, as the platform team starts it ------------------------------------------------------------


@dataclass
class Story(Lab):
    """The lab's service with `serve --sync kueue` writing manifests to `kueue_out`."""

    kueue_out: Path

    def round(self, name: str, day: str, **kw: Any) -> int:
        body = {"name": name, "date": day, "appeal_window_hours": 14 * 24, **kw}
        rid: int = self.call("chair", "POST", "/rounds", 201, json=body).json()["id"]
        self.call("chair", "POST", f"/rounds/{rid}/open", 200)
        return rid

    def step(self, rid: int, *steps: str) -> None:
        for s in steps:
            self.call("chair", "POST", f"/rounds/{rid}/{s}", 200)

    def allocation(self, rid: int) -> dict[str, dict[str, Any]]:
        items = self.call("chair", "GET", f"/rounds/{rid}/allocation", 200, params={"limit": 500}).json()["items"]
        return {a["request"]: a for a in items}

    def totals(self, rid: int) -> dict[str, int]:
        return {k: a["total"] for k, a in self.allocation(rid).items()}

    def world(self, rid: int) -> dict[str, Any]:
        out: dict[str, Any] = self.call("chair", "GET", f"/rounds/{rid}/scenario", 200).json()
        return out

    def audit(self, **filters: str) -> list[dict[str, Any]]:
        got = self.call("chair", "GET", "/audit", 200, params={"limit": 1000, **filters}).json()
        return list(got["items"])

    def live_requests(self, rid: int, team: str) -> list[dict[str, Any]]:
        items = self.call("chair", "GET", f"/rounds/{rid}/requests", 200, params={"limit": 500}).json()["items"]
        return [r for r in items if r["team"] == team and not r.get("withdrawn")]

    def newest(self) -> Published:
        """What the schedulers are given: the newest published round, as `fairshare sync` reads it."""
        with session_factory(self.engine)() as s:
            rid = newest_published(s)
            assert rid is not None
            return from_round(s, rid)

    def kueue_files(self) -> dict[str, str]:
        return {str(p.relative_to(self.kueue_out)): p.read_text() for p in sorted(self.kueue_out.rglob("*.yaml"))}


def org_names(node: dict[str, Any]) -> set[str]:
    return {node["name"]} | {n for c in node.get("children", []) for n in org_names(c)}


def capacity(world: dict[str, Any]) -> int:
    return sum(p["gpus"] for p in world["pools"])


def total_gpus(alloc: dict[str, dict[str, Any]]) -> int:
    return sum(a["total"] for a in alloc.values())


@pytest.fixture
def story(engine: Engine, tmp_path: Path) -> Iterator[Story]:
    """Day one: an admin on an empty lab (`fairshare token create` on the database), and a service that
    pushes every published round into Kueue (as `serve --sync kueue --kueue-out DIR`)."""
    with session_factory(engine)() as s:
        import_scenario(s, loads_scenario(DAY_ONE, "day-one.yaml"))
        admin = ensure_member(s, "admin")
        grant(s, admin, wf.Role.admin, "meta")
        tokens = {"admin": create_token(s, admin)}
        s.commit()
    out = tmp_path / "kueue"
    hooks = hooks_from_env({"FAIRSHARE_SYNC_ON_PUBLISH": "kueue", "FAIRSHARE_KUEUE_OUT": str(out)})
    clock = Clock(dt.datetime(2023, 3, 1, 9, 0, tzinfo=dt.UTC))
    with TestClient(create_app(engine=engine, clock=clock, sync_hooks=hooks)) as client:
        yield Story(client, clock, tokens, engine, out)


def enrol(story: Story, name: str, role: str, node: str) -> None:
    story.call("admin", "POST", "/members", 201, json={"name": name, "grants": [{"role": role, "node": node}]})
    story.tokens[name] = story.call("admin", "POST", f"/members/{name}/tokens", 201, json={}).json()["token"]


# --- the months -----------------------------------------------------------------------------------------------


def march(story: Story) -> int:
    imported = story.call("admin", "POST", "/import", 201, json=lab_file()).json()
    assert imported["pools"] == len(FILE["pools"]) and imported["nodes"] == 11
    enrol(story, "chair", "committee", "meta")
    for team in TEAMS:
        enrol(story, f"{team}-lead", "lead", team)
    rid = story.round("2023-03", "2023-03-01")
    for team in TEAMS:
        for body in file_requests(team):
            story.call(f"{team}-lead", "POST", f"/rounds/{rid}/requests", 201, json=body)
    story.step(rid, "close", "propose", "publish")
    alloc = story.allocation(rid)
    assert set(alloc) == {r["id"] for r in FILE["requests"]}
    assert total_gpus(alloc) == MARCH_CAPACITY  # work-conserving: every GPU of the lab is given out
    return rid


def april(story: Story, march_id: int) -> tuple[int, int]:
    story.clock.advance(days=31)
    story.step(march_id, "finalize")  # its appeal window (14 days) is over and nobody appealed
    rid = story.round("2023-04", "2023-04-01")
    copied = story.call("chair", "POST", f"/rounds/{rid}/requests/copy-forward", 201).json()
    assert copied["from_round"] == march_id and len(copied["copied"]) == len(FILE["requests"])
    assert story.world(rid)["policy"]["date"] == "2023-04-01"  # its own date, not the lab's March
    story.step(rid, "close", "propose", "publish")
    current = story.totals(rid)["llama-2-70b"]
    appeal = story.call(
        "llama-lead",
        "POST",
        f"/rounds/{rid}/appeals",
        201,
        json={"request": "llama-2-70b", "asked": current + 60, "reason": "the 70B run needs 60 more to finish by July"},
    ).json()
    return rid, appeal["id"]


def may(story: Story, april_id: int, april_appeal: int) -> tuple[int, int]:
    story.clock.advance(days=30)
    story.call("admin", "POST", "/import", 201, json=lab_file(h100=True))  # the new H100 pool arrives

    # April's appeal, ruled late: after May's pool arrived.  April keeps its own world.
    before = story.allocation(april_id)
    story.call("chair", "POST", f"/appeals/{april_appeal}/ruling", 200, json={"ruling": "grant", "reason": "fair"})
    after = story.allocation(april_id)
    assert after["llama-2-70b"]["total"] == before["llama-2-70b"]["total"] + 60
    assert total_gpus(after) == MARCH_CAPACITY == capacity(story.world(april_id))
    assert all(NEW_H100["name"] not in a["gpus"] for a in after.values())
    fair = {r["id"] for r in FILE["requests"] if r["team"] in ("llama", "opt")}
    for key in set(before) - fair:  # absorbed inside FAIR: no other branch pays
        assert after[key]["total"] == before[key]["total"], key
    story.step(april_id, "finalize")

    rid = story.round("2023-05", "2023-05-01")
    story.call("chair", "POST", f"/rounds/{rid}/requests/copy-forward", 201)
    story.step(rid, "close", "propose", "publish")
    world = story.world(rid)
    assert capacity(world) == MARCH_CAPACITY + NEW_H100["gpus"]  # 5,888: May closed with its new pool
    assert total_gpus(story.allocation(rid)) <= capacity(world)
    current = story.totals(rid)["ads-retraining"]
    appeal = story.call(
        "ads-lead",
        "POST",
        f"/rounds/{rid}/appeals",
        201,
        json={"request": "ads-retraining", "asked": current + 40, "reason": "the daily pipeline runs late"},
    ).json()
    return rid, appeal["id"]  # nobody rules on it for three months


def june(story: Story) -> int:
    story.clock.advance(days=31)
    story.call("admin", "POST", "/import", 201, json=lab_file(h100=True, agents=True))
    enrol(story, "agents-lead", "lead", "agents")
    rid = story.round("2023-06", "2023-06-01")
    story.call("chair", "POST", f"/rounds/{rid}/requests/copy-forward", 201)
    agents = {"id": "genai-agents", "team": "agents", "gpus": 256, "speed": {"H100": 2.5, "A100": 1.0}}
    story.call("agents-lead", "POST", f"/rounds/{rid}/requests", 201, json=agents)
    story.step(rid, "close", "propose", "publish")
    assert story.totals(rid)["genai-agents"] > 0
    return rid


def july(story: Story, june_id: int) -> int:
    story.clock.advance(days=30)
    story.step(june_id, "finalize")
    rid = story.round("2023-07", "2023-07-01")
    story.call("chair", "POST", f"/rounds/{rid}/requests/copy-forward", 201)
    held = story.live_requests(rid, "opt")
    assert held, "copy forward brought OPT's requests into July"

    # OPT winds down: refused while July still holds its live requests, and the refusal changes nothing.
    nodes_before = story.call("admin", "GET", "/nodes", 200).json()
    refused = story.call(
        "admin", "POST", "/import", 409, params={"prune": "true"}, json=lab_file(h100=True, agents=True, opt=False)
    )
    assert all(r["key"] in refused.json()["detail"] for r in held) and "2023-07" in refused.json()["detail"]
    assert story.call("admin", "DELETE", "/nodes/opt", 409).json()["detail"] == refused.json()["detail"]
    assert story.call("admin", "GET", "/nodes", 200).json() == nodes_before
    assert story.live_requests(rid, "opt") == held

    for r in held:
        story.call("opt-lead", "POST", f"/requests/{r['id']}/withdraw", 200, json={"version": r["version"]})
    pruned = story.call(
        "admin", "POST", "/import", 201, params={"prune": "true"}, json=lab_file(h100=True, agents=True, opt=False)
    ).json()
    assert pruned["archived"] == ["opt"]
    assert "opt" not in {n["name"] for n in story.call("admin", "GET", "/nodes", 200).json()}
    return rid


def august(story: Story) -> None:
    story.clock.advance(days=31)
    story.call(
        "admin",
        "POST",
        "/import",
        201,
        params={"prune": "true"},
        json=lab_file(h100=True, agents=True, opt=False, august=True),
    )


# --- the story ------------------------------------------------------------------------------------------------


def cluster_after(pub: Published, cfg: slurm.SlurmConfig) -> slurm.ClusterState:
    """The Slurm account tree a sync of `pub` leaves behind (what `sacctmgr show assoc` then reads)."""
    accounts = {"root": slurm.Account("root", None, "1", {})}
    for w in slurm.wanted_accounts(pub, cfg):
        accounts[w.name] = slurm.Account(w.name, w.parent, str(w.shares or 1), dict(w.grptres))
    return slurm.ClusterState("lab", accounts, {slurm.GPU, "gres/gpu:a100", "gres/gpu:h100", "gres/gpu:v100"})


def test_six_months_of_rounds_keep_their_world_and_the_schedulers_keep_the_newest(story: Story) -> None:
    march_id = march(story)
    april_id, april_appeal = april(story, march_id)
    may_id, may_appeal = may(story, april_id, april_appeal)
    may_published, may_world = story.allocation(may_id), story.world(may_id)
    june_id = june(story)
    cfg = slurm.SlurmConfig(cluster="lab")
    synced_in_june = cluster_after(story.newest(), cfg)
    assert "fs-opt" in synced_in_june.accounts

    july_id = july(story, june_id)
    # The next sync (June is still the newest round, and names OPT) retires OPT in both schedulers.
    retiring = story.newest()
    assert "opt" in retiring.retired
    slurm_plan = slurm.plan(synced_in_june, slurm.wanted_accounts(retiring, cfg), cfg)
    assert [c.argv[3:] for c in slurm_plan.removals] == [("account", "where", "name=fs-opt", "cluster=lab")]
    assert "fs-opt" not in {w.name for w in slurm_plan.wanted}
    assert {("ClusterQueue", "opt", None), ("LocalQueue", "opt", "opt")} <= set(kueue.plan(retiring).deletions)

    story.step(july_id, "close", "propose", "publish")
    assert "opt" not in org_names(story.world(july_id)["org"])
    august(story)

    # Three months of lab changes later, May is still May.
    assert story.allocation(may_id) == may_published
    assert story.world(may_id) == may_world
    may_org = org_names(may_world["org"])
    assert "agents" not in may_org and "opt" in may_org  # June's team absent, the team that left still there
    assert {p["name"]: p["gpus"] for p in may_world["pools"]}["paris-a100"] == 256  # August's growth absent
    assert capacity(may_world) == MARCH_CAPACITY + NEW_H100["gpus"]

    # May's open appeal is ruled in August: previewed first, and the preview changes nothing.
    ruling = {"ruling": "grant", "reason": "the launch was real"}
    audit_before = story.audit()
    preview = story.call(
        "chair", "POST", f"/appeals/{may_appeal}/ruling", 200, params={"dry_run": "true"}, json=ruling
    ).json()
    assert preview["dry_run"] and not preview["refused"] and preview["absorbed_by"] == "ads"  # its own team pays
    previewed = {c["name"]: c["gpus_delta"] for c in preview["changes"] if c["kind"] == "request" and c["gpus_delta"]}
    assert previewed == {"ads-retraining": 40, "ads-ranking": -40}
    assert story.allocation(may_id) == may_published
    assert story.audit() == audit_before
    assert story.call("chair", "GET", f"/appeals/{may_appeal}", 200).json()["state"] == "open"

    newest_before = story.newest()
    files_before = story.kueue_files()
    story.call("chair", "POST", f"/appeals/{may_appeal}/ruling", 200, json=ruling)
    after = story.allocation(may_id)

    # May keeps its own capacity, org and unappealed numbers: what was previewed is what was done.
    moved = {k: after[k]["total"] - may_published[k]["total"] for k in after}
    assert {k: d for k, d in moved.items() if d} == previewed
    assert total_gpus(after) == total_gpus(may_published) == capacity(may_world)
    assert story.world(may_id) == may_world
    assert NEW_TEAM["name"] not in {a["team"] for a in after.values()}
    assert all(pool in {p["name"] for p in may_world["pools"]} for a in after.values() for pool in a["gpus"])

    # The schedulers keep the newest round (July): the late ruling on May is recorded as not pushed.
    pushes = [e for e in story.audit(action="sync.kueue") if e["entity_id"] == str(may_id)]
    assert pushes[-1]["after"]["result"] == "not pushed" and "2023-07" in pushes[-1]["after"]["reason"]
    assert story.kueue_files() == files_before
    newest_after = story.newest()
    assert newest_after.label == newest_before.label and "2023-07" in newest_after.label
    assert newest_after.node_gpus == newest_before.node_gpus
    july_cluster = cluster_after(newest_before, cfg)
    assert slurm.plan(july_cluster, slurm.wanted_accounts(newest_after, cfg), cfg).commands == []
    assert kueue.plan(newest_after) == kueue.plan(newest_before)


# --- a grant in March: paid by its own org, nobody else gains ----------------------------------------------


def test_a_grant_absorbed_at_the_root_moves_only_what_it_grants(story: Story) -> None:
    rid = march(story)
    current = story.totals(rid)["reels-recommendation"]
    body = {"request": "reels-recommendation", "asked": current + 60, "reason": "the launch is in two weeks"}
    appeal = story.call("reels-lead", "POST", f"/rounds/{rid}/appeals", 201, json=body).json()["id"]
    ruling = {"ruling": "grant", "reason": "urgent"}
    preview = story.call("chair", "POST", f"/appeals/{appeal}/ruling", 200, params={"dry_run": "true"}, json=ruling)
    moved = {c["name"]: c["gpus_delta"] for c in preview.json()["changes"] if c["kind"] == "request"}
    assert moved.pop("reels-recommendation") == 60
    assert all(d <= 0 for d in moved.values()), moved  # nobody else gains from someone's grant
    assert -sum(moved.values()) == 60, moved  # the others pay exactly what was granted
    # placed where production-ai holds GPUs, so production-ai pays and the other orgs keep theirs
    assert preview.json()["absorbed_by"] == "production-ai"
    payers = {k for k, v in moved.items() if v}
    assert payers and all(k.split("-")[0] in {"ads", "feed", "reels"} for k in payers), payers


def test_a_pruned_teams_queues_are_still_deleted_by_the_first_round_published_after_it(story: Story) -> None:
    march_id = march(story)
    story.clock.advance(days=31)
    story.step(march_id, "finalize")
    story.call("admin", "DELETE", "/nodes/opt", 200)
    rid = story.round("2023-04", "2023-04-01")
    story.call("chair", "POST", f"/rounds/{rid}/requests/copy-forward", 201)
    story.step(rid, "close", "propose", "publish")
    assert {("ClusterQueue", "opt", None), ("LocalQueue", "opt", "opt")} <= set(kueue.plan(story.newest()).deletions)


# --- the smallest override case (issue 15, finding 2), in a lab of its own -------------------------------------

BRANCHES = """
name: branches
pools: [{name: p, gpu: A100, site: x, gpus: 100}]
org:
  name: root
  children:
    - {name: g1, children: [{name: t1a}, {name: t1b}]}
    - {name: g2, children: [{name: t2}]}
policy: {date: 2023-03-01}
"""


def test_the_smallest_override_case_is_paid_by_its_own_branch_40_10_50(engine: Engine) -> None:
    with session_factory(engine)() as s:
        import_scenario(s, loads_scenario(BRANCHES, "branches.yaml"))
        chair = ensure_member(s, "chair")
        grant(s, chair, wf.Role.committee, "root")
        lead = ensure_member(s, "t-lead")  # leads t1a, t1b and t2 (lead of the root)
        grant(s, lead, wf.Role.lead, "root")
        tokens = {"chair": create_token(s, chair), "t-lead": create_token(s, lead)}
        s.commit()
    with TestClient(create_app(engine=engine, clock=Clock())) as client:
        lab = Lab(client, Clock(), tokens, engine)
        rid = lab.call("chair", "POST", "/rounds", 201, json={"name": "r1"}).json()["id"]
        lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
        for team in ("t1a", "t1b", "t2"):
            lab.call("t-lead", "POST", f"/rounds/{rid}/requests", 201, json={"id": team, "team": team, "gpus": 100})
        for step in ("close", "propose"):
            lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)

        def totals() -> dict[str, int]:
            return {
                a["request"]: a["total"]
                for a in lab.call("chair", "GET", f"/rounds/{rid}/allocation", 200).json()["items"]
            }

        assert totals() == {"t1a": 25, "t1b": 25, "t2": 50}
        pin = {"request": "t1a", "gpus": 40, "reason": "t1a's deadline"}
        lab.call("chair", "POST", f"/rounds/{rid}/overrides", 201, json=pin)
        assert totals() == {"t1a": 40, "t1b": 10, "t2": 50}  # g1 pays for its own team; g2 keeps its 50
