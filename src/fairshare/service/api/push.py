"""After a commit that changed a round's published allocation, push it into the schedulers once the
response is sent (the API's and the pages' `on_published`, see service.ops.rounds.OnPublished)."""

from __future__ import annotations

from fastapi import BackgroundTasks, Request

from fairshare.service.ops.rounds import OnPublished
from fairshare.service.ops.sync import push_round


def push_later(request: Request, background: BackgroundTasks, actor: str) -> OnPublished:
    app = request.app

    def push(round_id: int) -> None:
        if app.state.sync_hooks:
            background.add_task(push_round, app.state.sync_hooks, app.state.sessions, round_id, actor)

    return push
