"""Enforce a published allocation in Slurm, and read GPU usage back from Slurm's accounting.

Slurm is driven through its command-line tools (`sacctmgr`, `sacct`): pyslurm does not support
the Slurm 22.05 that Debian ships, and the tools are what an admin would type anyway.

The mapping (docs/enforcement.md):

- every org node becomes an account, named prefix + node name (lower case: Slurm folds account
  names), with the same parent; the org root's account is the *managed root*, created under
  Slurm's `root` unless it exists already (then it stays where the admin put it);
- a node's GPUs become `GrpTRES=gres/gpu=TOTAL,gres/gpu:TYPE=N,...` with every enforced type
  listed, 0 included, so a team cannot run on a type it was not given;
- a node's weight becomes `Fairshare=round(weight * share_scale)` (at least 1).  Slurm's shares
  are integers that only count relative to the siblings', so a fixed scale keeps the ratios to
  1 % and a node's shares change only when its own weight does (a per-family normalisation
  would rewrite every sibling whenever one of them changes).  The managed root's shares are the
  admin's: its siblings are accounts fairshare knows nothing about.

Syncing is a diff of the current state (`sacctmgr -Pn show assoc`) against the wanted one, so
whatever state a killed or failed run leaves behind, the next run plans what is still missing.
It manages only the managed root and the accounts under it whose names carry the prefix; it
never removes an account that holds one it does not manage (removing an association removes
its whole subtree in Slurm).
"""

from __future__ import annotations

from fairshare.errors import Unavailable, UserError

import datetime as dt
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fairshare.connectors.source import Published
from fairshare.scenario import OrgNode, Scenario
from fairshare.store import models as m

SACCTMGR = "sacctmgr"
SACCT = "sacct"
GPU = "gres/gpu"

# --- errors ----------------------------------------------------------------------------------


class SlurmError(Unavailable):
    """Slurm could not do what was asked; the message says what to check."""


class SlurmMissing(SlurmError):
    """The Slurm command-line tools are not installed (or not on PATH)."""


class SlurmUnreachable(SlurmError):
    """The tools run, but slurmdbd (or slurmctld) does not answer."""


class SlurmCommandFailed(SlurmError):
    """A command ran and Slurm refused it."""

    def __init__(self, argv: Sequence[str], code: int, output: str) -> None:
        self.argv, self.code, self.output = list(argv), code, output
        super().__init__(f"`{shlex.join(argv)}` failed (exit {code}): {output.strip() or 'no message'}")


class PlanError(UserError, ValueError):
    """The wanted state cannot be planned (configuration or a conflict the user must resolve)."""


# --- running commands ------------------------------------------------------------------------

_UNREACHABLE = re.compile(
    r"connection refused|persistent connection|problem talking to the database|unable to contact slurm controller|"
    r"socket timed out|zero bytes were transmitted|unable to connect|connect failure|munge", re.I)


class Runner:
    """Runs Slurm's tools: a timeout on each, exit code and stderr checked, errors that say what to do.

    `log` (if given) sees every command line before it runs."""

    def __init__(self, timeout: float = 60.0, env: Mapping[str, str] | None = None,
                 log: Callable[[list[str]], None] | None = None) -> None:
        self.timeout = timeout
        self.env = dict(os.environ if env is None else env)
        self.log = log

    def __call__(self, argv: Sequence[str], *, benign: Iterable[str] = (), env: Mapping[str, str] | None = None) -> str:
        """Run `argv` and return its stdout.  `benign`: stdout messages that make a non-zero exit
        a success; `env`: variables to add for this command."""
        argv = list(argv)
        if self.log:
            self.log(argv)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout,
                                  env={**self.env, **(env or {})}, stdin=subprocess.DEVNULL)
        except FileNotFoundError as e:
            raise SlurmMissing(f"{argv[0]} is not installed or not on PATH: install Slurm's client tools "
                               "(Debian: apt install slurm-client) on this machine, or run fairshare where they are") from e
        except subprocess.TimeoutExpired as e:
            raise SlurmUnreachable(f"`{shlex.join(argv)}` did not finish within {self.timeout:g} s: is slurmdbd "
                                   "running and reachable from here (AccountingStorageHost in slurm.conf)?") from e
        text = (proc.stderr + "\n" + proc.stdout).strip()
        if proc.returncode != 0:
            if "configuration source" in text or "fetch_config" in text:
                raise SlurmUnreachable(f"{argv[0]} finds no slurm.conf for this cluster: set SLURM_CONF to its path "
                                       "(or install it as /etc/slurm/slurm.conf)")
            if _UNREACHABLE.search(text):
                first = next((ln for ln in text.splitlines() if ln.strip()), text)
                raise SlurmUnreachable(f"cannot reach Slurm's accounting daemon (slurmdbd): {first.strip()}. Check that "
                                       "slurmdbd and munged are running and that SLURM_CONF names this cluster's slurm.conf")
            if any(msg in proc.stdout for msg in benign):
                return proc.stdout
            raise SlurmCommandFailed(argv, proc.returncode, text)
        if re.search(r"\berror:", proc.stderr):
            raise SlurmCommandFailed(argv, proc.returncode, proc.stderr)
        return proc.stdout


def _rows(output: str) -> list[list[str]]:
    return [ln.split("|") for ln in output.splitlines() if ln.strip()]


# --- configuration ---------------------------------------------------------------------------

_ACCOUNT_CHARS = re.compile(r"^[a-z0-9_.\-]*$")


@dataclass(frozen=True)
class SlurmConfig:
    cluster: str | None = None  # None: the only cluster registered in slurmdbd
    prefix: str = "fs-"
    root_account: str | None = None  # the org root's account; None: prefix + the root's name
    gres_map: Mapping[str, str | None] = field(default_factory=dict)  # GPU type -> gres type; None: not enforced
    share_scale: int = 100

    def __post_init__(self) -> None:
        if not _ACCOUNT_CHARS.match(self.prefix.lower()):
            raise PlanError(f"prefix {self.prefix!r}: use letters, digits, '_', '.' or '-' only")
        if self.root_account is not None and (not self.root_account or self.root_account.lower() == "root"
                                              or not _ACCOUNT_CHARS.match(self.root_account.lower())):
            raise PlanError(f"root account {self.root_account!r}: name an account other than Slurm's `root`, "
                            "made of letters, digits, '_', '.' or '-'")

    def account(self, node: str) -> str:
        return (self.prefix + node).lower()

    def root_name(self, scenario: Scenario) -> str:
        return (self.root_account or self.account(scenario.org.name)).lower()

    def gres_type(self, gpu: str) -> str | None:
        """The Slurm gres type of a fairshare GPU type (default: lower case); None: not enforced."""
        if gpu in self.gres_map:
            return self.gres_map[gpu]
        return gpu.lower()

    def managed(self, account: str, root: str) -> bool:
        return account == root or account.startswith(self.prefix.lower())


def parse_gres_map(text: str | None) -> dict[str, str | None]:
    """`H100=h100,A100=a100,V100=-`: fairshare GPU type = Slurm gres type ('-' or empty: not enforced)."""
    out: dict[str, str | None] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        gpu, sep, gres = item.partition("=")
        gpu, gres = gpu.strip(), gres.strip()
        if not sep or not gpu:
            raise PlanError(f"--gres-map entry {item.strip()!r}: write TYPE=GRES, e.g. H100=h100 (or V100=- to skip)")
        if gres and not re.match(r"^[A-Za-z0-9_.\-]+$", gres):
            raise PlanError(f"--gres-map entry {item.strip()!r}: {gres!r} is not a gres type name")
        out[gpu] = None if gres in ("", "-") else gres
    return out


# --- current state ---------------------------------------------------------------------------


@dataclass
class Account:
    """One account's association on the cluster, as sacctmgr shows it."""

    name: str
    parent: str | None  # None for Slurm's root
    shares: str  # "1", "100", or "parent"
    grptres: dict[str, int]
    users: list[str] = field(default_factory=list)


@dataclass
class ClusterState:
    cluster: str
    accounts: dict[str, Account]  # in tree order (sacctmgr's lft)
    tres: set[str]  # TRES slurmdbd tracks, e.g. "gres/gpu:h100"

    def children(self, name: str) -> list[str]:
        return [a.name for a in self.accounts.values() if a.parent == name]

    def subtree(self, name: str) -> list[str]:
        """`name` and every account below it, parents first."""
        out = [name]
        for child in self.children(name):
            out += self.subtree(child)
        return out

    def depth(self, name: str) -> int:
        d, parent = 0, self.accounts[name].parent
        while parent is not None and parent in self.accounts:
            d, parent = d + 1, self.accounts[parent].parent
        return d


def parse_tres(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in text.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            out[key] = int(value)
    return out


def default_cluster(run: Runner) -> str:
    names = [r[0] for r in _rows(run([SACCTMGR, "-Pn", "show", "cluster", "format=cluster"])) if r[0]]
    if len(names) != 1:
        raise PlanError("slurmdbd knows " + (f"clusters {', '.join(names)}: choose one with --cluster" if names
                                             else "no cluster: register it (sacctmgr add cluster NAME) first"))
    return names[0]


def read_state(run: Runner, cluster: str, tres: set[str] | None = None) -> ClusterState:
    """The cluster's account tree and user associations, and the TRES slurmdbd tracks (read
    unless given: they change only when slurm.conf does)."""
    out = run([SACCTMGR, "-Pn", "show", "assoc", "where", f"cluster={cluster}",
               "format=account,user,parentname,share,grptres,lft"])
    rows = sorted(_rows(out), key=lambda r: int(r[5]) if len(r) > 5 and r[5].isdigit() else 0)
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
        raise PlanError(f"cluster {cluster!r} has no associations in slurmdbd: is it registered "
                        "(sacctmgr show cluster)? Choose another with --cluster")
    for account, user in users:
        if account in accounts:
            accounts[account].users.append(user)
    if tres is None:
        tres = {f"{t}/{n}" if n else t for t, n, *_ in _rows(run([SACCTMGR, "-Pn", "show", "tres", "format=type,name"]))}
    return ClusterState(cluster, accounts, tres)


# --- wanted state ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Wanted:
    node: str
    name: str
    parent: str  # for the managed root: where to create it if it is missing
    shares: int | None  # None: not managed (the managed root)
    grptres: dict[str, int]


def wanted_accounts(pub: Published, cfg: SlurmConfig, tres: set[str] | None = None) -> list[Wanted]:
    """The account tree a published allocation asks for, parents first.  With `tres` (what
    slurmdbd tracks), every GRES it would set is checked to exist there."""
    s = pub.scenario
    types = [(gpu, cfg.gres_type(gpu)) for gpu in s.gpu_types]
    enforced = [(gpu, g) for gpu, g in types if g]
    if tres is not None:
        missing = [(gpu, f"{GPU}:{g}") for gpu, g in enforced if f"{GPU}:{g}" not in tres]
        if GPU not in tres or missing:
            what = ", ".join(f"{t} (for {gpu})" for gpu, t in missing) or GPU
            raise PlanError(f"Slurm does not track {what}: add it to AccountingStorageTRES in slurm.conf (and the "
                            "GPUs to gres.conf), map the type to a gres type Slurm has with --gres-map TYPE=gres, "
                            "or leave it unenforced with --gres-map TYPE=-")
    root = cfg.root_name(s)
    out: list[Wanted] = []
    seen: dict[str, str] = {}

    def visit(node: OrgNode, parent: str) -> None:
        name = root if node is s.org else cfg.account(node.name)
        if name in seen or name == "root":
            raise PlanError(f"org nodes {seen.get(name, 'root')!r} and {node.name!r} would both be Slurm account "
                            f"{name!r} (Slurm folds names to lower case): rename one, or change --prefix")
        seen[name] = node.name
        gpus = pub.node_gpus.get(node.name, {})
        tres_want = {GPU: sum(gpus.get(gpu, 0) for gpu, _ in enforced)}
        for gpu, g in enforced:
            tres_want[f"{GPU}:{g}"] = tres_want.get(f"{GPU}:{g}", 0) + gpus.get(gpu, 0)
        shares = None if node is s.org else max(1, round(node.weight * cfg.share_scale))
        out.append(Wanted(node.name, name, parent, shares, tres_want))
        for child in node.children:
            visit(child, name)

    visit(s.org, "root")
    return out


# --- the plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    kind: str  # remove-user | remove-account | add-account | move-account | modify-account | add-user

    def __str__(self) -> str:
        return shlex.join(self.argv)


@dataclass
class Plan:
    cluster: str
    root: str  # the managed root account
    changes: list[str]  # the diff, one line each; removals first
    commands: list[Command]  # in the order they must run
    warnings: list[str]
    wanted: list[Wanted]

    @property
    def removals(self) -> list[Command]:
        return [c for c in self.commands if c.kind.startswith("remove")]


def _fmt_tres(tres: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in tres.items())


def _tres_diff(have: Mapping[str, int], want: Mapping[str, int]) -> dict[str, int]:
    """The GrpTRES settings to change: every GPU TRES (ours) that differs; -1 clears one we no longer
    set.  Other TRES (cpu, mem, ...) are the admin's and are left alone."""
    keys = list(want) + sorted(k for k in have if (k == GPU or k.startswith(GPU + ":")) and k not in want)
    return {k: want.get(k, -1) for k in keys if have.get(k, -1) != want.get(k, -1)}


def plan(state: ClusterState, wanted: list[Wanted], cfg: SlurmConfig,
         users: Mapping[str, set[str]] | None = None, managed_users: set[str] | None = None) -> Plan:
    """Diff `state` against `wanted`: the exact sacctmgr commands that make the cluster match.

    `users` maps an account to the Unix users that should have an association with it;
    `managed_users` are the users fairshare manages (default: all named in `users`): their
    associations on managed accounts that are not wanted are removed.  Without `users`, user
    associations are left alone.

    Order: user removals; removals of unwanted accounts that hold nothing wanted (deepest
    first); then, parents first, each wanted account's add, move and modify and its users' adds;
    last, removals of unwanted accounts that held a wanted one (moved out by then)."""
    c = state.cluster
    root = wanted[0].name
    wanted_names = {w.name for w in wanted}
    have = state.accounts
    managed_tree = set(state.subtree(root)) if root in have else set()

    for w in wanted[1:]:
        if w.name in have and w.name not in managed_tree:
            where = have[w.name].parent
            raise PlanError(f"account {w.name!r} exists on cluster {c} under {where!r}, outside the managed root "
                            f"{root!r}: fairshare does not touch accounts it does not manage. Remove or rename it, "
                            "or choose another --prefix")
    managed = [a for a in (state.subtree(root) if root in have else []) if cfg.managed(a, root)]
    unwanted = [a for a in managed if a not in wanted_names]

    removal_lines: list[str] = []
    other_lines: list[str] = []
    warnings: list[str] = []
    first: list[Command] = []
    middle: list[Command] = []
    last: list[Command] = []

    def sacctmgr(*args: str) -> tuple[str, ...]:
        return (SACCTMGR, "-i", *args)

    # user associations of managed users on wanted accounts that should go
    want_users = {a: set(u) for a, u in (users or {}).items()}
    ours = managed_users if managed_users is not None else {u for us in want_users.values() for u in us}
    if users is not None:
        for w in wanted:
            if w.name in have:
                for u in sorted(set(have[w.name].users) & ours - want_users.get(w.name, set())):
                    first.append(Command(sacctmgr("remove", "user", "where", f"name={u}", f"account={w.name}",
                                                  f"cluster={c}"), "remove-user"))
                    removal_lines.append(f"- user {u} on account {w.name}")

    def holds(a: str) -> tuple[list[str], list[str]]:
        """What removing `a` would take with it: accounts fairshare does not manage, and wanted
        ones (which move out first, with whatever they hold)."""
        foreign: list[str] = []
        held: list[str] = []
        for child in state.children(a):
            if child in wanted_names:
                held.append(child)
            elif not cfg.managed(child, root):
                foreign.append(child)
            else:
                f, h = holds(child)
                foreign, held = foreign + f, held + h
        return foreign, held

    # unwanted managed accounts, deepest first
    for a in sorted(unwanted, key=lambda a: -state.depth(a)):
        foreign, held = holds(a)
        if foreign:
            warnings.append(f"account {a} is no longer wanted but is not removed: it holds "
                            f"{', '.join(foreign)}, which fairshare does not manage (removing {a} would remove "
                            "them too); move them elsewhere and sync again")
            continue
        goes = [f"user {u}" for u in have[a].users]
        removal_lines.append(f"- account {a} (under {have[a].parent})" + (f", with {', '.join(goes)}" if goes else "")
                             + (f"; after moving out {', '.join(held)}" if held else ""))
        cmd = Command(sacctmgr("remove", "account", "where", f"name={a}", f"cluster={c}"), "remove-account")
        (last if held else first).append(cmd)

    # wanted accounts, parents first
    for w in wanted:
        cur = have.get(w.name)
        if cur is None:
            args = ["add", "account", w.name, f"cluster={c}", f"parent={w.parent}"]
            if w.shares is not None:
                args.append(f"fairshare={w.shares}")
            args.append(f"GrpTRES={_fmt_tres(w.grptres)}")
            middle.append(Command(sacctmgr(*args), "add-account"))
            other_lines.append(f"+ account {w.name} under {w.parent}: "
                               + (f"Fairshare={w.shares} " if w.shares is not None else "") + f"GrpTRES={_fmt_tres(w.grptres)}")
        else:
            if w is not wanted[0] and cur.parent != w.parent:
                middle.append(Command(sacctmgr("modify", "account", "where", f"name={w.name}", f"cluster={c}",
                                               "set", f"parent={w.parent}"), "move-account"))
                other_lines.append(f"~ account {w.name}: parent {cur.parent} -> {w.parent}")
            sets: list[str] = []
            what: list[str] = []
            if w.shares is not None and cur.shares != str(w.shares):
                sets.append(f"fairshare={w.shares}")
                what.append(f"Fairshare {cur.shares} -> {w.shares}")
            tres = _tres_diff(cur.grptres, w.grptres)
            if tres:
                sets.append(f"GrpTRES={_fmt_tres(tres)}")
                what.append("GrpTRES " + ", ".join(
                    f"{k} {cur.grptres.get(k, 'unset')} -> {'unset' if v == -1 else v}" for k, v in tres.items()))
            if sets:
                middle.append(Command(sacctmgr("modify", "account", "where", f"name={w.name}", f"cluster={c}",
                                               "set", *sets), "modify-account"))
                other_lines.append(f"~ account {w.name}: " + "; ".join(what))
        if users is not None:
            present = set(cur.users) if cur else set()
            for u in sorted(want_users.get(w.name, set()) - present):
                middle.append(Command(sacctmgr("add", "user", u, f"account={w.name}", f"cluster={c}"), "add-user"))
                other_lines.append(f"+ user {u} on account {w.name}")

    return Plan(c, root, removal_lines + other_lines, first + middle + last, warnings, wanted)


# --- apply -----------------------------------------------------------------------------------

# sacctmgr exits 1 when a change is in place already.  The plan never asks for one, so when it
# happens another process made it between our read and our write; the read-back checks the result.
_BENIGN = {"remove-user": ("Nothing deleted",), "remove-account": ("Nothing deleted",),
           "add-account": ("Nothing new added",), "add-user": ("Nothing new added",),
           "move-account": ("Nothing modified",), "modify-account": ("Nothing modified",)}


@dataclass
class SyncResult:
    plan: Plan
    applied: int = 0  # commands run
    verified: bool = False  # read back and found as wanted

    def summary(self) -> dict[str, object]:
        """For the audit log: what was synced and how it ended."""
        return {"cluster": self.plan.cluster, "root": self.plan.root, "changes": self.plan.changes,
                "commands": [str(c) for c in self.plan.commands], "applied": self.applied,
                "verified": self.verified, "warnings": self.plan.warnings}


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

    def plan(self, pub: Published, users: Mapping[str, set[str]] | None = None,
             managed_users: set[str] | None = None) -> Plan:
        state = read_state(self.run, self.cluster(), self._tres)
        self._tres = state.tres
        return plan(state, wanted_accounts(pub, self.cfg, state.tres), self.cfg, self._accounts(pub, users),
                    managed_users)

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

    def apply(self, pub: Published, users: Mapping[str, set[str]] | None = None,
              managed_users: set[str] | None = None, limit: int | None = None,
              progress: Callable[[Command], None] | None = None) -> SyncResult:
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
            raise SlurmError(f"read back after the sync, cluster {p.cluster} still differs from the allocation: "
                             + "; ".join(again.changes) + ". Another process may be changing the same accounts; "
                             "sync again")
        result.verified = True
        return result


def users_from_store(session: Session, pub: Published, unix_user: Mapping[str, str]) -> tuple[dict[str, set[str]], list[str]]:
    """Org node -> Unix users: members with a member or lead grant on a node of the tree, named by
    the `unix_user` mapping (member -> Unix user).  Returns the users and the members left out for
    want of a mapping."""
    nodes = {n.name for n in pub.scenario.nodes()}
    out: dict[str, set[str]] = {}
    unmapped: set[str] = set()
    rows = session.execute(select(m.Member.name, m.Node.name).join(m.Grant, m.Grant.member_id == m.Member.id)
                           .join(m.Node, m.Node.id == m.Grant.node_id).where(m.Grant.role.in_(("member", "lead"))))
    for member, node in rows:
        if node not in nodes:
            continue
        if member in unix_user:
            out.setdefault(node, set()).add(unix_user[member])
        else:
            unmapped.add(member)
    return out, sorted(unmapped)


# --- usage -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageBucket:
    account: str
    gres: str  # Slurm gres type, or "" for GPUs whose type sacct did not report
    start: dt.datetime  # a UTC day
    end: dt.datetime  # the day's end, or the import's end for the last (partial) day
    gpu_hours: float


def day_floor(t: dt.datetime) -> dt.datetime:
    t = t.astimezone(dt.timezone.utc)
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _sacct_time(text: str) -> dt.datetime | None:
    if not text or text in ("Unknown", "None"):
        return None
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


def read_usage(run: Runner, cluster: str, since: dt.datetime, until: dt.datetime) -> list[UsageBucket]:
    """GPU-hours per account, gres type and UTC day between `since` (floored to its day) and `until`,
    from `sacct --allocations`: each job's AllocTRES GPUs times the part of its run time
    (Start + Elapsed) that falls in each day.  Every day from the first to `until` is complete,
    so storing them in place of what was there never counts a GPU-hour twice."""
    start = day_floor(since)
    fmt = "%Y-%m-%dT%H:%M:%S"
    out = run([SACCT, "-Pn", "--allocations", "--allusers", f"--clusters={cluster}",
               f"--starttime={start.strftime(fmt)}", f"--endtime={until.astimezone(dt.timezone.utc).strftime(fmt)}",
               "--format=JobID,Account,AllocTRES,ElapsedRaw,Start,State"],
              env={"TZ": "UTC", "SLURM_TIME_FORMAT": "standard"})  # times in UTC, ISO 8601
    hours: dict[tuple[str, str, dt.datetime], float] = {}
    for r in _rows(out):
        if len(r) < 6:
            raise SlurmError(f"unexpected sacct output line {'|'.join(r)!r}")
        _, account, alloc, elapsed, began, _state = r[:6]
        t0 = _sacct_time(began)
        if t0 is None or not elapsed.isdigit():
            continue
        tres = parse_tres(alloc)
        typed = {k.split(":", 1)[1]: n for k, n in tres.items() if k.startswith(GPU + ":")}
        rest = tres.get(GPU, 0) - sum(typed.values())
        if rest > 0:
            typed[""] = rest
        if not typed:
            continue
        t1 = min(t0 + dt.timedelta(seconds=int(elapsed)), until)
        t = max(t0, start)
        while t < t1:
            day = day_floor(t)
            seg_end = min(day + dt.timedelta(days=1), t1)
            for gres, n in typed.items():
                key = (account, gres, day)
                hours[key] = hours.get(key, 0.0) + n * (seg_end - t).total_seconds() / 3600
            t = seg_end
    return [UsageBucket(a, g, d, min(d + dt.timedelta(days=1), until), h)
            for (a, g, d), h in sorted(hours.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1]))]


def node_of_account(account: str, cfg: SlurmConfig, nodes: Iterable[str], root_node: str | None = None) -> str | None:
    """The org node a managed account stands for: None for accounts without the prefix, and,
    when the org's nodes are known, for accounts that name none of them."""
    by_lower = {n.lower(): n for n in nodes}
    if cfg.root_account and root_node and account == cfg.root_account.lower():
        return root_node
    prefix = cfg.prefix.lower()
    if not account.startswith(prefix) or account == prefix:
        return None
    rest = account[len(prefix):]
    return by_lower.get(rest) if by_lower else rest


def gpu_of_gres(gres: str, cfg: SlurmConfig, gpu_types: Iterable[str]) -> str:
    """The fairshare GPU type of a Slurm gres type: the --gres-map's inverse, else a known type that
    maps to it by default (lower case), else the gres type in upper case."""
    if not gres:
        return "untyped"
    for gpu, g in cfg.gres_map.items():
        if g == gres:
            return gpu
    for gpu in gpu_types:
        if cfg.gres_type(gpu) == gres:
            return gpu
    return gres.upper()


def store_usage(session: Session, buckets: list[UsageBucket], cfg: SlurmConfig, cluster: str,
                since: dt.datetime, until: dt.datetime) -> dict[str, object]:
    """Replace the source's usage rows for every day from `since`'s to `until` by `buckets`:
    a re-import of the same (or an overlapping) period replaces, never adds.  The caller commits."""
    source = f"slurm:{cluster}"
    nodes = list(session.scalars(select(m.Node.name)))
    root = session.scalar(select(m.Node.name).where(m.Node.parent_id.is_(None)))
    gpu_types = list(dict.fromkeys(session.scalars(select(m.Pool.gpu))))
    first = day_floor(since)
    session.execute(delete(m.Usage).where(m.Usage.source == source, m.Usage.period_start >= first,
                                          m.Usage.period_start < until))
    now = dt.datetime.now(dt.timezone.utc)
    rows: dict[tuple[str, str, dt.datetime], m.Usage] = {}
    skipped: dict[str, float] = {}
    for b in buckets:
        node = node_of_account(b.account, cfg, nodes, root)
        if node is None:
            skipped[b.account] = skipped.get(b.account, 0.0) + b.gpu_hours
            continue
        gpu = gpu_of_gres(b.gres, cfg, gpu_types)
        key = (node, gpu, b.start)
        if key in rows:
            rows[key].gpu_hours += b.gpu_hours
        else:
            rows[key] = m.Usage(source=source, node=node, gpu=gpu, period_start=b.start, period_end=b.end,
                                gpu_hours=b.gpu_hours, imported_at=now)
    session.add_all(rows.values())
    session.flush()
    totals: dict[tuple[str, str], float] = {}
    for (node, gpu, _), row in rows.items():
        totals[(node, gpu)] = totals.get((node, gpu), 0.0) + row.gpu_hours
    return {"source": source, "from": first.isoformat(), "until": until.isoformat(), "rows": len(rows),
            "totals": {f"{n}/{g}": round(h, 4) for (n, g), h in sorted(totals.items())},
            "skipped_accounts": {a: round(h, 4) for a, h in sorted(skipped.items())}}
