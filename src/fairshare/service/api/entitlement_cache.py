"""GET entitlements without re-reading or re-serialising what cannot have changed.

A node's entitlement is stored once per engine run (`node_results` rows are only ever inserted,
with their run) and a round shows the run that `rounds.current_run_id` names.  So the answer is a
pure function of (round, its state, its current run, node): the serialised bytes are kept under
that key and never need invalidating.  Every override, ruling, re-run or publish changes the
round's state or current run, and with it the key.

What must be fresh is the round's (state, current run): it is read from the database for every
request, so a commit by another worker or the CLI is seen at once.  Requests for the same round
that arrive while such a read is in flight share the *next* read: a read that started after a
request arrived sees every commit the caller could have seen before sending it, so one read per
database round trip serves any number of concurrent requests of a worker.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine, bindparam, select

from fairshare.service.api.schemas import EntitlementOut
from fairshare.store import models as m

Stamp = tuple[str, int | None] | None  # (state, current_run_id), None: no such round

_STAMP = select(m.Round.state, m.Round.current_run_id).where(m.Round.id == bindparam("round_id"))
_DATA = select(m.NodeResult.data).where(
    m.NodeResult.run_id == bindparam("run_id"), m.NodeResult.node == bindparam("node")
)
MAX_ANSWERS = 10_000  # kept answers per process before they are all dropped (125 nodes x a few runs is typical)


@dataclass
class _Read:
    started: int  # the arrival counter's value when the read was dispatched
    task: asyncio.Task[Stamp]


@dataclass
class _Reads:
    """The reads in flight of one event loop, per round."""

    clock: Callable[[], int] = field(default_factory=lambda: itertools.count().__next__)
    inflight: dict[int, _Read] = field(default_factory=dict)


class EntitlementCache:
    """The fresh stamp of a round (shared reads) and the kept answers (serialised EntitlementOut bytes)."""

    def __init__(self, engine: Engine) -> None:
        # single-statement reads: autocommit spares each one a BEGIN and a ROLLBACK round trip
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.answers: dict[tuple[int, str, int, str], bytes] = {}
        self.loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Reads] = weakref.WeakKeyDictionary()

    def _read_stamp(self, round_id: int) -> Stamp:
        with self.engine.connect() as conn:
            row = conn.execute(_STAMP, {"round_id": round_id}).first()
        return None if row is None else (row[0], row[1])

    async def stamp(self, round_id: int) -> Stamp:
        """The round's (state, current run) as of a read that started after this call."""
        loop = asyncio.get_running_loop()
        reads = self.loops.get(loop)
        if reads is None:
            reads = self.loops[loop] = _Reads()
        arrived = reads.clock()
        while True:
            read = reads.inflight.get(round_id)
            if read is None or read.task.done():  # a finished read is of no use to a new arrival
                read = _Read(reads.clock(), loop.create_task(run_in_threadpool(self._read_stamp, round_id)))
                reads.inflight[round_id] = read
                read.task.add_done_callback(functools.partial(_done, reads, round_id, read))
            if read.started > arrived:
                return await asyncio.shield(read.task)
            # started before we arrived: it may miss a commit our caller saw; wait for the next one
            await asyncio.wait([read.task])

    def _read_answer(self, round_id: int, state: str, run_id: int, node: str) -> bytes | None:
        with self.engine.connect() as conn:
            data = conn.execute(_DATA, {"run_id": run_id, "node": node}).scalar()
        if data is None:
            return None
        return EntitlementOut(round_id=round_id, round_state=state, run_id=run_id, **data).model_dump_json().encode()

    def kept(self, round_id: int, state: str, run_id: int, node: str) -> bytes | None:
        return self.answers.get((round_id, state, run_id, node))

    async def answer(self, round_id: int, state: str, run_id: int, node: str) -> bytes | None:
        """The serialised EntitlementOut of `node` in `run_id` (None: the run has no such node)."""
        key = (round_id, state, run_id, node)
        body = self.kept(*key)
        if body is None:
            body = await run_in_threadpool(self._read_answer, round_id, state, run_id, node)
            if body is not None:  # unknown nodes are not kept: the dict stays bounded by real nodes
                if len(self.answers) >= MAX_ANSWERS:
                    self.answers.clear()
                self.answers[key] = body
        return body


def _done(reads: _Reads, round_id: int, read: _Read, task: asyncio.Task[Any]) -> None:
    if reads.inflight.get(round_id) is read:
        del reads.inflight[round_id]
    if not task.cancelled():
        task.exception()  # retrieved here too, in case every waiter went away
