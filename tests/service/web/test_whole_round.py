"""Issue 20's done-when: a whole round run from the pages only, by a chair and two team leads, in
Debian's Chromium; every number a page shows is checked against the API in the same run (another
engineer's engine work may move numbers, so never against constants).  Each page is screenshotted
at desktop and phone widths and checked for labels, focus order and contrast (tests/service/web/a11y.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from tests.service.web import a11y
from tests.service.web.conftest import Person, served

PARIS_LAB = """
name: paris-lab
reference_gpu: A100
pools:
  - {name: h100-paris, gpu: H100, site: paris, gpus: 64}
  - {name: a100-paris, gpu: A100, site: paris, gpus: 32}
  - {name: a100-ohio, gpu: A100, site: ohio, gpus: 128}
org:
  name: lab
  children:
    - name: research
      weight: 2
      children: [{name: llama}, {name: opt}]
    - name: product
      children: [{name: genai}]
"""


@pytest.fixture(scope="module")
def paris(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with served(tmp_path_factory.mktemp("paris") / "lab.db", PARIS_LAB) as s:
        yield s


WIDE = """() => [...document.querySelectorAll("body *")].filter(e => !e.closest("svg")
  && e.getBoundingClientRect().right > 391).map(e => e.tagName + "." + e.className).slice(0, 8)"""


def check(person: Person, name: str, phone: Person | None = None, docs: bool = True, resized: bool = False) -> None:
    """The page passes the accessibility checks; screenshots of it at desktop and phone width: with `phone`,
    that person opens the same address; with `resized`, this very page (a preview a POST drew) is narrowed."""
    page = person.page
    person.shot(f"{name}-desktop", docs=docs)  # first: the keyboard checks below scroll the page and its tables
    problems = a11y.problems(page)
    assert problems == [], f"{name}: {problems}"
    if phone is None and not resized:
        return
    if resized:
        page.set_viewport_size({"width": 390, "height": 844})
        on_phone = person
    else:
        assert phone is not None
        phone.go(page.url.removeprefix(person.url))
        on_phone = phone
    width = on_phone.page.evaluate("document.documentElement.scrollWidth")
    wide = on_phone.page.evaluate(WIDE)
    assert width <= 390 + 1, f"{name} scrolls sideways on a phone ({width} px): {wide}"  # tables scroll in cards
    on_phone.shot(f"{name}-phone", docs=docs)
    problems = a11y.problems(on_phone.page)
    assert problems == [], f"{name} (phone): {problems}"
    if resized:
        page.set_viewport_size({"width": 1280, "height": 900})


def flash(page: Any, text: str) -> None:
    expect(page.locator(".flash.ok")).to_contain_text(text)


def test_a_committee_and_two_leads_run_a_round_from_the_pages(browser: Any, paris: dict[str, Any]) -> None:
    visitor = Person(browser, paris, "chair")  # the sign-in page, before anyone signs in
    visitor.go("/login")
    check(visitor, "login", resized=True, docs=False)  # docs: login.png (test_browser's)
    visitor.close()
    chair = Person(browser, paris, "chair").sign_in()
    llama = Person(browser, paris, "llama-lead").sign_in()
    opt = Person(browser, paris, "opt-lead").sign_in()
    phone_chair = Person(browser, paris, "chair", width=390).sign_in()
    phone_lead = Person(browser, paris, "opt-lead", width=390).sign_in()

    # last month's round (set up through the API: it is history here, not the round under test)
    prev = chair.api("POST", "/rounds", json={"name": "2026-10", "date": "2026-10-01"}).json()["id"]
    chair.api("POST", f"/rounds/{prev}/open")
    for who, body in (
        (llama, {"id": "llama-pretrain", "team": "llama", "gpus": 160, "min": 32}),
        (opt, {"id": "opt-finetune", "team": "opt", "gpus": 120}),
    ):
        assert who.api("POST", f"/rounds/{prev}/requests", json=body).status_code == 201
    for step in ("close", "propose", "publish"):
        assert chair.api("POST", f"/rounds/{prev}/{step}").status_code == 200

    # 1. the chair creates the round with its date and appeal windows
    page = chair.go("/")
    form = page.get_by_test_id("create-round")
    form.get_by_label("Name").fill("2026-11")
    form.get_by_label("Date (urgency counts from it)").fill("2026-11-15")
    form.get_by_label("Appeal window after publication (hours)").fill("48")
    form.get_by_label("Time a committee has to rule on an appeal (hours)").fill("24")
    check(chair, "home", phone_chair)
    form.get_by_role("button", name="Create round").click()
    flash(page, "round 2026-11 created")
    rid = int(re.search(r"/rounds/(\d+)", page.url).group(1))  # type: ignore[union-attr]
    rnd = chair.api("GET", f"/rounds/{rid}").json()
    assert rnd["policy"]["date"] == "2026-11-15" and rnd["appeal_window_hours"] == 48
    assert rnd["appeal_response_hours"] == 24

    # 2. open it and copy every team's requests forward
    page.get_by_role("button", name="Open", exact=True).click()
    flash(page, "now open")
    page.get_by_role("button", name="Copy every team's requests from the previous round").click()
    flash(page, "copied 2 request(s) from round 2026-10")
    keys = {r["key"] for r in chair.api("GET", f"/rounds/{rid}/requests").json()["items"]}
    assert keys == {"llama-pretrain", "opt-finetune"}

    # 3. llama's lead submits a Paris-only request with a launch date; opt's lead edits its copied request
    page = llama.go(f"/rounds/{rid}/teams/llama")
    form = page.get_by_test_id("request-form")
    form.get_by_label("Request id").fill("llama-paris")
    form.get_by_label("GPUs (at most, at once)").fill("48")
    form.get_by_label("Launch date (optional; urgency rises as it nears)").fill("2026-12-20")
    form.get_by_label("paris").check()
    form.get_by_label("H100").fill("2")
    form.get_by_label("A100").fill("1")
    form.get_by_label("Justification").fill("Paris team's launch")
    check(llama, "team-open", phone_lead)
    form.get_by_role("button", name="Submit request").click()
    flash(page, "request llama-paris submitted")
    mine = {r["key"]: r for r in llama.api("GET", f"/rounds/{rid}/requests").json()["items"]}
    assert mine["llama-paris"]["sites"] == ["paris"] and mine["llama-paris"]["launch"] == "2026-12-20"

    page = opt.go(f"/rounds/{rid}/teams/opt")
    page.get_by_role("link", name="Edit opt-finetune").click()
    form = page.get_by_test_id("request-form")
    expect(form.get_by_label("GPUs (at most, at once)")).to_have_value("120")  # the copied version, to edit
    form.get_by_label("GPUs (at most, at once)").fill("100")
    form.get_by_role("button", name="Save as a new version").click()
    flash(page, "request opt-finetune saved as version 2")
    edited = next(r for r in opt.api("GET", f"/rounds/{rid}/requests").json()["items"] if r["key"] == "opt-finetune")
    assert edited["gpus"] == 100

    # 4. close and propose; the round page's numbers are the API's
    page = chair.go(f"/rounds/{rid}")
    for step, state in (("Close", "closed"), ("Propose", "proposed")):
        page.get_by_role("button", name=step, exact=True).click()
        flash(page, f"now {state}")
    for e in chair.api("GET", f"/rounds/{rid}/entitlements").json()["items"]:
        expect(page.locator(f'td[data-node="{e["node"]}"]')).to_have_text(f"{e['total']:,}")
    requests = {r["key"]: r for r in chair.api("GET", f"/rounds/{rid}/requests").json()["items"]}
    pools = {p["name"]: p for p in chair.api("GET", f"/rounds/{rid}/scenario").json()["pools"]}
    for name, pool in pools.items():  # paris-only demand counts only in Paris; llama-pretrain could run anywhere
        only = sum(
            r["gpus"]
            for r in requests.values()
            if r.get("sites")
            and len(r["sites"]) == 1
            and r["sites"][0] == pool["site"]
            and sum(
                1
                for p in pools.values()
                if p["site"] == pool["site"] and (not r.get("speed") or p["gpu"] in r["speed"])
            )
            == 1
        )
        expect(page.locator(f'tr[data-pool="{name}"] [data-testid="only"]')).to_have_text(f"{only:,}")
    page.wait_for_selector(".chart .main-svg")
    check(chair, "round-proposed", phone_chair)

    # 5. an override: preview (checked against the API's dry run), then confirm
    alloc = {a["request"]: a["total"] for a in chair.api("GET", f"/rounds/{rid}/allocation").json()["items"]}
    target = alloc["llama-paris"] + 4 if alloc["llama-paris"] + 4 <= 48 else alloc["llama-paris"] - 4
    form = page.get_by_test_id("override-form")
    form.get_by_label("Request").select_option("llama-paris")
    form.get_by_label("GPUs in total (spread over its pools)").fill(str(target))
    form.get_by_label("Reason (the team sees it)").fill("launch in December")
    form.get_by_role("button", name="Preview the override").click()
    preview = page.get_by_test_id("override-preview")
    dry = chair.api(
        "POST",
        f"/rounds/{rid}/overrides?dry_run=true",
        json={"request": "llama-paris", "gpus": target, "reason": "launch in December"},
    ).json()
    assert not dry["refused"], dry
    for c in dry["changes"]:
        row = preview.locator(f'tr[data-kind="{c["kind"]}"][data-name="{c["name"]}"] td')
        expect(row.nth(3)).to_have_text(f"{c['gpus_after']:,}")
    check(chair, "override-preview", resized=True)
    preview.get_by_role("button", name="Confirm the override").click()
    flash(page, f"llama-paris now has {target:,} GPUs")
    alloc = {a["request"]: a["total"] for a in chair.api("GET", f"/rounds/{rid}/allocation").json()["items"]}
    assert alloc["llama-paris"] == target
    active = [o for o in chair.api("GET", f"/rounds/{rid}/overrides").json()["items"] if o["active"]]
    expect(page.locator(f'tr[data-override="{active[0]["id"]}"]')).to_contain_text("chair")

    # 6. publish, with its confirmation
    page.get_by_role("button", name="Publish…").click()
    confirm = page.get_by_test_id("publish-confirm")
    expect(confirm).to_contain_text("The appeal window starts: leads may appeal for 48 hours")
    check(chair, "publish-confirm", resized=True)
    confirm.get_by_role("button", name="Confirm: publish").click()
    flash(page, "now published")
    assert chair.api("GET", f"/rounds/{rid}").json()["state"] == "published"
    expect(page.get_by_role("button", name="Finalize")).to_have_count(0)  # the appeal window is open
    expect(page.get_by_test_id("finalize-when")).to_contain_text("appeal window is open until")

    # 7. opt's lead reads its page (numbers from the API) and appeals
    page = opt.go(f"/rounds/{rid}/teams/opt")
    ent = opt.api("GET", f"/rounds/{rid}/entitlements/opt").json()
    expect(page.get_by_test_id("entitlement-total")).to_have_text(f"{ent['total']:,}")
    got = {a["request"]: a["total"] for a in opt.api("GET", f"/rounds/{rid}/allocation").json()["items"]}
    expect(page.locator('tr[data-request="opt-finetune"] [data-testid="got"]')).to_have_text(f"{got['opt-finetune']:,}")
    form = page.get_by_test_id("appeal-form")
    form.get_by_label("Request").select_option("opt-finetune")
    form.get_by_label("GPUs asked for").fill(str(got["opt-finetune"] + 10))
    form.get_by_label("Reason").fill("paper deadline in January")
    check(opt, "team-published", phone_lead)
    form.get_by_role("button", name="File appeal").click()
    flash(page, "with the committee of research")

    # 8. the chair previews a ruling (no default ruling) and rules
    page = chair.go("/appeals")
    card = page.locator("article[data-appeal]").first
    expect(card).to_contain_text("round 2026-11")
    expect(card.get_by_test_id("waited")).to_contain_text("waiting for")
    expect(card.get_by_label("Ruling")).to_have_value("")
    check(chair, "appeals-queue", phone_chair)
    card.get_by_label("Ruling").select_option("partial")
    card.get_by_label("GPUs (grant").fill(str(got["opt-finetune"] + 5))
    card.get_by_label("Reason").fill("five more for the deadline")
    card.get_by_role("button", name="Preview the ruling").click()
    preview = page.get_by_test_id("ruling-preview")
    partial = preview.get_by_test_id("choice-partial")  # each choice previewed; the one chosen is ticked
    expect(partial.locator('tr[data-kind="request"][data-name="opt-finetune"] td').nth(4)).to_have_text("+5")
    check(chair, "ruling-preview", resized=True)
    preview.get_by_role("button", name="Confirm the ruling").click()
    flash(page, "partial")
    after = {a["request"]: a["total"] for a in opt.api("GET", f"/rounds/{rid}/allocation").json()["items"]}
    assert after["opt-finetune"] == got["opt-finetune"] + 5

    # 9. the health page and the team's history: the API's numbers
    page = chair.go("/health")
    h = chair.api("GET", "/health").json()
    for node in h["nodes"]:
        for cell in node["rounds"]:
            s = cell["share_of_fair"]
            shown = "—" if s is None else f"{round(s * 100)}%"
            expect(page.locator(f'tr[data-node="{node["name"]}"] td[data-round="{cell["round"]}"]')).to_have_text(shown)
    check(chair, "health", phone_chair)
    page = opt.go(f"/rounds/{rid}/teams/opt")
    mine_h = next(n for n in h["nodes"] if n["name"] == "opt")
    for cell in mine_h["rounds"]:
        s = cell["share_of_fair"]
        expect(page.locator(f'tr[data-round="{cell["round"]}"] [data-testid="pct"]')).to_contain_text(
            "no demand" if s is None else f"{round(s * 100)}%"
        )

    # the levers page: what would give opt-finetune more
    page = opt.go(f"/rounds/{rid}/requests/opt-finetune/levers")
    expect(page.locator("h1")).to_contain_text("opt-finetune")
    check(opt, "levers", phone_lead)

    # what-if, audit log: the last pages, for their screenshots and checks
    page = chair.go(f"/rounds/{rid}/whatif?np_gpu=H100&np_site=paris&np_gpus=32")
    expect(page.get_by_test_id("whatif-changes")).to_be_visible()
    check(chair, "what-if", phone_chair)
    page = chair.go("/audit?action=override.set")
    check(chair, "audit-log", phone_chair)
    for p in (chair, llama, opt, phone_chair, phone_lead):
        p.close()
