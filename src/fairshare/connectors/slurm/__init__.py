"""Enforce a published allocation in Slurm, and read GPU usage back from Slurm's accounting.

- `plan`: the org tree as Slurm accounts (names, parents, `Fairshare`, `GrpTRES` GPU limits)
  and the diff against the cluster's state as `sacctmgr` command lines. Pure.
- `apply`: reads the cluster's account tree, runs a plan's commands and reads back (`Syncer`).
- `usage`: GPU-hours per account and day from `sacct`, stored per org node and GPU type.
- `tools`: runs Slurm's command-line tools, with errors that say what to check.

The names callers use are re-exported here (`from fairshare.connectors import slurm`).
"""

from fairshare.connectors.slurm.apply import Syncer, SyncResult, default_cluster, read_state
from fairshare.connectors.slurm.plan import (
    GPU,
    SACCTMGR,
    Account,
    ClusterState,
    Command,
    Plan,
    PlanError,
    SlurmConfig,
    Wanted,
    parse_gres_map,
    parse_tres,
    parse_user_map,
    plan,
    unix_users,
    wanted_accounts,
)
from fairshare.connectors.slurm.tools import Runner, SlurmCommandFailed, SlurmError, SlurmMissing, SlurmUnreachable
from fairshare.connectors.slurm.usage import (
    SACCT,
    UsageBucket,
    day_floor,
    gpu_of_gres,
    node_of_account,
    read_usage,
    store_usage,
)

__all__ = [
    "GPU",
    "SACCT",
    "SACCTMGR",
    "Account",
    "ClusterState",
    "Command",
    "Plan",
    "PlanError",
    "Runner",
    "SlurmCommandFailed",
    "SlurmConfig",
    "SlurmError",
    "SlurmMissing",
    "SlurmUnreachable",
    "SyncResult",
    "Syncer",
    "UsageBucket",
    "Wanted",
    "day_floor",
    "default_cluster",
    "gpu_of_gres",
    "node_of_account",
    "parse_gres_map",
    "parse_user_map",
    "parse_tres",
    "plan",
    "read_state",
    "read_usage",
    "store_usage",
    "unix_users",
    "wanted_accounts",
]
