"""Make a Slurm cluster hold a plan: read its account tree, run the plan's `sacctmgr` commands, read back.

Syncing is a diff (slurm.plan) of the state read here against the wanted one, so whatever a
killed or failed run leaves behind, the next run plans what is still missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fairshare.connectors.slurm.plan import (
    SACCTMGR,
    Account,
    ClusterState,
    Command,
    Plan,
    PlanError,
    SlurmConfig,
    parse_tres,
    plan,
    wanted_accounts,
)
from fairshare.connectors.slurm.tools import Runner, SlurmError, split_rows

if TYPE_CHECKING:
    from fairshare.connectors.source import Published


def default_cluster(run: Runner) -> str:
    names = [r[0] for r in split_rows(run([SACCTMGR, "-Pn", "show", "cluster", "format=cluster"])) if r[0]]
    if len(names) != 1:
        raise PlanError(
            "slurmdbd knows "
            + (
                f"clusters {', '.join(names)}: choose one with --cluster"
                if names
                else "no cluster: register it (sacctmgr add cluster NAME) first"
            )
        )
    return names[0]


def read_state(run: Runner, cluster: str, tres: set[str] | None = None) -> ClusterState:
    """The cluster's account tree and user associations, and the TRES slurmdbd tracks (read
    unless given: they change only when slurm.conf does)."""
    out = run(
        [
            SACCTMGR,
            "-Pn",
            "show",
            "assoc",
            "where",
            f"cluster={cluster}",
            "format=account,user,parentname,share,grptres,lft",
        ]
    )
    rows = sorted(split_rows(out), key=lambda r: int(r[5]) if len(r) > 5 and r[5].isdigit() else 0)
    accounts: dict[str, Account] = {}
    users: list[tuple[str, str]] = []
    for r in rows:
        if len(r) < 6:
            raise SlurmError(f"unexpected sacctmgr output line {'|'.join(r)!r}")
        account, user, parent, shares, grptres, _ = r[:6]
        if user:
            users.append((account, user))
        else:
            accounts[account] = Account(account, parent or None, shares, parse_tres(grptres))
    if "root" not in accounts:
        raise PlanError(
            f"cluster {cluster!r} has no associations in slurmdbd: is it registered "
            "(sacctmgr show cluster)? Choose another with --cluster"
        )
    for account, user in users:
        if account in accounts:
            accounts[account].users.append(user)
    if tres is None:
        listed = split_rows(run([SACCTMGR, "-Pn", "show", "tres", "format=type,name"]))
        tres = {f"{t}/{n}" if n else t for t, n, *_ in listed}
    jobs: dict[str, list[str]] = {}  # running jobs per account: a retired account keeps them
    for row in split_rows(run(["squeue", "-h", f"--clusters={cluster}", "-t", "RUNNING", "-o", "%a|%i"])):
        if len(row) >= 2:  # (squeue --clusters heads its output with a "CLUSTER: name" line)
            jobs.setdefault(row[0].lower(), []).append(row[1])
    return ClusterState(cluster, accounts, tres, jobs)


# --- apply -----------------------------------------------------------------------------------

# sacctmgr exits 1 when a change is in place already.  The plan never asks for one, so when it
# happens another process made it between our read and our write; the read-back checks the result.
_BENIGN = {
    "remove-user": ("Nothing deleted",),
    "remove-account": ("Nothing deleted",),
    "add-account": ("Nothing new added",),
    "add-user": ("Nothing new added",),
    "move-account": ("Nothing modified",),
    "modify-account": ("Nothing modified",),
}


@dataclass
class SyncResult:
    plan: Plan
    applied: int = 0  # commands run
    verified: bool = False  # read back and found as wanted

    def summary(self) -> dict[str, object]:
        """For the audit log: what was synced and how it ended."""
        return {
            "cluster": self.plan.cluster,
            "root": self.plan.root,
            "changes": self.plan.changes,
            "commands": [str(c) for c in self.plan.commands],
            "applied": self.applied,
            "verified": self.verified,
            "warnings": self.plan.warnings,
        }


@dataclass
class Syncer:
    """Plans and applies one published allocation on one cluster."""

    cfg: SlurmConfig
    run: Runner = field(default_factory=Runner)
    _cluster: str | None = field(default=None, init=False, repr=False)
    _tres: set[str] | None = field(default=None, init=False, repr=False)

    def cluster(self) -> str:
        if self._cluster is None:
            self._cluster = self.cfg.cluster or default_cluster(self.run)
        return self._cluster

    def plan(
        self, pub: Published, users: Mapping[str, set[str]] | None = None, managed_users: set[str] | None = None
    ) -> Plan:
        state = read_state(self.run, self.cluster(), self._tres)
        self._tres = state.tres
        return plan(
            state, wanted_accounts(pub, self.cfg, state.tres), self.cfg, self._accounts(pub, users), managed_users
        )

    def _accounts(self, pub: Published, users: Mapping[str, set[str]] | None) -> dict[str, set[str]] | None:
        """Users per org node -> users per account."""
        if users is None:
            return None
        root = self.cfg.root_name(pub.scenario)
        names = {n.name for n in pub.scenario.nodes()}
        unknown = sorted(set(users) - names)
        if unknown:
            raise PlanError(f"users for unknown org nodes {', '.join(unknown)}")
        return {(root if n == pub.scenario.org.name else self.cfg.account(n)): set(u) for n, u in users.items()}

    def apply(
        self,
        pub: Published,
        users: Mapping[str, set[str]] | None = None,
        managed_users: set[str] | None = None,
        limit: int | None = None,
        progress: Callable[[Command], None] | None = None,
    ) -> SyncResult:
        """Run the plan's commands in order (only the first `limit` if given: a simulated crash),
        then read back and check that nothing is left to do."""
        p = self.plan(pub, users, managed_users)
        result = SyncResult(p)
        for cmd in p.commands[:limit]:
            if progress:
                progress(cmd)
            self.run(cmd.argv, benign=_BENIGN[cmd.kind])
            result.applied += 1
        if limit is not None and limit < len(p.commands):
            return result
        again = self.plan(pub, users, managed_users)
        if again.commands:
            raise SlurmError(
                f"read back after the sync, cluster {p.cluster} still differs from the allocation: "
                + "; ".join(again.changes)
                + ". Another process may be changing the same accounts; "
                "sync again"
            )
        result.verified = True
        return result
