"""What a committee does to a round through the API or a web page, each as one transaction.

`fairshare.service.ops.rounds` performs a step inside the caller's transaction; these add what both
front ends must do around it, in this order: lock the round (concurrent steps and rulings queue
instead of both reading the old state), commit, and only then push a changed allocation into
the schedulers (`sync_hooks`), after the response is sent.
"""

from __future__ import annotations

from fastapi import BackgroundTasks, FastAPI

from fairshare import workflow as wf
from fairshare.service.ops import rounds as ops
from fairshare.service.ops import sync_hooks
from fairshare.service.api.deps import Ctx
from fairshare.store import models as m


def step_round(ctx: Ctx, app: FastAPI, background: BackgroundTasks, round_id: int, step: str) -> m.Round:
    """Take a workflow step (open, close, reopen, propose, publish, finalize) and commit; a publish
    then pushes the allocation.  Raises as `rounds.step_round` does, before anything is committed."""
    rnd = ops.get_round(ctx.session, round_id, lock=True)
    ops.step_round(ctx.session, ctx.actor, rnd, step, ctx.now, solve_timer=app.state.metrics.solve.observe)
    ctx.session.commit()
    if step == "publish":
        sync_hooks.schedule(app, background, rnd.id, ctx.actor.name)
    return rnd


def rule_appeal(ctx: Ctx, app: FastAPI, background: BackgroundTasks, row: m.Appeal, ruling: wf.Ruling,
                amount: int | None, reason: str) -> m.Appeal:
    """Rule on an appeal and commit; unless it was rejected the published allocation changed, so it
    is pushed.  Raises as `rounds.rule_appeal` does, before anything is committed."""
    ops.get_round(ctx.session, row.round_id, lock=True)
    ops.rule_appeal(ctx.session, ctx.actor, row, ruling, amount, reason, ctx.now)
    ctx.session.commit()
    if ruling is not wf.Ruling.reject:
        sync_hooks.schedule(app, background, row.round_id, ctx.actor.name)
    return row
