"""`fairshare serve --sync ...`: publishing (or a granted appeal) pushes the allocation into the
schedulers and records each push in the audit log; a failed push leaves the round published."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.connectors.test_kueue import FakePool, fake_api
from tests.service.conftest import Clock, Lab, seed

from fairshare.connectors import kueue
from fairshare.service.api.app import create_app
from fairshare.service.ops.sync_hooks import hooks_from_env


def lab_with(engine: Engine, hooks: list[tuple[str, Any]]) -> Lab:
    tokens = seed(engine)
    clock = Clock()
    return Lab(TestClient(create_app(engine=engine, clock=clock, sync_hooks=hooks)), clock, tokens, engine)


def publish_round(lab: Lab, name: str = "synced") -> int:
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": name}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    lab.call("llama-lead", "POST", f"/rounds/{rid}/requests", 201, json={"id": "l1", "team": "llama", "gpus": 100})
    lab.call("opt-lead", "POST", f"/rounds/{rid}/requests", 201, json={"id": "o1", "team": "opt", "gpus": 150})
    for step in ("close", "propose", "publish"):
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)
    return rid


def sync_entries(lab: Lab) -> list[dict[str, Any]]:
    return lab.call("chair", "GET", "/audit?action=sync.kueue", 200).json()["items"]


def test_publish_writes_validated_kueue_manifests_and_records_it(engine: Engine, tmp_path: Path) -> None:
    lab = lab_with(engine, hooks_from_env({"FAIRSHARE_SYNC_ON_PUBLISH": "kueue", "FAIRSHARE_KUEUE_OUT": str(tmp_path)}))
    rid = publish_round(lab)
    [entry] = sync_entries(lab)
    assert entry["actor"] == "chair" and entry["entity_id"] == str(rid) and entry["after"]["result"] == "ok"
    queues = [
        d
        for f in tmp_path.glob("*.yaml")
        for d in yaml.safe_load_all(f.read_text())
        if d and d["kind"] == "ClusterQueue"
    ]
    quota = {
        q["metadata"]["name"]: {
            f["name"]: f["resources"][0]["nominalQuota"] for g in q["spec"]["resourceGroups"] for f in g["flavors"]
        }
        for q in queues
    }
    got = {a["team"]: a["total"] for a in lab.call("chair", "GET", f"/rounds/{rid}/allocation", 200).json()["items"]}
    for team in ("llama", "opt"):
        assert sum(int(v) for v in quota[team].values()) == got[team]


def test_publish_applies_to_the_kube_context_and_records_where(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = FakePool()
    monkeypatch.setattr(kueue, "custom_objects_api", lambda *_: (fake_api(pool)[1], "lab-context"))
    lab = lab_with(engine, hooks_from_env({"FAIRSHARE_SYNC_ON_PUBLISH": "kueue"}))
    publish_round(lab)
    [entry] = sync_entries(lab)
    assert entry["after"]["result"] == "applied" and entry["after"]["context"] == "lab-context"
    assert entry["after"]["objects"] == len(pool.requests) // 2  # a dry run of each, then each applied


def test_publish_without_a_cluster_records_why(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    lab = lab_with(engine, hooks_from_env({"FAIRSHARE_SYNC_ON_PUBLISH": "kueue"}))
    rid = publish_round(lab)
    [entry] = sync_entries(lab)
    assert entry["after"]["result"] == "failed"
    assert entry["after"]["error"].startswith("NoCluster: no Kubernetes cluster to apply to: no kubeconfig at ")
    assert lab.call("chair", "GET", f"/rounds/{rid}", 200).json()["state"] == "published"


def test_a_granted_appeal_pushes_again_and_a_rejection_does_not(engine: Engine, tmp_path: Path) -> None:
    lab = lab_with(engine, hooks_from_env({"FAIRSHARE_SYNC_ON_PUBLISH": "kueue", "FAIRSHARE_KUEUE_OUT": str(tmp_path)}))
    rid = publish_round(lab)
    a = lab.call(
        "llama-lead", "POST", f"/rounds/{rid}/appeals", 201, json={"request": "l1", "asked": 100, "reason": "x"}
    ).json()
    lab.call("chair", "POST", f"/appeals/{a['id']}/ruling", 200, json={"ruling": "reject", "reason": "no"})
    assert len(sync_entries(lab)) == 1
    lab.call("llama-lead", "POST", f"/appeals/{a['id']}/reappeal", 200, json={"reason": "please"})
    lab.call("chair", "POST", f"/appeals/{a['id']}/ruling", 200, json={"ruling": "grant", "reason": "ok"})
    assert len(sync_entries(lab)) == 2


def test_a_late_ruling_on_an_older_round_is_recorded_as_not_pushed(engine: Engine, tmp_path: Path) -> None:
    pushed: list[str] = []

    def hook(pub: Any) -> dict[str, Any]:
        pushed.append(pub.label)
        return {}

    lab = lab_with(engine, [("kueue", hook)])
    may = publish_round(lab, "2026-05")
    a = lab.call(
        "llama-lead", "POST", f"/rounds/{may}/appeals", 201, json={"request": "l1", "asked": 120, "reason": "x"}
    ).json()
    june = publish_round(lab, "2026-06")
    assert len(pushed) == 2
    lab.call("chair", "POST", f"/appeals/{a['id']}/ruling", 200, json={"ruling": "grant", "reason": "ok"})

    assert len(pushed) == 2 and f"round {june} (2026-06)" in pushed[-1]  # the scheduler keeps June
    [late] = [e for e in sync_entries(lab) if e["after"]["result"] == "not pushed"]
    assert late["entity_id"] == str(may)
    assert "newest" in late["after"]["reason"] and "2026-06" in late["after"]["reason"]


def test_the_web_pages_push_as_the_api_does(engine: Engine, tmp_path: Path) -> None:
    """A publish and a granted ruling from the pages push too; a rejection from them does not."""
    tokens = seed(engine)
    hooks = hooks_from_env({"FAIRSHARE_SYNC_ON_PUBLISH": "kueue", "FAIRSHARE_KUEUE_OUT": str(tmp_path)})
    lab = Lab(
        TestClient(create_app(engine=engine, clock=Clock(), sync_hooks=hooks, secure_cookies=False)),
        Clock(),
        tokens,
        engine,
    )
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": "web"}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    lab.call("llama-lead", "POST", f"/rounds/{rid}/requests", 201, json={"id": "l1", "team": "llama", "gpus": 100})
    lab.call("opt-lead", "POST", f"/rounds/{rid}/requests", 201, json={"id": "o1", "team": "opt", "gpus": 100})
    for step in ("close", "propose"):
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)
    web = lab.client
    login = web.get("/login")
    login_csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)[1]  # type: ignore[index]
    signed_in = web.post("/login", data={"token": tokens["chair"], "csrf": login_csrf}, follow_redirects=False)
    assert signed_in.status_code == 303
    csrf = re.search(r'name="csrf" value="([^"]+)"', web.get(f"/rounds/{rid}").text)[1]  # type: ignore[index]

    assert (
        "now published"
        in web.post(f"/rounds/{rid}/step", data={"step": "publish", "csrf": csrf, "confirm": "yes"}).text
    )
    assert len(sync_entries(lab)) == 1
    a = lab.call(
        "llama-lead", "POST", f"/rounds/{rid}/appeals", 201, json={"request": "l1", "asked": 100, "reason": "x"}
    ).json()
    web.post(f"/appeals/{a['id']}/rule", data={"ruling": "reject", "reason": "no", "csrf": csrf, "confirm": "yes"})
    assert lab.call("chair", "GET", f"/appeals/{a['id']}", 200).json()["state"] == "rejected"
    assert len(sync_entries(lab)) == 1
    lab.call("llama-lead", "POST", f"/appeals/{a['id']}/reappeal", 200, json={"reason": "please"})
    web.post(f"/appeals/{a['id']}/rule", data={"ruling": "grant", "reason": "ok", "csrf": csrf, "confirm": "yes"})
    assert lab.call("chair", "GET", f"/appeals/{a['id']}", 200).json()["state"] == "granted"
    assert len(sync_entries(lab)) == 2


def test_a_failed_push_is_recorded_and_the_round_stays_published(engine: Engine) -> None:
    def broken(_: Any) -> dict[str, Any]:
        raise RuntimeError("slurmdbd is not answering")

    lab = lab_with(engine, [("kueue", broken)])
    rid = publish_round(lab)
    [entry] = sync_entries(lab)
    assert entry["after"] == {"result": "failed", "error": "RuntimeError: slurmdbd is not answering"}
    assert lab.call("chair", "GET", f"/rounds/{rid}", 200).json()["state"] == "published"


def test_unknown_sync_target_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown sync target 'lsf'"):
        hooks_from_env({"FAIRSHARE_SYNC_ON_PUBLISH": "slurm,lsf"})


def test_sync_round_refuses_an_older_round_unless_forced(engine: Engine, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fairshare.cli import app

    if engine.dialect.name != "sqlite":
        pytest.skip("the CLI opens its own database by URL; the SQLite file shows it")
    lab = lab_with(engine, [])
    may = publish_round(lab, "2026-05")
    publish_round(lab, "2026-06")
    db = engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    for target in ("slurm", "kueue"):
        r = runner.invoke(app, ["sync", target, "--round", str(may), "--db", db])
        assert r.exit_code == 2, r.output
        assert "not the newest published round" in r.output and "2026-06" in r.output and "--force" in r.output
    r = runner.invoke(app, ["sync", "kueue", "--round", str(may), "--force", "--db", db])
    assert r.exit_code == 0 and "kind: ClusterQueue" in r.stdout
