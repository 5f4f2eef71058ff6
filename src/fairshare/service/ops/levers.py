"""A request's levers on a round: the smallest change of each lever a committee has that would
give it more, and who would pay.  Nothing is stored.

The API's `GET /rounds/{id}/requests/{key}/levers` and the web's levers page.  Each lever is a
handful of whole re-solves of the round (its overrides replayed), so the search is bounded by
SECONDS of wall time: levers not reached are named as not searched.
"""

from __future__ import annotations

import time

from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.engine import Allocation
from fairshare.engine.overrides import allocate_in_order
from fairshare.engine.whatif import LeverSearch, levers
from fairshare.errors import NotFound
from fairshare.scenario import Scenario
from fairshare.service.ops.rounds import active_pins, visible_round
from fairshare.store.repo import round_scenario

SECONDS = 10.0  # the most a search runs (it stops before the next re-solve once this has passed)


def request_levers(
    session: Session, actor: wf.Actor, round_id: int, key: str, seconds: float = SECONDS
) -> tuple[Scenario, LeverSearch]:
    """The round's scenario and the levers of its live request `key`, if `actor` may see the
    round's allocation (the committee before publication, everyone after)."""
    rnd = visible_round(session, actor, round_id)
    scenario = round_scenario(session, rnd)
    if not any(r.id == key for r in scenario.requests):
        raise NotFound(f"no live request {key!r} in round {round_id}")
    pins = active_pins(session, rnd)
    deadline = time.monotonic() + seconds

    def solve(changed: Scenario) -> Allocation:
        return allocate_in_order(changed, pins, check_reasons=False)  # a lever reads numbers only

    found = levers(
        scenario,
        key,
        allocate_in_order(scenario, pins),
        solve=solve,
        stop=lambda: time.monotonic() > deadline,
    )
    return scenario, found
