"""A team can leave (issue 15, finding 4): archiving a node and its subtree, by `DELETE /nodes/{name}` or
an import with `prune`; refused while a round not yet published holds its live requests; past rounds keep it."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from tests.service.conftest import SMALL_LAB, Lab

LAB = yaml.safe_load(SMALL_LAB)
LAB["policy"]["date"] = str(LAB["policy"]["date"])  # JSON, as the API takes it
WITHOUT_OPT = copy.deepcopy(LAB)
WITHOUT_OPT["org"]["children"][0]["children"] = [{"name": "llama"}]


def _request(lab: Lab, rid: int, who: str, key: str, team: str, expect: int = 201) -> Any:
    body = {"id": key, "team": team, "gpus": 100, "speed": {"H100": 2.0, "A100": 1.0}}
    return lab.call(who, "POST", f"/rounds/{rid}/requests", expect, json=body).json()


def _open_round(lab: Lab, name: str) -> int:
    rid: int = lab.call("chair", "POST", "/rounds", 201, json={"name": name}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    return rid


def _finished_round(lab: Lab, name: str) -> int:
    """A final round in which llama, opt and genai each asked for GPUs."""
    rid: int = lab.call("chair", "POST", "/rounds", 201, json={"name": name, "appeal_window_hours": 1}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    for who, team in (("llama-lead", "llama"), ("opt-lead", "opt"), ("genai-lead", "genai")):
        _request(lab, rid, who, f"{team}-{name}", team)
    for step in ("close", "propose", "publish"):
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)
    lab.clock.advance(hours=2)
    lab.call("chair", "POST", f"/rounds/{rid}/finalize", 200)
    return rid


def _node_names(lab: Lab) -> list[str]:
    return [n["name"] for n in lab.call("llama-member", "GET", "/nodes", 200).json()]


def test_nodes_are_listed_parents_before_children(lab: Lab) -> None:
    nodes = lab.call("llama-member", "GET", "/nodes", 200).json()
    seen: set[str] = set()
    for n in nodes:
        assert n["parent"] is None or n["parent"] in seen, n
        seen.add(n["name"])
    assert [n["name"] for n in nodes] == ["lab", "research", "llama", "opt", "product", "genai"]


def test_an_archived_team_leaves_the_lab_and_new_rounds_but_past_rounds_keep_it(lab: Lab) -> None:
    march = _finished_round(lab, "2026-03")
    assert lab.call("admin", "DELETE", "/nodes/opt", 200).json() == {"archived": ["opt"]}

    assert "opt" not in _node_names(lab)
    april = _open_round(lab, "2026-04")
    refused = _request(lab, april, "opt-lead", "opt-late", "opt", expect=422)
    assert "team" in str(refused) and "archived" in str(refused)
    _request(lab, april, "llama-lead", "llama-april", "llama")
    lab.call("chair", "POST", f"/rounds/{april}/close", 200)
    lab.call("chair", "POST", f"/rounds/{april}/propose", 200)
    april_nodes = {e["node"] for e in lab.call("chair", "GET", f"/rounds/{april}/entitlements", 200).json()["items"]}
    assert "opt" not in april_nodes and "llama" in april_nodes

    march_world = lab.call("chair", "GET", f"/rounds/{march}/scenario", 200).json()
    assert "opt" in str(march_world["org"]) and any(r["team"] == "opt" for r in march_world["requests"])
    march_nodes = {e["node"] for e in lab.call("chair", "GET", f"/rounds/{march}/entitlements", 200).json()["items"]}
    assert "opt" in march_nodes


def test_archiving_is_refused_while_a_round_not_yet_published_holds_live_requests(lab: Lab) -> None:
    rid = _open_round(lab, "2026-05")
    _request(lab, rid, "opt-lead", "opt-big", "opt")
    before = lab.call("admin", "GET", "/nodes", 200).json()
    answer = lab.call("admin", "DELETE", "/nodes/research", 409).json()
    assert "opt-big" in answer["detail"] and "2026-05" in answer["detail"]
    assert lab.call("admin", "GET", "/nodes", 200).json() == before  # refused: nothing archived

    request_id = lab.call("chair", "GET", f"/rounds/{rid}/requests", 200).json()["items"][0]["id"]
    lab.call("opt-lead", "POST", f"/requests/{request_id}/withdraw", 200, json={"version": 1})
    lab.call("admin", "DELETE", "/nodes/opt", 200)  # withdrawn: nothing holds it any more
    assert "opt" not in _node_names(lab)


def test_a_published_round_does_not_hold_a_team_back_and_keeps_it_in_its_world(lab: Lab) -> None:
    rid = _open_round(lab, "2026-05")
    for who, team in (("llama-lead", "llama"), ("opt-lead", "opt"), ("genai-lead", "genai")):
        _request(lab, rid, who, f"{team}-may", team)
    for step in ("close", "propose"):
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)
    assert "2026-05" in lab.call("admin", "DELETE", "/nodes/opt", 409).json()["detail"]  # proposed: may reopen
    lab.call("chair", "POST", f"/rounds/{rid}/publish", 200)
    appeal = {"request": "llama-may", "asked": 100, "reason": "still open when opt leaves"}
    appeal_id = lab.call("llama-lead", "POST", f"/rounds/{rid}/appeals", 201, json=appeal).json()["id"]
    before = lab.call("chair", "GET", f"/rounds/{rid}/allocation", 200).json()["items"]

    lab.call("admin", "DELETE", "/nodes/opt", 200)  # published (an appeal still open): its world is frozen for good

    assert "opt" not in _node_names(lab)
    assert lab.call("chair", "GET", f"/rounds/{rid}/allocation", 200).json()["items"] == before
    lab.call("chair", "POST", f"/appeals/{appeal_id}/ruling", 200, json={"ruling": "grant", "reason": "ok"})
    after = {
        a["request"]: a["total"] for a in lab.call("chair", "GET", f"/rounds/{rid}/allocation", 200).json()["items"]
    }
    assert after["llama-may"] == 100 and after["opt-may"] > 0  # ruled late on its own world, opt still in it
    assert any(r["team"] == "opt" for r in lab.call("chair", "GET", f"/rounds/{rid}/scenario", 200).json()["requests"])


def test_archiving_needs_an_admin_an_existing_live_node_and_not_the_root(lab: Lab) -> None:
    lab.call("chair", "DELETE", "/nodes/opt", 403)
    assert "opt" in _node_names(lab)
    assert "no org node named 'nobody'" in lab.call("admin", "DELETE", "/nodes/nobody", 404).json()["detail"]
    assert "root" in lab.call("admin", "DELETE", "/nodes/lab", 409).json()["detail"]
    lab.call("admin", "DELETE", "/nodes/opt", 200)
    assert "already archived" in lab.call("admin", "DELETE", "/nodes/opt", 404).json()["detail"]


def test_an_import_keeps_left_out_nodes_and_says_so_and_prune_archives_them(lab: Lab) -> None:
    kept = lab.call("admin", "POST", "/import", 201, json=WITHOUT_OPT).json()
    assert kept["nodes"] == 5 and kept["kept"] == ["opt"] and kept["archived"] == []
    assert "opt" in _node_names(lab)

    pruned = lab.call("admin", "POST", "/import", 201, params={"prune": "true"}, json=WITHOUT_OPT).json()
    assert pruned["archived"] == ["opt"] and pruned["kept"] == []
    assert "opt" not in _node_names(lab)

    back = lab.call("admin", "POST", "/import", 201, params={"prune": "true"}, json=LAB).json()
    assert back["archived"] == [] and "opt" in _node_names(lab)  # named again: live again


def test_a_prune_that_would_orphan_live_requests_is_refused_whole(lab: Lab) -> None:
    rid = _open_round(lab, "2026-06")
    _request(lab, rid, "opt-lead", "opt-eval", "opt")
    grown = copy.deepcopy(WITHOUT_OPT)
    grown["pools"][0]["gpus"] = 999
    answer = lab.call("admin", "POST", "/import", 409, params={"prune": "true"}, json=grown).json()
    assert "opt-eval" in answer["detail"]
    assert "opt" in _node_names(lab)
    assert lab.call("admin", "GET", "/pools", 200).json()[0]["gpus"] == 64  # nothing of the import stayed


# --- a round set up as the committee needs (finding 5) ----------------------------------------


def test_a_round_has_its_own_date_and_appeal_windows(lab: Lab) -> None:
    body = {"name": "2026-12", "date": "2026-12-01", "appeal_window_hours": 48, "appeal_response_hours": 12}
    rnd = lab.call("chair", "POST", "/rounds", 201, json=body).json()
    assert rnd["policy"]["date"] == "2026-12-01"  # not the lab's 2026-11-01
    assert (rnd["appeal_window_hours"], rnd["appeal_response_hours"]) == (48, 12)
    lab_date = lab.call("chair", "POST", "/rounds", 201, json={"name": "2027-01"}).json()["policy"]["date"]
    assert lab_date == "2026-11-01"


def test_a_bad_round_date_or_window_is_refused_naming_the_field(lab: Lab) -> None:
    for field, value in (("date", "2026-13-01"), ("appeal_window_hours", 0), ("appeal_response_hours", -1)):
        answer = lab.call("chair", "POST", "/rounds", 422, json={"name": "bad", field: value}).json()
        assert field in str(answer)
    assert lab.call("chair", "GET", "/rounds", 200).json()["total"] == 0


def test_import_into_a_new_round_sets_its_date_and_windows(lab: Lab) -> None:
    params = {"round": "2027-02", "date": "2027-02-01", "appeal_window_hours": "24", "appeal_response_hours": "6"}
    lab.call("admin", "POST", "/import", 201, params=params, json=LAB)
    rnd = lab.call("chair", "GET", "/rounds", 200).json()["items"][0]
    assert rnd["name"] == "2027-02" and rnd["policy"]["date"] == "2027-02-01"
    assert (rnd["appeal_window_hours"], rnd["appeal_response_hours"]) == (24, 6)
    answer = lab.call("admin", "POST", "/import", 422, params={"round": "x", "date": "tomorrow"}, json=LAB).json()
    assert "date" in str(answer)
    assert lab.call("chair", "GET", "/rounds", 200).json()["total"] == 1
