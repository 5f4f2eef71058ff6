"""A round in the browser: each person signs in with their own token and does their part;
what each page shows is checked against the API."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect
from tests.service.web.conftest import Person


def test_sign_in_rejects_a_bad_token_next_to_the_field_and_keeps_it(browser: Any, site: dict[str, Any]) -> None:
    p = Person(browser, site, "chair")
    page = p.go("/")
    expect(page).to_have_url(re.compile(r"/login"))  # not signed in: to the sign-in page
    page.get_by_label("API token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#token-error")).to_contain_text("unknown or revoked token")
    expect(page.get_by_label("API token")).to_have_value("not-a-token")
    p.shot("login")
    cookies = p.context.cookies()
    assert not any(c["name"] == "fairshare_session" for c in cookies)
    p.close()


def test_a_round_from_submission_to_ruling(browser: Any, site: dict[str, Any]) -> None:
    chair = Person(browser, site, "chair").sign_in()
    member = Person(browser, site, "llama-member").sign_in()
    lead = Person(browser, site, "opt-lead").sign_in()
    session = next(c for c in chair.context.cookies() if c["name"] == "fairshare_session")
    assert session["httpOnly"] and session["secure"]

    rid = chair.api("POST", "/rounds", json={"name": "2026-12"}).json()["id"]
    page = chair.go(f"/rounds/{rid}")
    page.get_by_role("button", name="Open").click()
    expect(page.locator(".flash.ok")).to_contain_text("now open")

    # a member submits a request; a bad one first: the error sits next to the field, the input stays
    page = member.go(f"/rounds/{rid}/teams/llama")
    form = page.get_by_test_id("request-form")
    form.get_by_label("Request id").fill("llama-5")
    form.get_by_label("GPUs (at most, at once)").fill("100")
    form.get_by_label("Minimum viable GPUs (optional)").fill("200")
    form.get_by_label("Justification").fill("frontier pre-training run")
    form.get_by_role("button", name="Submit request").click()
    expect(page.locator(".field-error").first).to_contain_text("min (200) is above gpus (100)")
    expect(page.get_by_label("Request id")).to_have_value("llama-5")
    expect(page.get_by_label("Justification")).to_have_value("frontier pre-training run")
    page.get_by_label("Minimum viable GPUs (optional)").fill("64")
    page.get_by_label("H100").fill("2")
    page.get_by_label("A100").fill("1")
    page.get_by_role("button", name="Submit request").click()
    expect(page.locator(".flash.ok")).to_contain_text("request llama-5 submitted")
    member.shot("team-open", docs=False)  # docs: test_whole_round's
    lead.api(
        "POST",
        f"/rounds/{rid}/requests",
        json={"id": "opt-4", "team": "opt", "gpus": 150, "justification": "opt's secret plan"},
    )

    # the committee closes, proposes and publishes from the round page
    page = chair.go(f"/rounds/{rid}")
    for step, state in (("Close", "closed"), ("Propose", "proposed")):
        page.get_by_role("button", name=step, exact=True).click()
        expect(page.locator(".flash.ok")).to_contain_text(f"now {state}")
    page.get_by_role("button", name="Publish…").click()  # publication asks for confirmation first
    page.get_by_role("button", name="Confirm: publish").click()
    expect(page.locator(".flash.ok")).to_contain_text("now published")
    jain = chair.api("GET", f"/rounds/{rid}/runs").json()["items"][0]["fairness"]["jain_index"]
    expect(page.get_by_test_id("jain")).to_have_text(f"{jain:.3f}")
    for e in chair.api("GET", f"/rounds/{rid}/entitlements").json()["items"]:
        expect(page.locator(f'td[data-node="{e["node"]}"]')).to_have_text(f"{e['total']:,}")
    page.wait_for_selector(".chart .main-svg")  # plotly drew the charts
    chair.shot("round-overview", docs=False)  # docs: test_whole_round's

    # the team page shows the same numbers as the API, with the reason
    page = lead.go(f"/rounds/{rid}/teams/opt")
    ent = lead.api("GET", f"/rounds/{rid}/entitlements/opt").json()
    expect(page.get_by_test_id("entitlement-total")).to_have_text(f"{ent['total']:,}")
    expect(page.get_by_test_id("entitlement-reason")).to_have_text(ent["reason"])
    got = {a["request"]: a["total"] for a in lead.api("GET", f"/rounds/{rid}/allocation").json()["items"]}
    expect(page.locator('tr[data-request="opt-4"] [data-testid="got"]')).to_have_text(f"{got['opt-4']:,}")

    # the lead appeals: a bad amount first
    form = page.get_by_test_id("appeal-form")
    form.get_by_label("GPUs asked for").fill("lots")
    form.get_by_label("Reason").fill("paper deadline")
    form.get_by_role("button", name="File appeal").click()
    expect(page.locator("#e-asked")).to_contain_text("whole number")
    expect(page.get_by_label("Reason")).to_have_value("paper deadline")
    page.get_by_label("GPUs asked for").fill("150")
    page.get_by_role("button", name="File appeal").click()
    expect(page.locator(".flash.ok")).to_contain_text("with the committee of research")
    lead.shot("team-published", docs=False)  # docs: test_whole_round's

    # the chair (committee of the root, so of research's subtree too) rules from the queue
    page = chair.go("/appeals")
    card = page.locator("article[data-appeal]").first
    expect(card).to_contain_text("Escalation path: research → lab")
    chair.shot("appeals-queue", docs=False)  # docs: test_whole_round's
    card.get_by_label("Ruling").select_option("partial")
    card.get_by_label("GPUs (grant").fill(str(got["opt-4"] + 5))
    card.get_by_label("Reason").fill("five more for the deadline")
    card.get_by_role("button", name="Preview the ruling").click()
    preview = page.get_by_test_id("ruling-preview")  # who gains and who loses, before anything is saved
    expect(preview).to_contain_text("opt-4")
    expect(preview).to_contain_text("+5")
    preview.get_by_role("button", name="Confirm the ruling").click()
    expect(page.locator(".flash.ok")).to_contain_text("partial")
    after = {a["request"]: a["total"] for a in lead.api("GET", f"/rounds/{rid}/allocation").json()["items"]}
    assert after["opt-4"] == got["opt-4"] + 5
    page = lead.go(f"/rounds/{rid}/teams/opt")
    expect(page.locator('tr[data-request="opt-4"] [data-testid="got"]')).to_have_text(f"{after['opt-4']:,}")

    # what-if: drop opt's request; llama gains what opt loses
    page = chair.go(f"/rounds/{rid}/whatif")
    page.get_by_label("drop").nth(1).check()
    page.get_by_role("button", name="Show the effect").click()
    table = page.get_by_test_id("whatif-changes")
    expect(table.locator('tr[data-name="opt"] td').nth(4)).to_have_text(f"-{after['opt-4']:,}")  # Change
    page.wait_for_selector(".chart .main-svg")
    chair.shot("what-if", docs=False)  # docs: test_whole_round's

    page = chair.go("/audit?action=appeal.partial")
    expect(page.get_by_test_id("audit")).to_contain_text("appeal.partial")
    chair.shot("audit-log", docs=False)  # docs: test_whole_round's
    for p in (chair, member, lead):
        p.close()


def test_a_member_cannot_see_another_teams_justification(browser: Any, site: dict[str, Any]) -> None:
    chair = Person(browser, site, "chair").sign_in()
    rid = chair.api("POST", "/rounds", json={"name": "secrets"}).json()["id"]
    chair.api("POST", f"/rounds/{rid}/open")
    llama = Person(browser, site, "llama-member").sign_in()
    llama.api(
        "POST",
        f"/rounds/{rid}/requests",
        json={"id": "mine", "team": "llama", "gpus": 8, "justification": "llama's own reasons"},
    )
    genai = Person(browser, site, "genai-lead").sign_in()
    genai.api(
        "POST",
        f"/rounds/{rid}/requests",
        json={"id": "theirs", "team": "genai", "gpus": 8, "justification": "genai's confidential roadmap"},
    )
    page = llama.go(f"/rounds/{rid}/teams/genai")
    expect(page.get_by_test_id("requests")).to_contain_text("theirs")
    expect(page.locator("body")).not_to_contain_text("confidential roadmap")
    page = llama.go(f"/rounds/{rid}/teams/llama")
    expect(page.get_by_test_id("justification")).to_have_text("llama's own reasons")
    page = chair.go(f"/rounds/{rid}/teams/genai")
    expect(page.get_by_test_id("justification")).to_have_text("genai's confidential roadmap")
    for p in (chair, llama, genai):
        p.close()


def test_forms_without_the_csrf_token_are_refused(browser: Any, site: dict[str, Any]) -> None:
    chair = Person(browser, site, "chair").sign_in()
    rid = chair.api("POST", "/rounds", json={"name": "csrf"}).json()["id"]
    r = chair.context.request.post(f"{site['url']}/rounds/{rid}/step", form={"step": "open", "csrf": "forged"})
    assert r.status == 403 and "stale" in r.text()
    assert chair.api("GET", f"/rounds/{rid}").json()["state"] == "draft"
    chair.close()


def test_pages_work_on_a_phone_sized_screen(browser: Any, site: dict[str, Any]) -> None:
    p = Person(browser, site, "opt-lead", width=390).sign_in()
    page = p.go("/")
    first = page.locator("table a").first
    first.click()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1  # no sideways scrolling
    p.shot("round-phone")
    p.close()


UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter(el => el.labels.length === 0 && !el.getAttribute('aria-label')).map(el => el.name)"""


def test_every_form_control_has_a_label_and_the_keyboard_reaches_it(browser: Any, site: dict[str, Any]) -> None:
    chair = Person(browser, site, "chair").sign_in()
    rid = chair.api("POST", "/rounds", json={"name": "a11y"}).json()["id"]
    chair.api("POST", f"/rounds/{rid}/open")
    lead = Person(browser, site, "llama-lead").sign_in()
    for person, path in (
        (chair, f"/rounds/{rid}"),
        (chair, f"/rounds/{rid}/whatif"),
        (chair, "/appeals"),
        (chair, "/audit"),
        (lead, f"/rounds/{rid}/teams/llama"),
    ):
        page = person.go(path)
        assert page.evaluate(UNLABELLED) == [], path
    page = lead.go(f"/rounds/{rid}/teams/llama")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for p in (chair, lead):
        p.close()
