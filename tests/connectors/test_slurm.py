"""`fairshare sync slurm` and `fairshare usage import slurm` against a real Slurm (../shared/slurm-dev).

The node has gpu:h100:4,gpu:a100:4.  Every test works under its own account prefix and removes
its accounts and jobs afterwards, so the tests run in any order and leave Slurm as they found it.
The last few tests (the planner and the usage arithmetic) need no cluster.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from fairshare import workflow as wf
from fairshare.cli import app
from fairshare.connectors.slurm import (
    Account,
    ClusterState,
    PlanError,
    Runner,
    SlurmConfig,
    Syncer,
    default_cluster,
    gpu_of_gres,
    parse_gres_map,
    plan,
    read_state,
    read_usage,
    wanted_accounts,
)
from fairshare.connectors.source import Published, from_file
from fairshare.scenario import Scenario
from fairshare.scenario.files import load_scenario
from fairshare.service.ops.rounds import get_round, step_round
from fairshare.store import models as m
from fairshare.store.db import make_engine, session_factory, upgrade
from fairshare.store.repo import ensure_member, grant, import_scenario

SHARED = Path(os.environ.get("FAIRSHARE_SHARED", Path(__file__).resolve().parents[3] / "shared"))
SLURM_DEV = Path(os.environ.get("SLURM_DEV_SCRIPTS", SHARED / "slurm-dev"))
REQUIRED = os.environ.get("FAIRSHARE_REQUIRE_SLURM") == "1"  # .ci/run: a missing Slurm fails, never skips
SLURM_DIR = os.environ.get("SLURM_DEV_DIR", "/tmp/slurm-dev")
USERS = ("fsalice", "fsbob")  # Unix users the teams' jobs run as
ALICE, BOB = USERS
cli = CliRunner()


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def slurm() -> Iterator[str]:
    """A running Slurm dev cluster (started if needed; .ci/run stops it) and the test users."""
    skip = pytest.fail if REQUIRED else pytest.skip
    if os.geteuid() != 0:
        skip("the Slurm tests need root: start-slurm.sh installs and starts slurmctld, slurmd and slurmdbd")
    script = SLURM_DEV / "start-slurm.sh"
    if not script.exists():
        skip(f"{script} is missing: the Slurm tests need ../shared/slurm-dev (or SLURM_DEV_SCRIPTS)")
    proc = subprocess.run(["bash", str(script), SLURM_DIR], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"start-slurm.sh failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    old_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = f"{SLURM_DIR}/etc/slurm.conf"
    created = []
    for user in USERS:
        if subprocess.run(["id", user], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "-M", "-s", "/bin/sh", user], check=True)
            created.append(user)
    try:
        yield default_cluster(Runner())
    finally:
        subprocess.run(["sacctmgr", "-i", "remove", "user", "where", f"name={','.join(USERS)}"], capture_output=True)
        for user in created:
            subprocess.run(["userdel", user], capture_output=True)
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf


@dataclass
class Box:
    """One test's corner of the cluster: its account prefix, its jobs, its extra accounts."""

    cluster: str
    prefix: str
    tmp: Path
    jobs: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # accounts the test made by hand

    def acct(self, node: str) -> str:
        return f"{self.prefix}{node}"

    syncer: Syncer = field(init=False)

    def __post_init__(self) -> None:
        self.syncer = Syncer(SlurmConfig(cluster=self.cluster, prefix=self.prefix), Runner(timeout=30))

    def state(self) -> ClusterState:
        return read_state(Runner(), self.cluster, tres=set())

    def lab(self, llama_h100: int = 1, org: dict[str, Any] | None = None, name: str = "lab") -> Path:
        """A scenario: llama asks for `llama_h100` H100s and gets them, opt asks for and gets 4 A100s."""
        org = org or {"name": "lab", "children": [{"name": "llama", "weight": 2}, {"name": "opt"}]}
        teams = {n["name"] for n in _walk(org)}
        requests = [
            {"id": "llama-run", "team": "llama", "gpus": llama_h100, "speed": {"H100": 1}},
            {"id": "opt-run", "team": "opt", "gpus": 4, "speed": {"A100": 1}},
        ]
        path = self.tmp / f"{name}.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "name": "slurm-test",
                    "pools": [{"name": "h100", "gpu": "H100", "gpus": 4}, {"name": "a100", "gpu": "A100", "gpus": 4}],
                    "org": org,
                    "requests": [r for r in requests if r["team"] in teams],
                }
            )
        )
        return path

    def sbatch(self, user: str, node: str, gres: str, seconds: int = 300) -> str:
        argv = [
            "runuser",
            "-u",
            user,
            "--",
            "sbatch",
            "--parsable",
            "-A",
            self.acct(node),
            f"--gres=gpu:{gres}",
            "-o",
            "/dev/null",
            "--chdir=/tmp",
            "--wrap",
            f"sleep {seconds}",
        ]
        deadline = time.monotonic() + 20
        while True:  # slurmctld learns a new association from slurmdbd within moments; a busy one times out
            p = subprocess.run(argv, capture_output=True, text=True, cwd="/tmp", timeout=60)
            if p.returncode == 0:
                self.jobs.append(p.stdout.strip().split(";")[0])
                return self.jobs[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"sbatch kept failing: {p.stderr}")
            time.sleep(0.25)


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for c in node.get("children", []):
        yield from _walk(c)


@pytest.fixture
def box(slurm: str, tmp_path: Path) -> Iterator[Box]:
    b = Box(slurm, f"fst{uuid.uuid4().hex[:5]}-", tmp_path)
    try:
        yield b
    finally:
        if b.jobs:
            subprocess.run(["scancel", *b.jobs], capture_output=True)
        listed = subprocess.run(
            ["sacctmgr", "-Pn", "show", "account", "format=account"], capture_output=True, text=True
        ).stdout.split()  # removed associations leave the account behind
        names = [a for a in listed if a.startswith(b.prefix) or a in b.extra]
        deadline = time.monotonic() + 20
        while names:  # an account with a job still ending cannot be removed yet
            p = subprocess.run(
                ["sacctmgr", "-i", "remove", "account", "where", f"name={','.join(names)}"],
                capture_output=True,
                text=True,
            )
            if p.returncode == 0 or "Nothing deleted" in p.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.5)


def job(job_id: str) -> tuple[str, str]:
    """(state, reason) as squeue shows them."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T|%r"], capture_output=True, text=True
    ).stdout
    state, _, reason = out.strip().partition("|")
    return state, reason


def wait_for_accounting(job_ids: list[str], timeout: float = 40) -> None:
    """Until sacct (slurmdbd) shows every job COMPLETED.  squeue reads the controller, which
    knows first; until the end record reaches the database, sacct still shows a job RUNNING and
    computes its elapsed time from the clock, so figures read earlier can change afterwards."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(
            ["sacct", "-Pn", "-X", "-j", ",".join(job_ids), "--format=JobID,State"], capture_output=True, text=True
        ).stdout
        states = dict(line.split("|", 1) for line in out.split())
        if len(states) == len(job_ids) and all(v == "COMPLETED" for v in states.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"sacct shows {states}, not every job COMPLETED after {timeout} s")
        time.sleep(0.3)


def wait_for(job_id: str, state: str, reason: str | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        now = job(job_id)
        if now[0] == state and (reason is None or now[1] == reason):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is {now}, not {state} {reason or ''} after {timeout} s")
        time.sleep(0.3)


# --- enforcement ----------------------------------------------------------------------------------


def test_a_job_over_the_teams_gpus_pends_until_a_sync_grows_its_allocation(box: Box) -> None:
    users = {"llama": {ALICE}, "opt": {BOB}}
    result = box.syncer.apply(from_file(box.lab(llama_h100=1)), users)
    assert result.verified and result.applied == 5  # 3 accounts, 2 user associations
    llama = box.state().accounts[box.acct("llama")]
    assert llama.parent == box.acct("lab") and llama.users == [ALICE]
    assert llama.grptres == {"gres/gpu": 1, "gres/gpu:h100": 1, "gres/gpu:a100": 0}
    assert (llama.shares, box.state().accounts[box.acct("opt")].shares) == ("200", "100")  # weights 2 : 1

    within = box.sbatch(ALICE, "llama", "h100:1")
    over = box.sbatch(ALICE, "llama", "h100:2")
    wrong_type = box.sbatch(ALICE, "llama", "a100:1")  # llama was given no A100
    wait_for(within, "RUNNING")
    wait_for(over, "PENDING", "AssocGrpGRES")
    wait_for(wrong_type, "PENDING", "AssocGrpGRES")

    result = box.syncer.apply(from_file(box.lab(llama_h100=3)), users)
    assert result.verified
    assert any("gres/gpu:h100 1 -> 3" in line for line in result.plan.changes)
    wait_for(over, "RUNNING", timeout=30)
    assert job(wrong_type) == ("PENDING", "AssocGrpGRES")


def test_a_second_apply_changes_nothing(box: Box) -> None:
    pub = from_file(box.lab())
    assert box.syncer.apply(pub, {"llama": {ALICE}}).applied == 4
    again = box.syncer.apply(pub, {"llama": {ALICE}})
    assert again.plan.commands == [] and again.applied == 0 and again.verified


def test_a_dry_run_prints_the_commands_and_changes_nothing(box: Box) -> None:
    box.syncer.apply(from_file(box.lab(llama_h100=1)))
    before = box.state()
    res = cli.invoke(app, ["sync", "slurm", str(box.lab(llama_h100=2)), "--prefix", box.prefix, "--dry-run"])
    assert res.exit_code == 0, res.output
    assert (
        f"sacctmgr -i modify account where name={box.acct('llama')} cluster={box.cluster} set "
        "GrpTRES=gres/gpu=2,gres/gpu:h100=2"
    ) in res.stdout
    assert "dry run: nothing changed" in res.stdout
    assert box.state() == before
    res = cli.invoke(app, ["sync", "slurm", str(box.lab()), "--prefix", box.prefix, "--dry-run", "--apply"])
    assert res.exit_code == 2 and "choose one of --dry-run and --apply" in res.stderr


def _restructured(box: Box) -> Path:
    """opt is dissolved; llama moves under a new group `research`, which also gets `vision`."""
    return box.lab(
        2,
        {
            "name": "lab",
            "children": [{"name": "research", "weight": 3, "children": [{"name": "llama"}, {"name": "vision"}]}],
        },
        name="restructured",
    )


def test_removals_come_first_and_a_restructured_tree_converges(box: Box) -> None:
    box.syncer.apply(from_file(box.lab()), {"llama": {ALICE}, "opt": {BOB}})
    p = box.syncer.plan(from_file(_restructured(box)), {"llama": {ALICE}})
    assert p.changes[0] == f"- account {box.acct('opt')} (under {box.acct('lab')}), with user {BOB}"
    assert p.commands[0].kind == "remove-account" and box.acct("opt") in str(p.commands[0])
    assert [c.kind for c in p.commands[1:]].count("remove-account") == 0
    box.syncer.apply(from_file(_restructured(box)), {"llama": {ALICE}})
    accounts = box.state().accounts
    assert accounts[box.acct("llama")].parent == box.acct("research")
    assert accounts[box.acct("research")].shares == "300" and box.acct("opt") not in accounts


def test_a_sync_stopped_after_any_command_leaves_exactly_the_rest_to_do(box: Box) -> None:
    box.syncer.apply(from_file(box.lab()))
    pub = from_file(_restructured(box))
    todo = box.syncer.plan(pub).commands
    assert len(todo) >= 6
    for k in (1, 2, 1):  # crash after k commands, three times over
        partial = box.syncer.apply(pub, limit=k)
        assert partial.applied == k and not partial.verified
        rest = box.syncer.plan(pub).commands
        assert rest == todo[k:]
        todo = rest
    assert box.syncer.apply(pub).verified


def test_a_killed_sync_converges_on_the_next_run(box: Box, tmp_path: Path) -> None:
    box.syncer.apply(from_file(box.lab()))
    slow = tmp_path / "bin"
    slow.mkdir()
    (slow / "sacctmgr").write_text(
        f'#!/bin/sh\ncase " $* " in *" -i "*) sleep 0.4;; esac\nexec {shutil.which("sacctmgr")} "$@"\n'
    )
    (slow / "sacctmgr").chmod(0o755)
    target = _restructured(box)
    todo = box.syncer.plan(from_file(target)).commands
    env = {**os.environ, "PATH": f"{slow}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "fairshare"),
            "sync",
            "slurm",
            str(target),
            "--prefix",
            box.prefix,
            "--apply",
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip().startswith("[3/"):  # two commands done, the third under way: kill it all
            os.killpg(proc.pid, signal.SIGKILL)
            break
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert box.syncer.plan(from_file(target)).commands == todo[2:]  # what the killed run did not do
    res = cli.invoke(app, ["sync", "slurm", str(target), "--prefix", box.prefix, "--apply"])
    assert res.exit_code == 0, res.output
    assert "read back: Slurm matches the allocation" in res.stdout


def test_accounts_fairshare_does_not_manage_are_left_alone(box: Box) -> None:
    box.syncer.apply(from_file(box.lab()))
    manual = f"man{box.prefix[3:-1]}"  # no prefix: the admin's
    outside = box.acct("outside")  # the prefix, but not under the managed root
    mine = f"own{box.prefix[3:-1]}"
    box.extra += [manual, mine]
    for account, parent in ((manual, box.acct("opt")), (outside, "root"), (mine, box.acct("lab"))):
        subprocess.run(
            [
                "sacctmgr",
                "-i",
                "add",
                "account",
                account,
                f"cluster={box.cluster}",
                f"parent={parent}",
                "GrpTRES=gres/gpu=1",
            ],
            check=True,
            capture_output=True,
        )
    before = box.state().accounts
    result = box.syncer.apply(from_file(box.lab(org={"name": "lab", "children": [{"name": "llama"}]})))
    after = box.state().accounts
    assert after["root"] == before["root"]
    for account in (manual, outside, mine):
        assert after[account] == before[account]
    assert box.acct("opt") in after  # it holds the admin's account, so it stays, with a warning
    assert any(box.acct("opt") in w and manual in w for w in result.plan.warnings)
    assert all(a not in str(c) for c in result.plan.commands for a in (manual, outside, mine, "name=root "))

    clash = box.lab(org={"name": "lab", "children": [{"name": "llama"}, {"name": "outside"}]}, name="clash")
    with pytest.raises(PlanError, match=f"account '{outside}' exists .* outside the managed root"):
        box.syncer.plan(from_file(clash))


def test_users_from_a_published_round_and_the_audit_log(box: Box, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    engine = make_engine(url)
    upgrade(engine)
    admin = wf.Actor("chair", (wf.Grant(wf.Role.admin, "lab"),))
    with session_factory(engine)() as s:
        import_scenario(s, load_scenario(box.lab()), "r1")
        rnd = s.scalars(select(m.Round)).one()
        for step in ("close", "propose", "publish"):
            step_round(s, admin, get_round(s, rnd.id), step, dt.datetime.now(dt.UTC))
        grant(s, ensure_member(s, "alice"), wf.Role.member, "llama")
        grant(s, ensure_member(s, "dave"), wf.Role.lead, "opt")  # no Unix user given for dave
        s.commit()
        round_id = rnd.id
    res = cli.invoke(
        app,
        [
            "sync",
            "slurm",
            "--round",
            str(round_id),
            "--users",
            f"alice={ALICE}",
            "--prefix",
            box.prefix,
            "--apply",
            "--db",
            url,
        ],
    )
    assert res.exit_code == 0, res.output
    assert "no Unix user given for dave" in res.stderr
    assert box.state().accounts[box.acct("llama")].users == [ALICE]
    with session_factory(engine)() as s:
        entry = s.scalars(select(m.AuditEntry).where(m.AuditEntry.action == "sync.slurm")).one()
    assert entry.actor.startswith("cli") and entry.after is not None
    assert entry.after["result"] == "ok" and entry.after["verified"] and len(entry.after["commands"]) == 4


def test_the_services_sync_on_publish_gives_members_user_associations_as_sync_users_does(
    box: Box, tmp_path: Path
) -> None:
    """`serve --sync slurm --slurm-users alice=...` (issue 15): the push after a publication manages the
    same user associations as `sync slurm --users`, read from the round's grants."""
    from fairshare.connectors.source import from_round
    from fairshare.service.ops.sync_hooks import hooks_for
    from fairshare.settings import load_settings

    engine = make_engine(f"sqlite:///{tmp_path / 'lab.db'}")
    upgrade(engine)
    admin = wf.Actor("chair", (wf.Grant(wf.Role.admin, "lab"),))
    with session_factory(engine)() as s:
        import_scenario(s, load_scenario(box.lab()), "r1")
        rnd = s.scalars(select(m.Round)).one()
        for step in ("close", "propose", "publish"):
            step_round(s, admin, get_round(s, rnd.id), step, dt.datetime.now(dt.UTC))
        grant(s, ensure_member(s, "alice"), wf.Role.member, "llama")
        grant(s, ensure_member(s, "dave"), wf.Role.lead, "opt")  # no Unix user given for dave
        s.commit()
        pub = from_round(s, rnd.id)
    settings = load_settings(
        {}, sync_on_publish=["slurm"], slurm_prefix=box.prefix, slurm_users=f"alice={ALICE}", database_url="sqlite://"
    )
    [(name, push)] = hooks_for(settings)
    summary = push(pub)
    assert name == "slurm" and summary["members_without_user"] == ["dave"]
    assert box.state().accounts[box.acct("llama")].users == [ALICE]


def test_a_bad_slurm_users_setting_is_refused_naming_the_option() -> None:
    from fairshare.service.ops.sync_hooks import hooks_for
    from fairshare.settings import load_settings

    settings = load_settings({}, sync_on_publish=["slurm"], slurm_users="alice", database_url="sqlite://")
    with pytest.raises(PlanError, match="--slurm-users .*'alice': write MEMBER=UNIXUSER"):
        hooks_for(settings)


# --- errors ---------------------------------------------------------------------------------------


def test_slurm_unreachable_or_missing_is_one_clear_error_with_exit_1(box: Box, tmp_path: Path) -> None:
    conf = Path(os.environ["SLURM_CONF"]).read_text()
    bad = tmp_path / "slurm.conf"
    bad.write_text(
        "\n".join(
            "AccountingStoragePort=1" if ln.startswith("AccountingStoragePort=") else ln for ln in conf.splitlines()
        )
        + "\n"
    )
    res = cli.invoke(app, ["sync", "slurm", str(box.lab()), "--prefix", box.prefix], env={"SLURM_CONF": str(bad)})
    assert res.exit_code == 1 and "cannot reach Slurm's accounting daemon (slurmdbd)" in res.stderr, res.output
    res = cli.invoke(app, ["sync", "slurm", str(box.lab()), "--prefix", box.prefix], env={"PATH": str(tmp_path)})
    assert res.exit_code == 1 and "sacctmgr is not installed or not on PATH" in res.stderr, res.output
    res = cli.invoke(app, ["sync", "slurm", str(box.lab()), "--gres-map", "H100=h200"])
    assert res.exit_code == 2 and "Slurm does not track gres/gpu:h200 (for H100)" in res.stderr, res.output


# --- usage ----------------------------------------------------------------------------------------


def test_usage_import_counts_gpu_hours_per_team_and_type_once(box: Box, tmp_path: Path) -> None:
    lab = box.lab(llama_h100=2)
    box.syncer.apply(from_file(lab), {"llama": {ALICE}})
    jobs = [box.sbatch(ALICE, "llama", "h100:2", seconds=2), box.sbatch(ALICE, "llama", "h100:1", seconds=1)]
    for j in jobs:
        wait_for(j, "COMPLETED", timeout=40)
    wait_for_accounting(jobs)  # the import reads sacct: compare with its final figures
    sacct = subprocess.run(
        ["sacct", "-Pn", "-X", "-j", ",".join(jobs), "--format=ElapsedRaw,AllocTRES"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    want = (
        sum(
            int(e) * int(t.split("gres/gpu:h100=")[1].split(",")[0]) for e, t in (ln.split("|") for ln in sacct.split())
        )
        / 3600
    )
    db = f"sqlite:///{tmp_path / 'usage.db'}"
    assert cli.invoke(app, ["import", str(lab), "--db", db]).exit_code == 0
    today = dt.datetime.now(dt.UTC).date().isoformat()
    for _ in range(2):  # importing the same period again replaces it
        res = cli.invoke(app, ["usage", "import", "slurm", "--since", today, "--prefix", box.prefix, "--db", db])
        assert res.exit_code == 0, res.output
        assert "llama" in res.stdout and "H100" in res.stdout
        with session_factory(make_engine(db))() as s:
            rows = s.scalars(select(m.Usage).where(m.Usage.source == f"slurm:{box.cluster}")).all()
        assert [(r.node, r.gpu) for r in rows] == [("llama", "H100")]
        assert rows[0].gpu_hours == pytest.approx(want) and want > 0
        assert rows[0].period_start.isoformat() == f"{today}T00:00:00+00:00"


# --- the planner and the usage arithmetic, without a cluster --------------------------------------


def _published(org: dict[str, Any], gpus: dict[str, dict[str, int]]) -> Published:
    scenario = Scenario.model_validate(
        {
            "name": "t",
            "pools": [{"name": "h", "gpu": "H100", "gpus": 8}, {"name": "a", "gpu": "A100", "gpus": 8}],
            "org": org,
        }
    )
    return Published(scenario, gpus, "test")


def _state(*accounts: tuple[str, str | None]) -> ClusterState:
    return ClusterState(
        "c",
        {name: Account(name, parent, "1", {}) for name, parent in accounts},
        {"gres/gpu", "gres/gpu:h100", "gres/gpu:a100"},
    )


def test_weights_become_integer_shares_and_every_gpu_type_is_capped() -> None:
    pub = _published(
        {"name": "lab", "children": [{"name": "big", "weight": 2.5}, {"name": "tiny", "weight": 0.001}]},
        {"lab": {"H100": 3}, "big": {"H100": 3}},
    )
    wanted = {w.name: w for w in wanted_accounts(pub, SlurmConfig())}
    assert (wanted["fs-lab"].shares, wanted["fs-big"].shares, wanted["fs-tiny"].shares) == (None, 250, 1)
    assert wanted["fs-tiny"].grptres == {"gres/gpu": 0, "gres/gpu:h100": 0, "gres/gpu:a100": 0}
    skip = {w.name: w for w in wanted_accounts(pub, SlurmConfig(gres_map=parse_gres_map("A100=-,H100=hopper")))}
    assert skip["fs-big"].grptres == {"gres/gpu": 3, "gres/gpu:hopper": 3}


def test_org_nodes_that_fold_to_one_account_name_are_an_error() -> None:
    pub = _published({"name": "lab", "children": [{"name": "Vision"}, {"name": "vision"}]}, {})
    with pytest.raises(PlanError, match="would both be Slurm account 'fs-vision'"):
        wanted_accounts(pub, SlurmConfig())


def test_an_account_holding_a_wanted_one_is_removed_after_the_move_and_one_holding_an_admins_is_kept() -> None:
    state = _state(
        ("root", None),
        ("fs-lab", "root"),
        ("fs-old", "fs-lab"),
        ("fs-llama", "fs-old"),
        ("manual", "fs-llama"),
        ("fs-gone", "fs-lab"),
        ("admins", "fs-gone"),
    )
    pub = _published({"name": "lab", "children": [{"name": "llama"}]}, {})
    p = plan(state, wanted_accounts(pub, SlurmConfig()), SlurmConfig())
    kinds = [(c.kind, c.argv[5] if c.kind != "add-account" else c.argv[4]) for c in p.commands]
    assert kinds == [
        ("modify-account", "name=fs-lab"),
        ("move-account", "name=fs-llama"),
        ("modify-account", "name=fs-llama"),
        ("remove-account", "name=fs-old"),
    ]
    assert p.changes[0] == "- account fs-old (under fs-lab); after moving out fs-llama"
    assert len(p.warnings) == 1 and "fs-gone" in p.warnings[0] and "admins" in p.warnings[0]


def test_an_archived_teams_account_is_retired_removed_once_no_job_runs_under_it() -> None:
    org = {"name": "lab", "children": [{"name": "llama"}, {"name": "opt"}]}
    pub = Published(_published(org, {}).scenario, {"llama": {"H100": 8}}, "test", retired=("opt",))
    assert [w.name for w in wanted_accounts(pub, SlurmConfig())] == ["fs-lab", "fs-llama"]
    state = _state(("root", None), ("fs-lab", "root"), ("fs-llama", "fs-lab"), ("fs-opt", "fs-lab"))
    state.accounts["fs-opt"].grptres = {"gres/gpu": 885, "gres/gpu:h100": 885}

    busy = ClusterState(state.cluster, state.accounts, state.tres, {"fs-opt": ["4242", "4243"]})
    p = plan(busy, wanted_accounts(pub, SlurmConfig()), SlurmConfig())
    assert not p.removals
    assert "~ account fs-opt: retired, GrpTRES gres/gpu=0,gres/gpu:h100=0 (jobs still running)" in p.changes
    assert any("4242, 4243" in w and "fs-opt" in w for w in p.warnings)

    idle = plan(state, wanted_accounts(pub, SlurmConfig()), SlurmConfig())
    assert [str(c) for c in idle.removals] == ["sacctmgr -i remove account where name=fs-opt cluster=c"]
    assert "- account fs-opt (under fs-lab)" in idle.changes


class _Sacct(Runner):
    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out

    def __call__(self, argv: Any, *, benign: Any = (), env: Any = None) -> str:
        assert env and env["TZ"] == "UTC"
        return self.out


def test_usage_is_counted_per_utc_day_and_gpu_type() -> None:
    out = (
        "1|fs-llama|cpu=1,gres/gpu:h100=2,gres/gpu=2|7200|2026-03-01T23:00:00|COMPLETED\n"
        "2|fs-llama|gres/gpu=3,gres/gpu:a100=1|3600|2026-03-02T10:00:00|COMPLETED\n"
        "3|fs-llama|cpu=4|3600|2026-03-02T10:00:00|COMPLETED\n"  # no GPU
        "4|fs-llama||0|Unknown|PENDING\n"
    )
    since = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    until = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)
    got = {(b.gres, b.start.day): (b.gpu_hours, b.end) for b in read_usage(_Sacct(out), "c", since, until)}
    day2 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    assert got == {
        ("h100", 1): (2.0, day2),
        ("h100", 2): (2.0, until),
        ("a100", 2): (1.0, until),
        ("", 2): (2.0, until),
    }  # 3 GPUs, 1 typed: 2 whose type sacct did not say
    assert gpu_of_gres("h100", SlurmConfig(), ["H100"]) == "H100" and gpu_of_gres("", SlurmConfig(), []) == "untyped"
