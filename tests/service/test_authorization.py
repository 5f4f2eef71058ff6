"""Who may call what: every endpoint against every role, in and out of scope.

The matrix below is the specification.  Each line names an endpoint (as in /openapi.json, with
a note in brackets when the same endpoint is checked on a second target), the people allowed,
and the status they get; everyone else with a token gets 403, and a call without a token (or
with a made-up one) gets 401.  `World` builds what each call needs: shared objects for reads
and refused calls, fresh ones for a call that is expected to change them.

The seeded people (tests/service/conftest.py): admin (admin@lab), chair (committee@lab),
research-committee (committee@research, over llama and opt), llama-lead, llama-member,
opt-lead, genai-lead.  genai sits under product, so its appeals go to product's committee.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.service.conftest import PEOPLE, SMALL_LAB, Clock, Lab, _pg_engine, seed

from fairshare.scenario.files import loads_scenario
from fairshare.service.api.app import create_app
from fairshare.store.db import make_engine, upgrade

TEAMS = ("llama", "opt", "genai")
EVERYONE = tuple(PEOPLE)  # admin, chair, research-committee, llama-lead, llama-member, opt-lead, genai-lead
COMMITTEES = ("admin", "chair", "research-committee")  # any committee: audit, members, export, proposals
ROOT_COMMITTEE = ("admin", "chair")  # runs the lab's rounds; rules product's appeals
RESEARCH = COMMITTEES  # the committees whose subtree holds llama
LLAMA_TEAM = ("admin", "llama-lead", "llama-member")  # submit and edit llama's requests
LLAMA_LEAD = ("admin", "llama-lead")  # appeal for llama
ADMIN = ("admin",)
ANONYMOUS = ("no-token", "made-up-token")

# endpoint [target]                                          allowed           status
TABLE: list[tuple[str, tuple[str, ...], int]] = [
    ("GET /healthz", EVERYONE + ANONYMOUS, 200),
    ("GET /metrics", EVERYONE + ANONYMOUS, 200),
    # organisation
    ("GET /api/v1/me", EVERYONE, 200),
    ("GET /api/v1/nodes", EVERYONE, 200),
    ("GET /api/v1/nodes/{name}", EVERYONE, 200),
    ("DELETE /api/v1/nodes/{name}", ADMIN, 200),
    ("GET /api/v1/pools", EVERYONE, 200),
    ("GET /api/v1/export", COMMITTEES, 200),
    ("GET /api/v1/rounds/{round_id}/scenario", COMMITTEES, 200),
    ("POST /api/v1/import", ADMIN, 201),
    ("GET /api/v1/members", COMMITTEES, 200),
    ("POST /api/v1/members", ADMIN, 201),
    ("POST /api/v1/members/{name}/grants", ADMIN, 201),
    ("POST /api/v1/members/{name}/tokens", ADMIN, 201),
    # rounds: run by the root's committee, readable by all
    ("GET /api/v1/rounds", EVERYONE, 200),
    ("POST /api/v1/rounds", ROOT_COMMITTEE, 201),
    ("GET /api/v1/rounds/{round_id}", EVERYONE, 200),
    ("POST /api/v1/rounds/{round_id}/open", ROOT_COMMITTEE, 200),
    ("POST /api/v1/rounds/{round_id}/close", ROOT_COMMITTEE, 200),
    ("POST /api/v1/rounds/{round_id}/reopen", ROOT_COMMITTEE, 200),
    ("POST /api/v1/rounds/{round_id}/propose", ROOT_COMMITTEE, 200),
    ("POST /api/v1/rounds/{round_id}/publish", ROOT_COMMITTEE, 200),
    ("POST /api/v1/rounds/{round_id}/finalize", ROOT_COMMITTEE, 200),
    # the result: a proposal is the committees'; a published round is everyone's
    ("GET /api/v1/rounds/{round_id}/runs [proposed]", COMMITTEES, 200),
    ("GET /api/v1/rounds/{round_id}/runs [published]", EVERYONE, 200),
    ("GET /api/v1/rounds/{round_id}/allocation [proposed]", COMMITTEES, 200),
    ("GET /api/v1/rounds/{round_id}/allocation [published]", EVERYONE, 200),
    ("GET /api/v1/rounds/{round_id}/entitlements [proposed]", COMMITTEES, 200),
    ("GET /api/v1/rounds/{round_id}/entitlements [published]", EVERYONE, 200),
    ("GET /api/v1/rounds/{round_id}/entitlements/{node} [proposed]", COMMITTEES, 200),
    ("GET /api/v1/rounds/{round_id}/entitlements/{node} [published]", EVERYONE, 200),
    ("GET /api/v1/rounds/{round_id}/overrides [proposed]", COMMITTEES, 200),
    ("GET /api/v1/rounds/{round_id}/overrides [published]", EVERYONE, 200),
    # what-ifs change nothing: on a proposal, any committee; on a published round, everyone
    ("POST /api/v1/rounds/{round_id}/whatif [proposed]", COMMITTEES, 200),
    ("POST /api/v1/rounds/{round_id}/whatif [published]", EVERYONE, 200),
    # a request's levers are what-ifs: as the allocation, the committees' until published, then everyone's
    ("GET /api/v1/rounds/{round_id}/requests/{key}/levers [proposed]", COMMITTEES, 200),
    ("GET /api/v1/rounds/{round_id}/requests/{key}/levers [published]", EVERYONE, 200),
    # overrides: a committee whose subtree holds the request's team
    ("POST /api/v1/rounds/{round_id}/overrides [llama's request]", RESEARCH, 201),
    ("POST /api/v1/rounds/{round_id}/overrides [genai's request]", ROOT_COMMITTEE, 201),
    ("DELETE /api/v1/rounds/{round_id}/overrides/{override_id} [llama's request]", RESEARCH, 200),
    ("DELETE /api/v1/rounds/{round_id}/overrides/{override_id} [genai's request]", ROOT_COMMITTEE, 200),
    # requests: the team itself (committees see them, but do not write them)
    ("GET /api/v1/rounds/{round_id}/requests", EVERYONE, 200),
    ("POST /api/v1/rounds/{round_id}/requests", LLAMA_TEAM, 201),
    ("GET /api/v1/requests/{request_id}", EVERYONE, 200),
    ("PUT /api/v1/requests/{request_id}", LLAMA_TEAM, 200),
    ("POST /api/v1/requests/{request_id}/withdraw", LLAMA_TEAM, 200),
    ("GET /api/v1/requests/{request_id}/versions", EVERYONE, 200),
    # copy forward: a team's members, lead and the committees above it for the team; the round's for everyone
    ("POST /api/v1/rounds/{round_id}/requests/copy-forward [llama]", COMMITTEES + ("llama-lead", "llama-member"), 201),
    ("POST /api/v1/rounds/{round_id}/requests/copy-forward [everyone's]", ROOT_COMMITTEE, 201),
    # appeals: the team's lead files; the committee that has it rules; the team and its committees see it
    ("POST /api/v1/rounds/{round_id}/appeals", LLAMA_LEAD, 201),
    ("GET /api/v1/appeals", EVERYONE, 200),
    ("GET /api/v1/appeals/{appeal_id}", RESEARCH + ("llama-lead", "llama-member"), 200),
    ("POST /api/v1/appeals/{appeal_id}/ruling [with research]", RESEARCH, 200),
    ("POST /api/v1/appeals/{appeal_id}/ruling [with product]", ROOT_COMMITTEE, 200),
    ("POST /api/v1/appeals/{appeal_id}/reappeal", LLAMA_LEAD, 200),
    ("POST /api/v1/appeals/escalate", COMMITTEES, 200),
    # audit: committees and admins
    ("GET /api/v1/audit", COMMITTEES, 200),
    ("GET /api/v1/audit/export", COMMITTEES, 200),
    # usage read back from the schedulers: everyone's, like published allocations
    ("GET /api/v1/usage/{node}", EVERYONE, 200),
    # fairness over time reads published rounds only: everyone's
    ("GET /api/v1/health", EVERYONE, 200),
]


def expand(table: list[tuple[str, tuple[str, ...], int]]) -> Iterator[tuple[str, str, int]]:
    """One row per (endpoint, who): the allowed get `status`, other people 403, no token 401."""
    for endpoint, allowed, status in table:
        for who in EVERYONE + ANONYMOUS:
            if who in allowed:
                yield endpoint, who, status
            else:
                yield endpoint, who, 401 if who in ANONYMOUS else 403


MATRIX = list(expand(TABLE))


# --- the state each call needs ------------------------------------------------------------------


@dataclass
class World:
    """Builds rounds, requests, overrides and appeals through the API (as the admin, or the team's
    lead where only a lead may).  `fresh` is set for a call expected to succeed and change what it
    touches; otherwise the shared objects are handed out (built once, never changed)."""

    lab: Lab
    fresh: bool = False
    shared: dict[str, Any] = field(default_factory=dict)
    names: Iterator[int] = field(default_factory=itertools.count)

    def api(self, who: str, method: str, path: str, expect: int, json: Any = None) -> Any:
        return self.lab.call(who, method, path, expect, json=json).json()

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self.names)}"

    def _once(self, key: str, make: Callable[[], Any]) -> Any:
        if self.fresh:
            return make()
        if key not in self.shared:
            self.shared[key] = make()
        return self.shared[key]

    def round(self, state: str) -> dict[str, Any]:
        """A round in `state`, holding one request per team (`requests`: team -> request)."""
        return self._once(f"round:{state}", lambda: self._make_round(state))

    def _make_round(self, state: str, window_hours: float = 24 * 14) -> dict[str, Any]:
        rnd = self.api(
            "admin", "POST", "/rounds", 201, {"name": self.unique(state), "appeal_window_hours": window_hours}
        )
        rid, requests = rnd["id"], {}
        if state != "draft":
            self.api("admin", "POST", f"/rounds/{rid}/open", 200)
            for team, gpus in zip(TEAMS, (150, 120, 100), strict=True):
                requests[team] = self.api(
                    "admin",
                    "POST",
                    f"/rounds/{rid}/requests",
                    201,
                    {
                        "id": f"{team}-req",
                        "team": team,
                        "gpus": gpus,
                        "speed": {"H100": 2.0, "A100": 1.0},
                        "justification": f"{team}'s reasons",
                    },
                )
        steps = {
            "draft": [],
            "open": [],
            "closed": ["close"],
            "proposed": ["close", "propose"],
            "published": ["close", "propose", "publish"],
        }[state]
        for step in steps:
            rnd = self.api("admin", "POST", f"/rounds/{rid}/{step}", 200)
        return {**rnd, "requests": requests}

    def finished_round(self) -> dict[str, Any]:
        """Published, with an appeal window that has just ended."""

        def make() -> dict[str, Any]:
            rnd = self._make_round("published", window_hours=0.01)
            self.lab.clock.advance(minutes=1)
            return rnd

        return self._once("round:finished", make)

    def override(self, team: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """A proposed round and an active override of `team`'s request in it."""

        def make() -> tuple[dict[str, Any], dict[str, Any]]:
            rnd = self._make_round("proposed")
            return rnd, self.api(
                # llama's by its subtree's committee: a committee may not remove a pin made above it
                "research-committee" if team == "llama" else "admin",
                "POST",
                f"/rounds/{rnd['id']}/overrides",
                201,
                {"request": f"{team}-req", "gpus": 10, "reason": "pinned"},
            )

        return self._once(f"override:{team}", make)

    def request(self) -> dict[str, Any]:
        """llama's request in an open round."""
        return self._once("request", lambda: self._make_round("open")["requests"]["llama"])

    def appeal(self, team: str = "llama", state: str = "open") -> dict[str, Any]:
        """An appeal by `team`'s lead on its request in a published round; `rejected` after a ruling."""

        def make() -> dict[str, Any]:
            rnd = self._make_round("published")
            appeal = self.api(
                f"{team}-lead",
                "POST",
                f"/rounds/{rnd['id']}/appeals",
                201,
                {"request": f"{team}-req", "asked": 150, "reason": "deadline"},
            )
            if state == "rejected":
                appeal = self.api(
                    "admin", "POST", f"/appeals/{appeal['id']}/ruling", 200, {"ruling": "reject", "reason": "no"}
                )
            return appeal

        return self._once(f"appeal:{team}:{state}", make)

    def copy_target(self) -> int:
        """An open round without requests, the one before it holding one request per team."""

        def make() -> int:
            self._make_round("published")
            rid: int = self.api("admin", "POST", "/rounds", 201, {"name": self.unique("next")})["id"]
            self.api("admin", "POST", f"/rounds/{rid}/open", 200)
            return rid

        return self._once("copy-target", make)

    def member(self) -> str:
        return self._once(
            "member", lambda: self.api("admin", "POST", "/members", 201, {"name": self.unique("newcomer")})["name"]
        )

    def spare_node(self) -> str:
        """A team with no requests (imported for the purpose), which an admin may archive."""

        def make() -> str:
            name = self.unique("spare")
            lab = loads_scenario(SMALL_LAB, "lab.yaml")
            lab.org.children[1].children.append(lab.org.children[1].children[0].model_copy(update={"name": name}))
            self.api("admin", "POST", "/import", 201, lab.model_dump(mode="json"))
            return name

        return self._once("spare", make)


Call = Callable[[World], tuple[str, Any]]  # -> the concrete path (after /api/v1 for the API) and JSON body


def _update(w: World) -> tuple[str, Any]:
    req = w.request()
    body = {k: req[k] for k in ("gpus", "min", "priority", "launch", "weight", "speed", "sites")}
    return f"/requests/{req['id']}", {
        **body,
        "id": req["key"],
        "team": req["team"],
        "justification": "more",
        "version": req["version"],
    }


CALLS: dict[str, Call] = {
    "GET /healthz": lambda w: ("/healthz", None),
    "GET /metrics": lambda w: ("/metrics", None),
    "GET /api/v1/me": lambda w: ("/me", None),
    "GET /api/v1/nodes": lambda w: ("/nodes", None),
    "GET /api/v1/nodes/{name}": lambda w: ("/nodes/llama", None),
    "DELETE /api/v1/nodes/{name}": lambda w: (f"/nodes/{w.spare_node()}", None),
    "GET /api/v1/pools": lambda w: ("/pools", None),
    "GET /api/v1/rounds/{round_id}/scenario": lambda w: (f"/rounds/{w.round('proposed')['id']}/scenario", None),
    "GET /api/v1/export": lambda w: (f"/export?round_id={w.round('open')['id']}", None),
    "POST /api/v1/import": lambda w: ("/import", loads_scenario(SMALL_LAB, "lab.yaml").model_dump(mode="json")),
    "GET /api/v1/members": lambda w: ("/members", None),
    "POST /api/v1/members": lambda w: (
        "/members",
        {"name": w.unique("member"), "grants": [{"role": "member", "node": "opt"}]},
    ),
    "POST /api/v1/members/{name}/grants": lambda w: (
        f"/members/{w.member()}/grants",
        {"role": "lead", "node": "genai"},
    ),
    "POST /api/v1/members/{name}/tokens": lambda w: (f"/members/{w.member()}/tokens", {"label": "laptop"}),
    "GET /api/v1/rounds": lambda w: ("/rounds", None),
    "POST /api/v1/rounds": lambda w: ("/rounds", {"name": w.unique("round")}),
    "GET /api/v1/rounds/{round_id}": lambda w: (f"/rounds/{w.round('proposed')['id']}", None),
    "POST /api/v1/rounds/{round_id}/open": lambda w: (f"/rounds/{w.round('draft')['id']}/open", None),
    "POST /api/v1/rounds/{round_id}/close": lambda w: (f"/rounds/{w.round('open')['id']}/close", None),
    "POST /api/v1/rounds/{round_id}/reopen": lambda w: (f"/rounds/{w.round('closed')['id']}/reopen", None),
    "POST /api/v1/rounds/{round_id}/propose": lambda w: (f"/rounds/{w.round('closed')['id']}/propose", None),
    "POST /api/v1/rounds/{round_id}/publish": lambda w: (f"/rounds/{w.round('proposed')['id']}/publish", None),
    "POST /api/v1/rounds/{round_id}/finalize": lambda w: (f"/rounds/{w.finished_round()['id']}/finalize", None),
    **{
        f"GET /api/v1/rounds/{{round_id}}/{what} [{state}]": (
            lambda w, what=what, state=state: (f"/rounds/{w.round(state)['id']}/{what.format(node='llama')}", None)
        )
        for what in ("runs", "allocation", "entitlements", "entitlements/{node}", "overrides")
        for state in ("proposed", "published")
    },
    **{
        f"POST /api/v1/rounds/{{round_id}}/whatif [{state}]": (
            lambda w, state=state: (f"/rounds/{w.round(state)['id']}/whatif", {"weights": {"llama": 3}})
        )
        for state in ("proposed", "published")
    },
    **{
        f"GET /api/v1/rounds/{{round_id}}/requests/{{key}}/levers [{state}]": (
            lambda w, state=state: (f"/rounds/{w.round(state)['id']}/requests/llama-req/levers", None)
        )
        for state in ("proposed", "published")
    },
    "POST /api/v1/rounds/{round_id}/requests/copy-forward [llama]": lambda w: (
        f"/rounds/{w.copy_target()}/requests/copy-forward?team=llama",
        None,
    ),
    "POST /api/v1/rounds/{round_id}/requests/copy-forward [everyone's]": lambda w: (
        f"/rounds/{w.copy_target()}/requests/copy-forward",
        None,
    ),
    "POST /api/v1/rounds/{round_id}/overrides [llama's request]": lambda w: (
        f"/rounds/{w.round('proposed')['id']}/overrides",
        {"request": "llama-req", "gpus": 20, "reason": "launch"},
    ),
    "POST /api/v1/rounds/{round_id}/overrides [genai's request]": lambda w: (
        f"/rounds/{w.round('proposed')['id']}/overrides",
        {"request": "genai-req", "gpus": 20, "reason": "launch"},
    ),
    "DELETE /api/v1/rounds/{round_id}/overrides/{override_id} [llama's request]": lambda w: (
        "/rounds/{}/overrides/{}".format(*(x["id"] for x in w.override("llama"))),
        None,
    ),
    "DELETE /api/v1/rounds/{round_id}/overrides/{override_id} [genai's request]": lambda w: (
        "/rounds/{}/overrides/{}".format(*(x["id"] for x in w.override("genai"))),
        None,
    ),
    "GET /api/v1/rounds/{round_id}/requests": lambda w: (f"/rounds/{w.round('open')['id']}/requests", None),
    "POST /api/v1/rounds/{round_id}/requests": lambda w: (
        f"/rounds/{w.round('open')['id']}/requests",
        {"id": w.unique("extra"), "team": "llama", "gpus": 8, "justification": "an ablation"},
    ),
    "GET /api/v1/requests/{request_id}": lambda w: (f"/requests/{w.request()['id']}", None),
    "PUT /api/v1/requests/{request_id}": _update,
    "POST /api/v1/requests/{request_id}/withdraw": lambda w: (
        lambda req: (f"/requests/{req['id']}/withdraw", {"version": req["version"]})
    )(w.request()),
    "GET /api/v1/requests/{request_id}/versions": lambda w: (f"/requests/{w.request()['id']}/versions", None),
    "POST /api/v1/rounds/{round_id}/appeals": lambda w: (
        f"/rounds/{w.round('published')['id']}/appeals",
        {"request": "llama-req", "asked": 150, "reason": "paper deadline"},
    ),
    "GET /api/v1/appeals": lambda w: ("/appeals", None),
    "GET /api/v1/appeals/{appeal_id}": lambda w: (f"/appeals/{w.appeal()['id']}", None),
    "POST /api/v1/appeals/{appeal_id}/ruling [with research]": lambda w: (
        f"/appeals/{w.appeal('llama')['id']}/ruling",
        {"ruling": "reject", "reason": "not now"},
    ),
    "POST /api/v1/appeals/{appeal_id}/ruling [with product]": lambda w: (
        f"/appeals/{w.appeal('genai')['id']}/ruling",
        {"ruling": "reject", "reason": "not now"},
    ),
    "POST /api/v1/appeals/{appeal_id}/reappeal": lambda w: (
        f"/appeals/{w.appeal('llama', 'rejected')['id']}/reappeal",
        {"reason": "the deadline moved up"},
    ),
    "POST /api/v1/appeals/escalate": lambda w: ("/appeals/escalate", None),
    "GET /api/v1/audit": lambda w: ("/audit", None),
    "GET /api/v1/audit/export": lambda w: ("/audit/export?format=csv", None),
    "GET /api/v1/usage/{node}": lambda w: ("/usage/opt", None),
    "GET /api/v1/health": lambda w: (w.round("published") and "/health", None),
}


# --- one lab per backend for the whole matrix -----------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if request.param == "sqlite":
        engines: Iterator[Engine] = iter([make_engine(f"sqlite:///{tmp_path_factory.mktemp('authz') / 'lab.db'}")])
    else:
        engines = _pg_engine()  # skips without FAIRSHARE_TEST_DATABASE_URL
    for engine in engines:
        upgrade(engine)
        tokens = seed(engine)
        tokens["made-up-token"] = "fs_not-a-token-anyone-was-given"
        clock = Clock()
        with TestClient(create_app(engine=engine, clock=clock)) as client:
            yield World(Lab(client, clock, tokens, engine))
        engine.dispose()


@pytest.mark.parametrize(("endpoint", "who", "status"), MATRIX, ids=[f"{e} | {w} -> {s}" for e, w, s in MATRIX])
def test_authorization_matrix(world: World, endpoint: str, who: str, status: int) -> None:
    world.fresh = status < 300 and not endpoint.startswith("GET ")
    try:
        path, body = CALLS[endpoint](world)
    finally:
        world.fresh = False
    method, template = endpoint.split()[:2]
    url = "/api/v1" + path if template.startswith("/api/v1/") else path
    r = world.lab.client.request(method, url, headers={} if who == "no-token" else world.lab.as_(who), json=body)
    assert r.status_code == status, f"{endpoint} as {who}: {r.status_code} {r.text[:300]}"
    if status in (401, 403):
        assert r.json()["detail"], "a refusal says why"


def test_the_matrix_covers_every_operation_in_the_openapi(world: World) -> None:
    ops = {
        f"{method.upper()} {path}"
        for path, item in world.lab.client.get("/openapi.json").json()["paths"].items()
        for method in item
    }
    in_table = {endpoint.split(" [")[0] for endpoint, _, _ in TABLE}
    assert ops == in_table, f"missing from the matrix: {sorted(ops - in_table)}; stale: {sorted(in_table - ops)}"
    assert set(CALLS) == {endpoint for endpoint, _, _ in TABLE}


# --- what people may see -------------------------------------------------------------------------


def _justifications(lab: Lab, who: str, rid: int) -> dict[str, str | None]:
    items = lab.call(who, "GET", f"/rounds/{rid}/requests", 200).json()["items"]
    return {r["team"]: r["justification"] for r in items}


def test_a_member_cannot_see_another_teams_justification(lab: Lab) -> None:
    w = World(lab)
    rnd = w.round("open")
    llama = rnd["requests"]["llama"]
    for who in ("opt-lead", "genai-lead"):
        assert lab.call(who, "GET", f"/requests/{llama['id']}", 200).json()["justification"] is None
        versions = lab.call(who, "GET", f"/requests/{llama['id']}/versions", 200).json()
        assert versions and all("justification" not in v["data"] for v in versions)
        assert _justifications(lab, who, rnd["id"])["llama"] is None
        # ... but sees the rest of the request
        assert lab.call(who, "GET", f"/requests/{llama['id']}", 200).json()["gpus"] == 150
    assert _justifications(lab, "opt-lead", rnd["id"]) == {"llama": None, "opt": "opt's reasons", "genai": None}


def test_the_team_and_the_committees_over_it_see_its_justification(lab: Lab) -> None:
    w = World(lab)
    rnd = w.round("open")
    llama = rnd["requests"]["llama"]
    for who in ("llama-member", "llama-lead", "research-committee", "chair", "admin"):
        assert lab.call(who, "GET", f"/requests/{llama['id']}", 200).json()["justification"] == "llama's reasons"
        versions = lab.call(who, "GET", f"/requests/{llama['id']}/versions", 200).json()
        assert [v["data"]["justification"] for v in versions] == ["llama's reasons"]
    # research's committee is not product's: genai's reasons stay hidden from it
    assert _justifications(lab, "research-committee", rnd["id"]) == {
        "llama": "llama's reasons",
        "opt": "opt's reasons",
        "genai": None,
    }
    assert _justifications(lab, "chair", rnd["id"]) == {
        "llama": "llama's reasons",
        "opt": "opt's reasons",
        "genai": "genai's reasons",
    }


def test_an_export_shows_a_committee_only_the_justifications_of_its_own_subtree(lab: Lab) -> None:
    rid = World(lab).round("open")["id"]
    seen = {
        r["team"]: r["justification"]
        for r in lab.call("research-committee", "GET", f"/export?round_id={rid}", 200).json()["requests"]
    }
    assert seen == {"llama": "llama's reasons", "opt": "opt's reasons", "genai": None}
    everything = lab.call("chair", "GET", f"/export?round_id={rid}", 200).json()["requests"]
    assert {r["team"]: r["justification"] for r in everything}["genai"] == "genai's reasons"


PROPOSAL = ("runs", "allocation", "entitlements", "entitlements/llama", "overrides")


def test_a_proposal_is_invisible_to_non_committee_members_until_published(lab: Lab) -> None:
    w = World(lab)
    rid = w.round("proposed")["id"]
    for what in PROPOSAL:
        for who in ("llama-lead", "llama-member", "opt-lead", "genai-lead"):
            r = lab.call(who, "GET", f"/rounds/{rid}/{what}", 403)
            assert "committee" in r.json()["detail"]
        for who in COMMITTEES:
            lab.call(who, "GET", f"/rounds/{rid}/{what}", 200)
    lab.call("chair", "POST", f"/rounds/{rid}/publish", 200)
    for what in PROPOSAL:
        for who in EVERYONE:
            lab.call(who, "GET", f"/rounds/{rid}/{what}", 200)


def test_the_audit_log_is_for_committees_and_admins_only(lab: Lab) -> None:
    World(lab).round("published")
    for path in ("/audit", "/audit/export", "/audit/export?format=csv"):
        for who in COMMITTEES:
            r = lab.call(who, "GET", path, 200)
            assert "round.publish" in r.text
        for who in ("llama-lead", "llama-member", "opt-lead", "genai-lead"):
            r = lab.call(who, "GET", path, 403)
            assert "audit" in r.json()["detail"]
        assert lab.client.get("/api/v1" + path).status_code == 401
