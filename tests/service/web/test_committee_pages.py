"""Issue 20's forms over plain HTTP, on SQLite and PostgreSQL: round set-up, archive refusals, override
removal with its own preview, publish's confirmation (and the round page) naming teams whose starved streak
grows, finalize offered only when legal, the ruling with no default, request edit and withdraw, what-if additions
and the audit log's diffs.  Each refusal changes nothing."""

from __future__ import annotations

import html
import re

from tests.service.conftest import Lab

from fairshare.service.web.pages import audit_diff

SITE = "https://testserver"  # the session cookie is Secure


def _sign_in(lab: Lab, who: str, page: str) -> tuple[str, str]:
    lab.client.cookies.clear()
    login = lab.client.get(SITE + "/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)[1]  # type: ignore[index]
    lab.client.post(SITE + "/login", data={"token": lab.tokens[who], "csrf": csrf, "next": "/"})
    text = lab.client.get(SITE + page).text
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    return text, found[1] if found else ""


def _post(lab: Lab, path: str, data: dict[str, str]) -> tuple[int, str]:
    r = lab.client.post(SITE + path, data=data)
    assert r.status_code < 500 and r.headers["content-type"].startswith("text/html"), r.text[:300]
    return r.status_code, html.unescape(r.text)


def _proposed(lab: Lab, name: str, asks: list[tuple[str, str, str, dict[str, object]]]) -> int:
    rid: int = lab.call("chair", "POST", "/rounds", 201, json={"name": name}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    for who, key, team, extra in asks:
        lab.call(who, "POST", f"/rounds/{rid}/requests", 201, json={"id": key, "team": team, **extra})
    for step in ("close", "propose"):
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)
    return rid


STARVED = [  # llama's run is useless below 150 GPUs: not funded, far below its fair share by weights alone
    ("llama-lead", "big", "llama", {"gpus": 190, "min": 150, "sites": ["west"]}),
    ("opt-lead", "o", "opt", {"gpus": 100, "sites": ["west"]}),
]


def test_publish_asks_first_and_names_the_teams_whose_starved_streak_grows(lab: Lab) -> None:
    first = _proposed(lab, "r1", STARVED)
    lab.call("chair", "POST", f"/rounds/{first}/publish", 200)
    rid = _proposed(lab, "r2", STARVED)
    page, csrf = _sign_in(lab, "chair", f"/rounds/{rid}")
    status, text = _post(lab, f"/rounds/{rid}/step", {"step": "publish", "csrf": csrf})
    assert status == 200 and "What publication does" in text and "The appeal window starts" in text
    health = lab.call("chair", "GET", "/health", 200).json()
    llama = next(n for n in health["nodes"] if n["name"] == "llama")
    assert llama["starved_streak"] == 1  # r1 only, so far
    row = re.search(r'<tr data-node="llama">(.*?)</tr>', text, re.S)
    assert row is not None, "llama's streak grows: it must be listed"
    assert re.findall(r'class="num">(\d+)</td>', row[1]) == ["1", "2"]
    assert 'data-node="opt"' not in text  # opt gets its demand: its streak does not grow
    assert lab.call("chair", "GET", f"/rounds/{rid}", 200).json()["state"] == "proposed"  # nothing happened yet
    status, _ = _post(lab, f"/rounds/{rid}/step", {"step": "publish", "csrf": csrf, "confirm": "yes"})
    assert lab.call("chair", "GET", f"/rounds/{rid}", 200).json()["state"] == "published"


def test_the_round_page_flags_the_teams_whose_starved_streak_grows_before_anyone_clicks_publish(lab: Lab) -> None:
    first = _proposed(lab, "r1", STARVED)
    page, _ = _sign_in(lab, "chair", f"/rounds/{first}")
    flag = re.search(r'data-testid="streaks-if-published".*?</div>', html.unescape(page), re.S)
    assert flag is not None and "llama" in flag[0] and "starved streak 0 → 1" in flag[0]
    lab.call("chair", "POST", f"/rounds/{first}/publish", 200)
    rid = _proposed(lab, "r2", STARVED)
    page, _ = _sign_in(lab, "chair", f"/rounds/{rid}")
    flag = re.search(r'data-testid="streaks-if-published".*?</div>', html.unescape(page), re.S)
    assert flag is not None
    listed = re.findall(r'<li data-node="([^"]+)"', flag[0])
    assert "llama" in listed and "opt" not in listed  # opt gets its demand (llama's branches are listed too)
    assert "starved streak 1 → 2" in flag[0]
    page, _ = _sign_in(lab, "llama-lead", f"/rounds/{rid}")  # the committee's to see, as the proposal is
    assert "streaks-if-published" not in page
    calm = _proposed(lab, "r3", [("opt-lead", "o3", "opt", {"gpus": 10})])
    page, _ = _sign_in(lab, "chair", f"/rounds/{calm}")
    assert "streaks-if-published" not in page and "No team's starved streak grows" in page


def test_finalize_is_offered_only_once_the_workflow_would_accept_it(lab: Lab) -> None:
    rid = _proposed(lab, "r", [("opt-lead", "o", "opt", {"gpus": 10})])
    lab.call("chair", "POST", f"/rounds/{rid}/publish", 200)
    page, _ = _sign_in(lab, "chair", f"/rounds/{rid}")
    assert ">Finalize<" not in page and "Finalize is not offered yet: the appeal window is open until" in page
    lab.clock.advance(days=15)
    page, _ = _sign_in(lab, "chair", f"/rounds/{rid}")
    assert ">Finalize<" in page and "not offered yet" not in page


def test_a_round_is_created_from_the_home_page_with_its_date_and_windows(lab: Lab) -> None:
    page, csrf = _sign_in(lab, "chair", "/")
    assert 'data-testid="create-round"' in page
    status, text = _post(lab, "/rounds", {"name": "", "date": "2026-13-01", "csrf": csrf})
    assert status == 422 and 'id="e-name"' in text and 'id="e-date"' in text
    assert lab.call("chair", "GET", "/rounds", 200).json()["total"] == 0  # refused: nothing created
    status, text = _post(
        lab, "/rounds", {"name": "2026-12", "date": "2026-12-01", "appeal_window_hours": "48", "csrf": csrf}
    )
    assert status == 200 and "round 2026-12 created" in text
    rnd = lab.call("chair", "GET", "/rounds", 200).json()["items"][0]
    assert (rnd["policy"]["date"], rnd["appeal_window_hours"]) == ("2026-12-01", 48)
    status, text = _post(lab, "/rounds", {"name": "2026-12", "csrf": csrf})
    assert status == 422 and "exists" in text
    page, _ = _sign_in(lab, "llama-lead", "/")
    assert 'data-testid="create-round"' not in page  # not the root's committee: no form


def test_archiving_a_team_with_live_requests_shows_the_refusal(lab: Lab) -> None:
    rid: int = lab.call("chair", "POST", "/rounds", 201, json={"name": "r"}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    lab.call("opt-lead", "POST", f"/rounds/{rid}/requests", 201, json={"id": "o", "team": "opt", "gpus": 8})
    page, csrf = _sign_in(lab, "admin", "/")
    status, text = _post(lab, "/nodes/archive", {"node": "opt", "csrf": csrf})
    assert status == 422 and 'id="e-node"' in text and "o (opt) in round 'r'" in text  # names the live request
    assert lab.call("admin", "GET", "/nodes/opt", 200).json().get("archived_at") is None
    status, text = _post(lab, "/nodes/archive", {"node": "genai", "csrf": csrf})
    assert status == 200 and "archived genai" in text


def test_an_override_removal_is_previewed_then_made(lab: Lab) -> None:
    rid = _proposed(lab, "r", [("llama-lead", "l", "llama", {"gpus": 150}), ("opt-lead", "o", "opt", {"gpus": 150})])
    before = {
        a["request"]: a["total"] for a in lab.call("chair", "GET", f"/rounds/{rid}/allocation", 200).json()["items"]
    }
    page, csrf = _sign_in(lab, "chair", f"/rounds/{rid}")
    form = {"request": "l", "total": str(before["l"] + 10), "reason": "launch", "csrf": csrf}
    status, text = _post(lab, f"/rounds/{rid}/overrides", form)
    assert status == 200 and 'data-testid="override-preview"' in text and "Confirm the override" in text
    assert lab.call("chair", "GET", f"/rounds/{rid}/overrides", 200).json()["total"] == 0  # a preview saves nothing
    _post(lab, f"/rounds/{rid}/overrides", {**form, "confirm": "yes"})
    oid = lab.call("chair", "GET", f"/rounds/{rid}/overrides", 200).json()["items"][0]["id"]
    status, text = _post(lab, f"/rounds/{rid}/overrides/{oid}/remove", {"csrf": csrf})
    assert 'data-testid="removal-preview"' in text and "Confirm the removal" in text
    row = re.search(r'<tr data-name="l" data-kind="request">(.*?)</tr>', text, re.S)
    assert row is not None and "-10<" in row[1]  # the removal gives back the 10 GPUs the override added
    assert lab.call("chair", "GET", f"/rounds/{rid}/overrides", 200).json()["items"][0]["active"]
    _post(lab, f"/rounds/{rid}/overrides/{oid}/remove", {"csrf": csrf, "confirm": "yes"})
    after = {
        a["request"]: a["total"] for a in lab.call("chair", "GET", f"/rounds/{rid}/allocation", 200).json()["items"]
    }
    assert after == before


def test_an_override_form_without_an_amount_says_so_and_saves_nothing(lab: Lab) -> None:
    rid = _proposed(lab, "r", [("llama-lead", "l", "llama", {"gpus": 50})])
    _, csrf = _sign_in(lab, "chair", f"/rounds/{rid}")
    status, text = _post(
        lab, f"/rounds/{rid}/overrides", {"request": "l", "reason": "", "csrf": csrf, "confirm": "yes"}
    )
    assert status == 422 and "give the GPUs in total, or per pool below" in text and "say why" in text
    assert lab.call("chair", "GET", f"/rounds/{rid}/overrides", 200).json()["total"] == 0


def test_a_ruling_has_no_default_choice(lab: Lab) -> None:
    rid = _proposed(lab, "r", [("opt-lead", "o", "opt", {"gpus": 300})])
    lab.call("chair", "POST", f"/rounds/{rid}/publish", 200)
    lab.call("opt-lead", "POST", f"/rounds/{rid}/appeals", 201, json={"request": "o", "asked": 300, "reason": "x"})
    page, csrf = _sign_in(lab, "chair", "/appeals")
    assert '<option value="" selected>choose a ruling</option>' in page
    r = lab.client.post(SITE + "/appeals/1/rule", data={"reason": "only a reason", "csrf": csrf})
    assert "choose a ruling" in html.unescape(r.text)
    assert lab.call("chair", "GET", "/appeals/1", 200).json()["state"] == "open"


def test_a_request_is_edited_as_a_new_version_and_withdrawn(lab: Lab) -> None:
    rid: int = lab.call("chair", "POST", "/rounds", 201, json={"name": "r"}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    lab.call("opt-lead", "POST", f"/rounds/{rid}/requests", 201, json={"id": "o", "team": "opt", "gpus": 8})
    page, csrf = _sign_in(lab, "opt-lead", f"/rounds/{rid}/teams/opt?edit=o")
    assert "Edit request o (version 1)" in page and 'value="8"' in page
    form = {"id": "o", "gpus": "12", "launch": "2027-01-15", "site_west": "on", "version": "1", "csrf": csrf}
    status, text = _post(lab, f"/rounds/{rid}/teams/opt/requests/o/edit", form)
    assert "saved as version 2" in text
    row = lab.call("opt-lead", "GET", f"/rounds/{rid}/requests", 200).json()["items"][0]
    assert (row["gpus"], row["launch"], row["sites"], row["version"]) == (12, "2027-01-15", ["west"], 2)
    status, text = _post(lab, f"/rounds/{rid}/teams/opt/requests/o/edit", {**form, "gpus": "20"})  # stale version
    assert status == 422 and "version 2, not 1" in text
    status, text = _post(lab, f"/rounds/{rid}/teams/opt/requests/o/withdraw", {"version": "2", "csrf": csrf})
    assert "request o withdrawn" in text
    assert lab.call("opt-lead", "GET", f"/rounds/{rid}/requests", 200).json()["total"] == 0


def test_the_what_if_adds_a_pool_and_changes_a_guarantee_and_a_minimum(lab: Lab) -> None:
    rid = _proposed(
        lab, "r", [("llama-lead", "l", "llama", {"gpus": 150, "min": 100}), ("opt-lead", "o", "opt", {"gpus": 150})]
    )
    page, _ = _sign_in(lab, "chair", f"/rounds/{rid}/whatif?np_gpu=A100&np_site=paris&np_gpus=100")
    want = lab.call(
        "chair", "POST", f"/rounds/{rid}/whatif", 200, json={"capacity": {"a100-west": 228}}
    ).json()  # the same A100s, all at the site every request may use
    for c in want["changes"]:
        if c["kind"] == "team" and c["delta"]:
            assert re.search(rf'<tr data-name="{c["name"]}" data-kind="team"><td>team</td>', page)
    assert "make this an override" in page
    page, _ = _sign_in(lab, "chair", f"/rounds/{rid}/whatif?m_l=abc&n_node=opt&n_gpu=A100&n_guarantee=x")
    assert 'id="em-l"' in page and 'id="e-n_guarantee"' in page and "Nobody" not in page
    page, _ = _sign_in(lab, "chair", f"/rounds/{rid}/whatif?n_node=opt&n_gpu=H100&n_guarantee=64")
    assert "No GPUs would move." in page and "field-error" not in page  # accepted: its effect is shown


def test_the_audit_log_shows_each_change_field_by_field() -> None:
    diff = audit_diff({"state": "open", "version": 1, "x": {"a": 1}}, {"state": "closed", "version": 1, "x": {"a": 2}})
    assert diff == [("state", "open", "closed"), ("x.a", "1", "2")]
    assert audit_diff(None, {"withdrawn": True}) == [("withdrawn", None, "true")]


def test_a_ruled_appeal_reads_as_sentences(lab: Lab) -> None:
    """'With the committee of research.' (not 'research .'), and a re-appeal's text on its own line."""
    rid = _proposed(lab, "r", [("opt-lead", "o", "opt", {"gpus": 300})])
    lab.call("chair", "POST", f"/rounds/{rid}/publish", 200)
    lab.call("opt-lead", "POST", f"/rounds/{rid}/appeals", 201, json={"request": "o", "asked": 300, "reason": "x"})
    lab.call("chair", "POST", "/appeals/1/ruling", 200, json={"ruling": "reject", "reason": "no"})
    page, _ = _sign_in(lab, "chair", "/appeals?state=all")
    assert "With the committee of <strong>research</strong>." in page
    assert '<blockquote class="text">' in page  # white-space: pre-line keeps "Appealed again:" on its own line


def _deltas(section: str) -> dict[str, int]:
    """A preview table's GPU change per request, as shown."""
    rows = re.findall(
        r'<tr data-name="([^"]+)" data-kind="request">(?:<td[^>]*>[^<]*</td>){4}<td[^>]*>([^<]+)<', section
    )
    return {name: int(delta.replace(",", "")) for name, delta in rows}


def test_the_ruling_page_previews_each_choice_before_the_chair_chooses(lab: Lab) -> None:
    """Grant (the amount asked), partial (the amount typed) and reject side by side, each the API's dry run;
    nothing is ticked until the chair chooses, and nothing is saved until the confirmation."""
    rid = _proposed(lab, "r", [("llama-lead", "l", "llama", {"gpus": 400}), ("opt-lead", "o", "opt", {"gpus": 400})])
    lab.call("chair", "POST", f"/rounds/{rid}/publish", 200)
    has = {a["request"]: a["total"] for a in lab.call("chair", "GET", f"/rounds/{rid}/allocation", 200).json()["items"]}
    asked = has["o"] + 20
    lab.call("opt-lead", "POST", f"/rounds/{rid}/appeals", 201, json={"request": "o", "asked": asked, "reason": "x"})
    _, csrf = _sign_in(lab, "chair", "/appeals")
    status, text = _post(lab, "/appeals/1/rule", {"amount": str(has["o"] + 5), "reason": "", "csrf": csrf})
    assert status == 200 and 'data-testid="ruling-preview"' in text
    sections = dict(re.findall(r'data-testid="choice-(\w+)">(.*?)</section>', text, re.S))
    assert set(sections) == {"grant", "partial", "reject"}
    for ruling, amount in (("grant", has["o"] + 5), ("partial", has["o"] + 5)):
        dry = lab.call(
            "chair",
            "POST",
            "/appeals/1/ruling",
            200,
            params={"dry_run": "true"},
            json={"ruling": ruling, "amount": amount, "reason": "r"},
        ).json()
        assert _deltas(sections[ruling]) == {
            c["name"]: c["gpus_delta"] for c in dry["changes"] if c["kind"] == "request"
        }
    assert _deltas(sections["partial"])["o"] == 5 and "No GPUs would move." in sections["reject"]
    assert " checked" not in text.split('data-testid="ruling-preview"')[1].split("</form>")[0]  # no default
    assert lab.call("chair", "GET", "/appeals/1", 200).json()["state"] == "open"  # a preview saves nothing
    status, text = _post(
        lab, "/appeals/1/rule", {"amount": str(has["o"] + 5), "reason": "ok", "csrf": csrf, "confirm": "yes"}
    )
    assert "choose a ruling" in text and lab.call("chair", "GET", "/appeals/1", 200).json()["state"] == "open"
    _post(
        lab,
        "/appeals/1/rule",
        {"ruling": "partial", "amount": str(has["o"] + 5), "reason": "ok", "csrf": csrf, "confirm": "yes"},
    )
    assert lab.call("chair", "GET", "/appeals/1", 200).json()["state"] == "partial"
    after = {
        a["request"]: a["total"] for a in lab.call("chair", "GET", f"/rounds/{rid}/allocation", 200).json()["items"]
    }
    assert after["o"] == has["o"] + 5


def test_the_what_if_shows_the_same_gains_and_losses_table_as_the_previews(lab: Lab) -> None:
    """Per team and request: GPUs and effective GPUs before and after, teams first, biggest moves first;
    the GPUs are the API's what-if."""
    rid = _proposed(lab, "r", [("llama-lead", "l", "llama", {"gpus": 400}), ("opt-lead", "o", "opt", {"gpus": 400})])
    page, _ = _sign_in(lab, "chair", f"/rounds/{rid}/whatif?w_llama=3")
    table = re.search(r'<table data-testid="whatif-changes">(.*?)</table>', page, re.S)
    assert table is not None and "Effective before" in table[1] and "GPUs before" in table[1]
    rows = re.findall(
        r'<tr data-name="([^"]+)" data-kind="(\w+)">(?:<td[^>]*>[^<]*</td>){4}<td[^>]*>([^<]+)</td>'
        r'<td class="num">([\d.,]+)</td><td class="num">([\d.,]+)</td>',
        table[1],
    )
    api = lab.call("chair", "POST", f"/rounds/{rid}/whatif", 200, json={"weights": {"llama": 3}}).json()
    want = {(c["kind"], c["name"]): round(c["delta"]) for c in api["changes"] if round(c["delta"])}
    assert {(kind, name): int(delta.replace(",", "")) for name, kind, delta, _, _ in rows} == want
    kinds = [kind for _, kind, _, _, _ in rows]
    assert kinds == sorted(kinds, key=lambda k: k != "team") and "request" in kinds  # teams, then requests
    sizes = [abs(int(d.replace(",", ""))) for _, kind, d, _, _ in rows if kind == "request"]
    assert sizes == sorted(sizes, reverse=True)
    gained = next(r for r in rows if r[0] == "l")
    assert float(gained[4].replace(",", "")) > float(gained[3].replace(",", ""))  # effective GPUs move with them
