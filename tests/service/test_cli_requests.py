"""`fairshare request copy-forward`, `request edit` and `request withdraw` against a served lab."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from tests.service.test_cli_service import fs, server  # noqa: F401 (the served lab, one for this module)


def _json(args: list[str], env: dict[str, str]) -> Any:
    code, out, err = fs(*args, "--json", env=env)
    assert code == 0, err
    return json.loads(out)


def _ask(env: dict[str, str], rid: int, key: str, gpus: int) -> None:
    body = {"id": key, "team": "llama", "gpus": gpus, "justification": "why " + key}
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "ask.yaml"
        f.write_text(json.dumps(body))
        code, _, err = fs("request", "submit", str(f), "--round", str(rid), env=env)
        assert code == 0, err


def test_copy_forward_edit_and_withdraw_from_the_command_line(server: dict[str, str]) -> None:  # noqa: F811
    chair = {**server, "FAIRSHARE_TOKEN": server["CHAIR"]}
    lead = {**server, "FAIRSHARE_TOKEN": server["LEAD"]}
    march = _json(["round", "create", "cf-03"], chair)["id"]
    assert fs("round", "open", str(march), env=chair)[0] == 0
    _ask(lead, march, "llama-a", 30)
    _ask(lead, march, "llama-b", 20)
    assert fs("round", "close", str(march), env=chair)[0] == 0
    april = _json(["round", "create", "cf-04"], chair)["id"]
    assert fs("round", "open", str(april), env=chair)[0] == 0

    code, out, err = fs("request", "copy-forward", "--round", str(april), "--team", "llama", env=lead)
    assert code == 0, err
    assert "copied 2 request(s) from round cf-03" in out and "llama-a" in out and "llama-b" in out
    mine = {r["key"]: r for r in _json(["request", "list", "--round", str(april)], lead)["items"]}
    assert {k: r["gpus"] for k, r in mine.items()} == {"llama-a": 30, "llama-b": 20}

    code, out, err = fs("request", "edit", str(mine["llama-a"]["id"]), "--gpus", "44", "--priority", "high", env=lead)
    assert code == 0 and "version 2: 44 GPUs, high" in out, err
    edited = _json(["request", "list", "--round", str(april)], lead)["items"]
    a = next(r for r in edited if r["key"] == "llama-a")
    assert (a["gpus"], a["priority"], a["justification"]) == (44, "high", "why llama-a")  # the rest kept

    code, out, err = fs("request", "withdraw", str(mine["llama-b"]["id"]), env=lead)
    assert code == 0 and "withdrew llama-b" in out, err
    assert [r["key"] for r in _json(["request", "list", "--round", str(april)], lead)["items"]] == ["llama-a"]

    # refusals: exit 2, one line naming the problem, nothing changed
    code, _, err = fs("request", "copy-forward", "--round", str(april), env=lead)  # everyone's: committee only
    assert code == 2 and "403" in err and "committee" in err
    code, _, err = fs("request", "copy-forward", "--round", str(april), "--team", "", env=lead)
    assert code == 2 and "--team" in err
    code, _, err = fs("request", "edit", str(a["id"]), env=lead)
    assert code == 2 and "nothing to change" in err
    code, _, err = fs("request", "edit", str(a["id"]), "--min", "100", env=lead)  # above gpus
    assert code == 2 and "min" in err
    code, _, err = fs("request", "withdraw", str(a["id"]), "--version", "1", env=lead)  # stale
    assert code == 2 and "version 2" in err
    code, _, err = fs("request", "withdraw", "99999", env=lead)
    assert code == 2 and "404" in err
    after = _json(["request", "list", "--round", str(april)], lead)["items"]
    assert [(r["key"], r["gpus"], r["version"]) for r in after] == [("llama-a", 44, 2)]


def test_escalate_says_an_appeal_overdue_at_the_top_and_who_must_rule(server: dict[str, str]) -> None:  # noqa: F811
    import time

    chair = {**server, "FAIRSHARE_TOKEN": server["CHAIR"]}
    lead = {**server, "FAIRSHARE_TOKEN": server["LEAD"]}
    rid = _json(["round", "create", "esc", "--appeal-response-hours", "0.0003"], chair)["id"]  # about 1 s
    assert fs("round", "open", str(rid), env=chair)[0] == 0
    _ask(lead, rid, "llama-esc", 500)
    for step in ("close", "propose", "publish"):
        assert fs("round", step, str(rid), env=chair)[0] == 0
    code, out, err = fs(
        "appeal", "file", "--round", str(rid), "--request", "llama-esc", "--asked", "600", "--reason", "x", env=lead
    )
    assert code == 0, err
    appeal_id = out.split()[1]
    for _ in range(3):  # research's committee, then the lab's: one step up each time it is overdue
        time.sleep(1.3)
        code, out, err = fs("appeal", "escalate", env=chair)
        assert code == 0, err
    said = " ".join(out.split())
    assert f"appeal {appeal_id} (llama-esc, llama) is overdue at the top" in said
    assert "committee of 'lab'" in said and "must rule" in said
