"""Usage read back from the schedulers (`fairshare usage import slurm`), against entitlement."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from fairshare.service.api.deps import CtxDep
from fairshare.service.ops.usage import usage_of

router = APIRouter(tags=["usage"])


class UsageOut(BaseModel):
    node: str
    gpu: str
    since: dt.datetime
    until: dt.datetime
    gpu_hours: float
    entitled_gpu_hours: float | None  # GPUs of the newest published round x hours in the period
    round_id: int | None


@router.get("/usage/{node}", summary="GPU-hours a team (or any node) used per GPU type, against its entitlement")
def get_usage(
    node: str,
    ctx: CtxDep,
    since: Annotated[dt.datetime | None, Query(description="default: 30 days ago")] = None,
    until: Annotated[dt.datetime | None, Query(description="default: now")] = None,
) -> list[UsageOut]:
    return [UsageOut(**asdict(u)) for u in usage_of(ctx.session, node, since, until, ctx.now)]
