"""Usage read back from the schedulers (`fairshare usage import slurm`), against entitlement."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from fairshare.errors import UserError
from fairshare.service.api.deps import CtxDep
from fairshare.service.ops.usage import round_usage, usage_of

router = APIRouter(tags=["usage"])


class UsageOut(BaseModel):
    node: str
    gpu: str
    since: dt.datetime
    until: dt.datetime
    gpu_hours: float
    entitled_gpu_hours: float | None = Field(
        description="without round_id: GPUs of the newest published round x hours in the period; with round_id: "
        "that round's GPUs x the hours it was in force (0 for a type it gave none of)"
    )
    round_id: int | None
    round: str | None = Field(default=None, description="with round_id: the round's name")
    entitled_gpus: int | None = Field(default=None, description="with round_id: GPUs of this type the round gave")
    no_entitlement: bool = Field(
        default=False, description="with round_id: it used this GPU type although the round gave it none"
    )


@router.get(
    "/usage/{node}",
    summary="GPU-hours a team (or any node) used per GPU type, against its entitlement",
    response_model_exclude_unset=True,  # without round_id: the fields it has always had
    description="Without `round_id`: over [since, until) (default the last 30 days) against the newest published "
    "round.  With `round_id`: while that round was in force (from its publication until the next round's "
    "publication, or now), against what that round entitled the node (and its subtree) to; a GPU type used "
    "without entitlement is listed with `no_entitlement: true`.",
)
def get_usage(
    node: str,
    ctx: CtxDep,
    since: Annotated[dt.datetime | None, Query(description="default: 30 days ago")] = None,
    until: Annotated[dt.datetime | None, Query(description="default: now")] = None,
    round_id: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="the round whose time in force to report")
    ] = None,
) -> list[UsageOut]:
    if round_id is None:
        return [UsageOut(**asdict(u)) for u in usage_of(ctx.session, node, since, until, ctx.now)]
    if since is not None or until is not None:
        raise UserError("give round_id or since/until, not both: with round_id the span is the round's time in force")
    return [UsageOut(**asdict(u)) for u in round_usage(ctx.session, node, round_id, ctx.now)]
