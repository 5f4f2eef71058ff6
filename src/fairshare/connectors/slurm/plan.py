"""What Slurm should hold for a published allocation, and the diff that gets it there: pure.

No subprocess here: the current state comes in as a `ClusterState` (read by `apply.read_state`),
the result is a `Plan` of exact `sacctmgr` command lines (run by `apply.Syncer`).

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

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fairshare.errors import UserError
from fairshare.scenario import OrgNode, Scenario

if TYPE_CHECKING:
    from fairshare.connectors.source import Published

SACCTMGR = "sacctmgr"
GPU = "gres/gpu"


class PlanError(UserError, ValueError):
    """The wanted state cannot be planned (configuration or a conflict the user must resolve)."""


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
        if self.root_account is not None and (
            not self.root_account
            or self.root_account.lower() == "root"
            or not _ACCOUNT_CHARS.match(self.root_account.lower())
        ):
            raise PlanError(
                f"root account {self.root_account!r}: name an account other than Slurm's `root`, "
                "made of letters, digits, '_', '.' or '-'"
            )

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


def parse_user_map(text: str | None, option: str = "--users") -> dict[str, str]:
    """`alice=alice,bob=bsmith`: fairshare member = Unix user (jobs run under a real uid)."""
    pairs: dict[str, str] = {}
    for item in (text or "").split(","):
        if item.strip():
            member, sep, user = item.partition("=")
            if not sep or not member.strip() or not user.strip():
                raise PlanError(f"{option} entry {item.strip()!r}: write MEMBER=UNIXUSER, e.g. alice=alice")
            pairs[member.strip()] = user.strip()
    return pairs


def unix_users(pub: Published, unix_user: Mapping[str, str]) -> tuple[dict[str, set[str]], list[str]]:
    """Org node -> Unix users: the members with a member or lead grant on a node of the round's tree,
    named by the `unix_user` mapping (member -> Unix user).  Returns the users and the members left
    out for want of a mapping."""
    nodes = {n.name for n in pub.scenario.nodes()}
    out: dict[str, set[str]] = {}
    unmapped: set[str] = set()
    for node, members in pub.members.items():
        if node not in nodes:
            continue
        for member in members:
            if member in unix_user:
                out.setdefault(node, set()).add(unix_user[member])
            else:
                unmapped.add(member)
    return out, sorted(unmapped)


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
    jobs: dict[str, list[str]] = field(default_factory=dict)  # account -> its running or pending job ids

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
            raise PlanError(
                f"Slurm does not track {what}: add it to AccountingStorageTRES in slurm.conf (and the "
                "GPUs to gres.conf), map the type to a gres type Slurm has with --gres-map TYPE=gres, "
                "or leave it unenforced with --gres-map TYPE=-"
            )
    root = cfg.root_name(s)
    out: list[Wanted] = []
    seen: dict[str, str] = {}

    retired = set(pub.retired)

    def visit(node: OrgNode, parent: str) -> None:
        if node.name in retired:  # archived: its account (and its subtree's) is not wanted any more
            return
        name = root if node is s.org else cfg.account(node.name)
        if name in seen or name == "root":
            raise PlanError(
                f"org nodes {seen.get(name, 'root')!r} and {node.name!r} would both be Slurm account "
                f"{name!r} (Slurm folds names to lower case): rename one, or change --prefix"
            )
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


def plan(
    state: ClusterState,
    wanted: list[Wanted],
    cfg: SlurmConfig,
    users: Mapping[str, set[str]] | None = None,
    managed_users: set[str] | None = None,
) -> Plan:
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
            raise PlanError(
                f"account {w.name!r} exists on cluster {c} under {where!r}, outside the managed root "
                f"{root!r}: fairshare does not touch accounts it does not manage. Remove or rename it, "
                "or choose another --prefix"
            )
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
                    first.append(
                        Command(
                            sacctmgr("remove", "user", "where", f"name={u}", f"account={w.name}", f"cluster={c}"),
                            "remove-user",
                        )
                    )
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
            warnings.append(
                f"account {a} is no longer wanted but is not removed: it holds "
                f"{', '.join(foreign)}, which fairshare does not manage (removing {a} would remove "
                "them too); move them elsewhere and sync again"
            )
            continue
        running = [j for b in state.subtree(a) for j in state.jobs.get(b, [])]
        if running:  # retired, but jobs still run under it: no GPUs from now on, removed at a later sync
            zero = {k: 0 for k in have[a].grptres if k == GPU or k.startswith(GPU + ":")} or {GPU: 0}
            if any(have[a].grptres.get(k) != 0 for k in zero):
                middle.append(
                    Command(
                        sacctmgr(
                            "modify",
                            "account",
                            "where",
                            f"name={a}",
                            f"cluster={c}",
                            "set",
                            f"GrpTRES={_fmt_tres(zero)}",
                        ),
                        "modify-account",
                    )
                )
                other_lines.append(f"~ account {a}: retired, GrpTRES {_fmt_tres(zero)} (jobs still running)")
            warnings.append(
                f"account {a} is retired but not removed: jobs {', '.join(running)} still run under it; "
                "it keeps no GPUs and is removed by the first sync after they end"
            )
            continue
        goes = [f"user {u}" for u in have[a].users]
        removal_lines.append(
            f"- account {a} (under {have[a].parent})"
            + (f", with {', '.join(goes)}" if goes else "")
            + (f"; after moving out {', '.join(held)}" if held else "")
        )
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
            other_lines.append(
                f"+ account {w.name} under {w.parent}: "
                + (f"Fairshare={w.shares} " if w.shares is not None else "")
                + f"GrpTRES={_fmt_tres(w.grptres)}"
            )
        else:
            if w is not wanted[0] and cur.parent != w.parent:
                middle.append(
                    Command(
                        sacctmgr(
                            "modify", "account", "where", f"name={w.name}", f"cluster={c}", "set", f"parent={w.parent}"
                        ),
                        "move-account",
                    )
                )
                other_lines.append(f"~ account {w.name}: parent {cur.parent} -> {w.parent}")
            sets: list[str] = []
            what: list[str] = []
            if w.shares is not None and cur.shares != str(w.shares):
                sets.append(f"fairshare={w.shares}")
                what.append(f"Fairshare {cur.shares} -> {w.shares}")
            tres = _tres_diff(cur.grptres, w.grptres)
            if tres:
                sets.append(f"GrpTRES={_fmt_tres(tres)}")
                what.append(
                    "GrpTRES "
                    + ", ".join(
                        f"{k} {cur.grptres.get(k, 'unset')} -> {'unset' if v == -1 else v}" for k, v in tres.items()
                    )
                )
            if sets:
                middle.append(
                    Command(
                        sacctmgr("modify", "account", "where", f"name={w.name}", f"cluster={c}", "set", *sets),
                        "modify-account",
                    )
                )
                other_lines.append(f"~ account {w.name}: " + "; ".join(what))
        if users is not None:
            present = set(cur.users) if cur else set()
            for u in sorted(want_users.get(w.name, set()) - present):
                middle.append(Command(sacctmgr("add", "user", u, f"account={w.name}", f"cluster={c}"), "add-user"))
                other_lines.append(f"+ user {u} on account {w.name}")

    return Plan(c, root, removal_lines + other_lines, first + middle + last, warnings, wanted)
